"""Digests of the code a job can run, so that editing code reruns exactly the jobs whose behaviour it may change.

Snakemake reruns a job when its script changes, not when a module the script
imports does. Every job therefore carries, in its params, a digest of what
it can execute, read from the source (``ast``), never imported:

* its entry points (``module:function``, e.g. the task's ``finetune``), then,
  function by function, every function and class they use, across modules:
  a name bound by an import (``from a import f``; ``import a`` then
  ``a.f``), inside functions too (the tasks import heavy libraries lazily),
  is followed to the definition it names, and a class counts whole;
* the top-level code of every module touched, and of its parent packages
  (it runs on import), and of every module an import statement reached;
* the versions of the installed packages that this code imports (torch,
  transformers, trl…), so that upgrading trl reruns text training, not the
  plots.

Only modules of this package and of plug-in packages are followed; a module
named without ``:`` counts whole. Docstrings, comments and formatting change
nothing (the syntax tree without docstrings is hashed); code inside
``if TYPE_CHECKING:`` and annotations are not followed (they never run).
Calls resolved at run time (a registry looked up by name) are not seen: the
workflow names those modules as entries itself (the reward classes a job
builds, the merge method a soup uses).

Editing ``plots.py``'s ``plot_front`` changes only the digests of the jobs that
draw fronts; editing a task's ``rl.py`` only those of its fine-tuning jobs.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

TOP = ""  # the unit of a module's top-level code
WHOLE = "*"  # every unit of a module

Unit = tuple[str, str]  # (module, definition name | TOP)


@cache
def _top_level(top: str) -> tuple[Path | None, tuple[Path, ...], bool]:
    """A top-level module's file, its package directories, and whether it was found at all (importing nothing)."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None, (), False
    if spec is None:
        return None, (), False
    origin = Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    return origin, tuple(Path(p) for p in spec.submodule_search_locations or ()), True


@cache
def module_file(name: str) -> Path | None:
    """The source file of module ``name``, found on disk without importing it; None if there is none.

    (``importlib.util.find_spec`` of a submodule imports its parents, which
    may import torch: far too slow for every job of a DAG.)
    """
    top, *rest = name.split(".")
    origin, directories, _ = _top_level(top)
    if not rest:
        return origin
    for directory in directories:
        base = directory.joinpath(*rest)
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                return candidate
    return None


# What each file gave (its units' hashes and references), kept between runs: every `snakemake`
# call (a no-op one too) digests the same few dozen files, and parsing them was a fifth of a
# no-op's CPU. A file's entry is valid while its size, modification time and inode are those it had.
_disk_file: Path | None = None
_disk: dict[str, Any] = {}
_disk_changed = False
_DISK_VERSION = 2


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


def _save_disk_cache() -> None:
    if _disk_file is None or not _disk_changed:
        return
    with contextlib.suppress(OSError):
        _disk_file.parent.mkdir(parents=True, exist_ok=True)
        staging = _disk_file.with_name(f"{_disk_file.name}.{os.getpid()}")
        staging.write_text(json.dumps(_disk))
        os.replace(staging, _disk_file)  # concurrent runs: one complete file wins


def _cached(key: str, stamp: Any, compute: Callable[[], Any]) -> Any:
    global _disk_changed
    if _disk_file is None:
        return compute()
    entry = _disk.get(key)
    if not isinstance(entry, dict) or entry.get("stamp") != stamp:
        _disk[key] = entry = {"stamp": stamp, "value": compute()}
        _disk_changed = True
    return entry["value"]


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node: Any) -> Any:
        self.generic_visit(node)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            if isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        return node

    visit_Module = visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _strip


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _walk_runtime(node: ast.AST) -> Iterable[ast.AST]:
    """The nodes of ``node`` that can run: not annotations, not ``if TYPE_CHECKING:`` blocks."""
    pending = [node]
    while pending:
        current = pending.pop()
        yield current
        for name, value in ast.iter_fields(current):
            if name in ("annotation", "returns") or (name == "body" and _is_type_checking(current)):
                continue
            children = value if isinstance(value, list) else [value]
            pending.extend(child for child in children if isinstance(child, ast.AST))


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


