"""Digests of the package code a job runs, so that editing code reruns exactly what it affects.

Snakemake reruns a job when its script changes, not when a module the script
imports does. Every job therefore carries, in its params, a digest of the
source it can execute: the task function it calls (with the helpers of the
same module that function uses, and the module's top-level code), then every
module those import, transitively, whole. Imports are read from the source
(``ast``), inside functions too, because the tasks import heavy libraries
lazily. Only modules of this package and of the plug-in packages that the
entry points belong to are followed; installed libraries are pinned by the
environment, not digested.

Editing the text task's ``rl.py`` changes the digest of its fine-tuning jobs
(``finetune`` imports it) but not of its pre-training job, nor of any other
task's jobs; editing ``plots.py`` changes only the figure jobs' digests.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import hashlib
import importlib.util
import json
import os
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any


@cache
def _top_level(top: str) -> tuple[Path | None, tuple[Path, ...]]:
    """A top-level module's file and, for a package, its directories (finding a top-level name imports nothing)."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None, ()
    if spec is None:
        return None, ()
    origin = Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    return origin, tuple(Path(p) for p in spec.submodule_search_locations or ())


@cache
def module_file(name: str) -> Path | None:
    """The source file of module ``name``, found on disk without importing it; None if there is none.

    (``importlib.util.find_spec`` of a submodule imports its parents, which
    may import torch: far too slow for every job of a DAG.)
    """
    top, *rest = name.split(".")
    origin, directories = _top_level(top)
    if not rest:
        return origin
    for directory in directories:
        base = directory.joinpath(*rest)
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                return candidate
    return None


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


# What each file gave (its dump, its imports, a function's part), kept between runs: every
# `snakemake` call (a no-op one too) digests the same few dozen files, and parsing and
# dumping them was a fifth of a no-op's CPU. A file's entry is valid while its size,
# modification time and inode are those it had (use_disk_cache).
_disk_file: Path | None = None
_disk: dict[str, dict[str, Any]] = {}
_disk_changed = False


def use_disk_cache(path: str | Path) -> None:
    """Keep what files gave in ``path`` (JSON, written at exit when it changed); a bad file is ignored."""
    global _disk_file, _disk
    _disk_file = Path(path)
    try:
        loaded = json.loads(_disk_file.read_text())
        _disk = loaded if isinstance(loaded, dict) and loaded.get("version") == _DISK_VERSION else {}
    except (OSError, ValueError):
        _disk = {}
    _disk.setdefault("version", _DISK_VERSION)
    atexit.register(_save_disk_cache)


_DISK_VERSION = 1


def _save_disk_cache() -> None:
    if _disk_file is None or not _disk_changed:
        return
    with contextlib.suppress(OSError):
        _disk_file.parent.mkdir(parents=True, exist_ok=True)
        staging = _disk_file.with_name(f"{_disk_file.name}.{os.getpid()}")
        staging.write_text(json.dumps(_disk))
        os.replace(staging, _disk_file)  # concurrent runs: one complete file wins


def _from_file(path: Path, key: str, compute: Callable[[], Any]) -> Any:
    global _disk_changed
    if _disk_file is None:
        return compute()
    info = path.stat()
    stamp = [info.st_size, info.st_mtime_ns, info.st_ino]
    entry = _disk.get(str(path))
    if not isinstance(entry, dict) or entry.get("stamp") != stamp:
        entry = _disk[str(path)] = {"stamp": stamp}
    if key not in entry:
        entry[key] = compute()
        _disk_changed = True
    return entry[key]


# The workflow digests tens of entries over the same files: each file is
# parsed, dumped and searched for imports once per process (and once per change with the disk cache).
@cache
def _dump(path: Path) -> str:
    return _from_file(path, "dump", lambda: ast.dump(_tree(path)))


@cache
def _module_imports(name: str, path: Path) -> tuple[str, ...]:
    return tuple(_from_file(path, f"imports {name}", lambda: sorted(_imported([_tree(path)], name, path))))


