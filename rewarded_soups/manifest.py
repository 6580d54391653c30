"""Manifests of the directories the workflow writes, verified by every job that reads them.

Snakemake decides what to rerun from modification times and params; it does
not notice a checkpoint that was truncated, or overwritten with garbage of the
same size, after its job finished. Every directory a job outputs therefore
gets ``.manifest.json`` (each file's size and sha256, and the rule that wrote
it), written last; every job verifies the directories it reads before using
them, and ``python -m rewarded_soups verify`` checks a whole results tree.
The manifest is a hidden file: content hashes of a directory
(:mod:`rewarded_soups.fingerprint`) leave it out.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = ".manifest.json"


class CorruptArtifact(RuntimeError):
    """A directory whose files no longer match the manifest written with them."""


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _files(directory: Path) -> dict[str, int]:
    return {
        str(f.relative_to(directory)): f.stat().st_size
        for f in sorted(directory.rglob("*"))
        if f.is_file() and f.name != MANIFEST and not f.name.startswith(".snakemake")
    }


def write(directory: Path, rule: str) -> None:
    """Record every file of ``directory`` (written last, atomically: a crash leaves no manifest)."""
    directory = Path(directory)
    files = {name: {"size": size, "sha256": _sha256(directory / name)} for name, size in _files(directory).items()}
    tmp = directory / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"rule": rule, "files": files}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, directory / MANIFEST)


def problems(directory: Path) -> list[str]:
    """What differs from the manifest (empty when it matches, or when there is no manifest to check)."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        return []
    try:
        recorded = json.loads(path.read_text())["files"]
    except (ValueError, KeyError) as err:
        return [f"{MANIFEST} is unreadable ({err})"]
    found = _files(directory)
    out = [f"{name} is missing" for name in sorted(set(recorded) - set(found))]
    out += [f"{name} was added" for name in sorted(set(found) - set(recorded))]
    for name in sorted(set(recorded) & set(found)):
        if found[name] != recorded[name]["size"]:
            out.append(f"{name} has {found[name]} bytes instead of {recorded[name]['size']}")
        elif _sha256(directory / name) != recorded[name]["sha256"]:
            out.append(f"{name} has different contents")
    return out


def writer_rule(directory: Path) -> str | None:
    try:
        return json.loads((Path(directory) / MANIFEST).read_text()).get("rule")
    except (OSError, ValueError):
        return None


def verify(directory: Path) -> None:
    """Raise :class:`CorruptArtifact`, naming the directory, what changed and how to redo it."""
    found = problems(directory)
    if found:
        raise CorruptArtifact(
            f"{directory} was modified or corrupted after it was written ({'; '.join(found)}); "
            f"delete it or rerun it with `snakemake --forcerun {directory}`"
        )


def scan(root: Path) -> list[tuple[Path, list[str]]]:
    """Every directory under ``root`` with a manifest, and its problems."""
    return [(m.parent, problems(m.parent)) for m in sorted(Path(root).rglob(MANIFEST))]