def _imports(nodes: Iterable[ast.AST], module: str, path: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Names bound by the import statements among ``nodes``, and the modules those statements import.

    A binding is ``["module", name]`` (``import a.b as x``; ``import a.b`` binds ``a``) or
    ``["from", module, name]`` (``from m import n``).
    """
    bindings: dict[str, list[str]] = {}
    executed: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                executed.append(alias.name)
                if alias.asname:
                    bindings[alias.asname] = ["module", alias.name]
                else:
                    top = alias.name.split(".")[0]
                    bindings[top] = ["module", top]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, path, node)
            executed.append(source)
            for alias in node.names:
                if alias.name != "*":
                    bindings[alias.asname or alias.name] = ["from", source, alias.name]
    return bindings, executed


def _references(nodes: Iterable[ast.AST]) -> list[list[str]]:
    """Dotted names used at run time (``a.b.c`` as ``[a, b, c]``; a bare name as ``[a]``)."""
    nodes = list(nodes)
    found: set[tuple[str, ...]] = set()
    inner: set[int] = set()  # a.b inside a.b.c, and the a of a.b: only the longest chain counts
    for node in nodes:
        if isinstance(node, ast.Attribute):
            inner.add(id(node.value))
    for node in nodes:
        if id(node) in inner:
            continue
        chain: list[str] = []
        current: ast.AST = node
        while isinstance(current, ast.Attribute):
            chain.append(current.attr)
            current = current.value
        if isinstance(current, ast.Name) and isinstance(current.ctx, ast.Load):
            found.add((current.id, *reversed(chain)))
    return [list(chain) for chain in sorted(found)]


def _hash(nodes: Iterable[ast.AST]) -> str:
    stripped = [_StripDocstrings().visit(copy.deepcopy(node)) for node in nodes]
    return hashlib.sha256("\n".join(ast.dump(node) for node in stripped).encode()).hexdigest()


def _analyse(module: str, path: Path) -> dict[str, Any]:
    """Each unit of a module file: its hash, the names it uses, its imports; and the module-level imports."""
    tree = _tree(path)
    body = [node for node in tree.body if not _is_type_checking(node)]
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    top = [node for node in body if not isinstance(node, definitions)]

    def unit(nodes: list[ast.AST]) -> dict[str, Any]:
        runtime = [sub for node in nodes for sub in _walk_runtime(node)]
        bindings, executed = _imports(runtime, module, path)
        return {"hash": _hash(nodes), "references": _references(runtime), "bindings": bindings, "imports": executed}

    module_bindings, _ = _imports([sub for node in body for sub in _walk_runtime(node)], module, path)
    return {
        "units": {TOP: unit(top), **{node.name: unit([node]) for node in body if isinstance(node, definitions)}},
        "bindings": module_bindings,
    }


@cache
def _analysis(module: str) -> dict[str, Any] | None:
    path = module_file(module)
    if path is None:
        return None
    info = path.stat()
    stamp = [info.st_size, info.st_mtime_ns, info.st_ino]
    return _cached(f"{path}|{module}", stamp, lambda: _analyse(module, path))


def _is_module(name: str) -> bool:
    return module_file(name) is not None


class _Resolver:
    """Follows references from units to units (within ``roots``) and to third-party packages."""

    def __init__(self, roots: frozenset[str]) -> None:
        self.roots = roots

    def in_scope(self, module: str) -> bool:
        return module.split(".")[0] in self.roots

    def module_units(self, module: str) -> tuple[set[Unit], set[str]]:
        """Importing ``module``: its top-level code and its parents'; or, out of scope, its package."""
        if not self.in_scope(module):
            return set(), {module.split(".")[0]}
        units: set[Unit] = set()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if _analysis(name) is not None:
                units.add((name, TOP))
        return units, set()

    def binding(self, binding: list[str], attributes: list[str], depth: int = 0) -> tuple[set[Unit], set[str]]:
        """What a name bound by an import refers to, with the attributes taken of it."""
        if binding[0] == "module":
            return self.attribute(binding[1], attributes)
        _, source, name = binding
        if not self.in_scope(source):
            return set(), {source.split(".")[0]}
        if _is_module(f"{source}.{name}"):
            return self.attribute(f"{source}.{name}", attributes)
        return self.name_in(source, name, depth)

    def attribute(self, module: str, attributes: list[str]) -> tuple[set[Unit], set[str]]:
        """``module.a.b…``: the deepest submodule named, then the definition its next attribute names."""
        if not self.in_scope(module):
            return set(), {module.split(".")[0]}
        rest = list(attributes)
        while rest and _is_module(f"{module}.{rest[0]}"):
            module = f"{module}.{rest.pop(0)}"
        if not rest:
            return {(module, WHOLE)}, set()  # a module object itself: whatever it holds may run
        return self.name_in(module, rest[0])

    def name_in(self, module: str, name: str, depth: int = 0) -> tuple[set[Unit], set[str]]:
        """Definition ``name`` of ``module``, following a re-export; a constant is the module's top-level code."""
        analysis = _analysis(module)
        if analysis is None:
            return set(), set()
        if name in analysis["units"] and name != TOP:
            return {(module, name)}, set()
        binding = analysis["bindings"].get(name)
        if binding is not None and depth < 20:  # a re-export (a cycle of them ends at the depth limit)
            units, packages = self.binding(binding, [], depth + 1)
            return units | {(module, TOP)}, packages
        return {(module, TOP)}, set()

    @cache  # noqa: B019 - one resolver per roots, kept for the process
    def edges(self, unit: Unit) -> tuple[frozenset[Unit], frozenset[str]]:
        """The units and third-party packages that running ``unit`` can reach directly."""
        module, name = unit
        analysis = _analysis(module)
        if analysis is None:
            return frozenset(), frozenset()
        if name == WHOLE:
            return frozenset((module, n) for n in analysis["units"]), frozenset()
        units, packages = self.module_units(module)
        data = analysis["units"][name]
        for imported in data["imports"]:
            more, ext = self.module_units(imported)
            units |= more
            packages |= ext
        local = data["bindings"]
        for root, *attributes in data["references"]:
            if root in local:
                more, ext = self.binding(local[root], attributes)
            elif root in analysis["units"] and root != TOP:
                more, ext = {(module, root)}, set()
            elif root in analysis["bindings"]:
                more, ext = self.binding(analysis["bindings"][root], attributes)
            else:
                continue  # a parameter, a local variable, a builtin
            units |= more
            packages |= ext
        units.discard(unit)
        return frozenset(units), frozenset(packages)


@cache
def _resolver(roots: frozenset[str]) -> _Resolver:
    return _Resolver(roots)


def _entry_units(entry: str, resolver: _Resolver) -> set[Unit]:
    module, _, function = entry.partition(":")
    analysis = _analysis(module)
    if analysis is None:
        raise ModuleNotFoundError(f"code digest: module {module} not found")
    if not function:
        return {(module, WHOLE)}
    if function in analysis["units"]:
        return {(module, function), (module, TOP)}
    if function in analysis["bindings"]:  # e.g. a task function imported from shared code
        return {(module, TOP), *resolver.binding(analysis["bindings"][function], [])[0]}
    raise KeyError(f"code digest: {module} defines no {function!r}")


def reach(entries: Iterable[str], roots: Iterable[str] = ("rewarded_soups",)) -> tuple[set[Unit], set[str]]:
    """Every unit the ``entries`` (``module`` or ``module:function``) can run, and the third-party packages imported."""
    entries = list(entries)
    scope = frozenset(roots) | {entry.partition(":")[0].split(".")[0] for entry in entries}
    resolver = _resolver(scope)
    pending = [unit for entry in entries for unit in _entry_units(entry, resolver)]
    units: set[Unit] = set()
    packages: set[str] = set()
    while pending:
        unit = pending.pop()
        if unit in units:
            continue
        units.add(unit)
        more, ext = resolver.edges(unit)
        packages |= ext
        pending.extend(more - units)
    return {u for u in units if u[1] != WHOLE}, packages


def closure(entries: Iterable[str], roots: Iterable[str] = ("rewarded_soups",)) -> dict[str, Path]:
    """The modules (within ``roots``) of which the ``entries`` can run some code."""
    units, _ = reach(entries, roots)
    return {module: module_file(module) for module in sorted({m for m, _ in units})}  # type: ignore[misc]


def _site_stamp() -> list[Any]:
    """What changes when packages are installed or removed: the import path's directories and their times."""
    stamp = []
    for entry in sys.path:
        with contextlib.suppress(OSError):
            stamp.append([entry, os.stat(entry or ".").st_mtime_ns])
    return stamp


@cache
def _all_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _lookup_versions(package: str) -> list[str]:
    try:
        return [f"{package}=={importlib.metadata.version(package)}"]
    except importlib.metadata.PackageNotFoundError:
        pass
    names = sorted(set(_all_distributions().get(package, [])))
    return [f"{name}=={importlib.metadata.version(name)}" for name in names]


@cache
def package_versions(package: str) -> tuple[str, ...]:
    """``dist==version`` of the installed distribution(s) providing top-level module ``package`` (none: stdlib)."""
    if package in sys.stdlib_module_names or package == "__future__" or not _top_level(package)[2]:
        return ()
    return tuple(_cached(f"versions|{package}", _site_stamp(), lambda: _lookup_versions(package)))


def digest(entries: Iterable[str], roots: Iterable[str] = ("rewarded_soups",)) -> str:
    """A short hash of the code ``entries`` can run and of the packages it imports (see the module docstring)."""
    units, packages = reach(sorted(set(entries)), roots)
    h = hashlib.sha256()
    for module, name in sorted(units):
        h.update(f"{module}:{name}\n{_analysis(module)['units'][name]['hash']}\n".encode())  # type: ignore[index]
    for package in sorted(packages):
        h.update(f"{package}: {', '.join(package_versions(package))}\n".encode())
    return h.hexdigest()[:16]


def clear_caches() -> None:
    """Forget files read so far (for a long-lived process whose sources change, e.g. tests)."""
    for cached in (_top_level, module_file, _tree, _analysis, _resolver, package_versions):
        cached.cache_clear()