@cache
def _function_source(module: str, function: str) -> tuple[str, tuple[str, ...]]:
    """The dumped syntax of ``module:function`` with what it uses, and the modules that code imports."""
    path = module_file(module)
    if path is None:
        raise ModuleNotFoundError(f"code digest: module {module} not found")

    def compute() -> list:
        nodes = _function_nodes(_tree(path), function)
        return ["\n".join(ast.dump(node) for node in nodes), sorted(_imported(nodes, module, path))]

    source, imports = _from_file(path, f"function {module}:{function}", compute)
    return source, tuple(imports)


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imported(nodes: Iterable[ast.AST], module: str, path: Path) -> set[str]:
    """Absolute names of the modules imported anywhere inside ``nodes`` (``from a import b``: a and a.b)."""
    names: set[str] = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                names.update(alias.name for alias in sub.names)
            elif isinstance(sub, ast.ImportFrom):
                if sub.level:
                    base = _package_of(module, path)
                    for _ in range(sub.level - 1):
                        base = base.rpartition(".")[0]
                    source = f"{base}.{sub.module}" if sub.module else base
                else:
                    source = sub.module or ""
                names.add(source)
                names.update(f"{source}.{alias.name}" for alias in sub.names)
    return names


def _function_nodes(tree: ast.Module, function: str) -> list[ast.AST]:
    """``function``, the module-level functions and classes it uses (transitively), and the other top-level code."""
    defined = {
        node.name: node for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    if function not in defined:
        raise KeyError(function)
    chosen: dict[str, ast.AST] = {}
    pending = [function]
    while pending:
        name = pending.pop()
        if name in chosen:
            continue
        chosen[name] = defined[name]
        pending += [n.id for n in ast.walk(defined[name]) if isinstance(n, ast.Name) and n.id in defined]
    top_level = [node for node in tree.body if not any(node is d for d in defined.values())]
    return top_level + [chosen[name] for name in sorted(chosen)]


def _in_scope(name: str, roots: set[str]) -> bool:
    return name.split(".")[0] in roots


def closure(entries: list[str], roots: Iterable[str] = ("rewarded_soups",)) -> dict[str, Path]:
    """Every module reachable by imports from ``entries`` (``module`` or ``module:function``), within ``roots``."""
    roots = set(roots) | {entry.partition(":")[0].split(".")[0] for entry in entries}
    found: dict[str, Path] = {}
    pending: list[str] = []
    # Modules entered through one function: only that part counts (digest() hashes it), not the whole file.
    partial = {entry.partition(":")[0] for entry in entries if ":" in entry}
    for entry in entries:
        module, _, function = entry.partition(":")
        if function:
            pending += _function_source(module, function)[1]
        elif module_file(module) is None:
            raise ModuleNotFoundError(f"code digest: module {module} not found")
        else:
            pending.append(module)
    while pending:
        name = pending.pop()
        if name in found or name in partial or not _in_scope(name, roots):
            continue
        path = module_file(name)
        if path is None:
            continue
        found[name] = path
        # A package's parents run their __init__ on import.
        parent = name.rpartition(".")[0]
        if parent:
            pending.append(parent)
        pending += _module_imports(name, path)
    return found


def digest(entries: Iterable[str], roots: Iterable[str] = ("rewarded_soups",)) -> str:
    """A short hash of the code ``entries`` can run (see the module docstring)."""
    entries = sorted(set(entries))
    h = hashlib.sha256()
    for entry in entries:
        module, _, function = entry.partition(":")
        if function:
            h.update(f"{entry}\n{_function_source(module, function)[0]}\n".encode())
    for name, path in sorted(closure(entries, roots).items()):
        # The file's syntax tree, not its text: comments and formatting rerun nothing.
        h.update(f"{name}\n{_dump(path)}\n".encode())
    return h.hexdigest()[:16]


def clear_caches() -> None:
    """Forget files read so far (for a long-lived process whose sources change, e.g. tests)."""
    for cached in (_top_level, module_file, _tree, _dump, _module_imports, _function_source):
        cached.cache_clear()
