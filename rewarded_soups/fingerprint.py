"""Identity of files on disk: cheap stat listings, and content hashes when the listing changed.

Used wherever a result refers to files instead of copying them (a local θ0, the
experts of a soup stored as a recipe): the listing (size and modification time
of every file) is compared first; only when it differs are the contents hashed,
so a copy or a touch with the same bytes is still the same model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

Listing = dict[str, list[int]]


def listing(path: Path) -> Listing:
    """{relative name: [size, mtime_ns]} of every file under ``path`` (or of ``path`` itself)."""
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        return {path.name: [stat.st_size, stat.st_mtime_ns]}
    out = {}
    for file in sorted(path.rglob("*")):
        parts = file.relative_to(path).parts
        # Hidden files are bookkeeping (Snakemake's .snakemake_timestamp, the hub's .cache), not the model.
        if file.is_file() and not any(p.startswith(".") for p in parts):
            stat = file.stat()
            out[str(file.relative_to(path))] = [stat.st_size, stat.st_mtime_ns]
    return out


def content_hash(path: Path, files: Listing | None = None) -> str:
    """sha256 over (name, bytes) of every file of a listing."""
    path = Path(path)
    files = listing(path) if files is None else files
    root = path.parent if path.is_file() else path
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        with open(root / name, "rb") as fh:
            while chunk := fh.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def unchanged(path: Path, files: Listing, sha256: str) -> bool:
    """Whether ``path`` still holds what ``files``/``sha256`` recorded (a new mtime with the same bytes passes)."""
    path = Path(path)
    if not path.exists():
        return False
    now = listing(path)
    return now == files or content_hash(path, now) == sha256
