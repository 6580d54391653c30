"""Real vision-language data through ``datasets``: COCO-style captions, referring expressions, VQA questions.

``data.source: datasets`` reads a hub id (``yerevann/coco-karpathy``,
``lmms-lab/RefCOCOplus``, ``lmms-lab/VQAv2``) or local files: a directory of
``train``/``validation``/``test`` json(l)/csv/parquet files, one file, or
(``data.format: karpathy``) Karpathy's ``dataset_coco.json`` with its image
folder. Column names are configurable (``data.columns``); images are a column
of embedded images or of paths (relative to ``data.image_root``, default the
data's own directory), decoded by ``datasets.Image`` on access.

The splits are the configured ones (``data.splits``); each is cut to
``data.max_examples`` after a shuffle seeded by the data seed (the config's
``seed``), so every job of a run, and every seed replicate, reads the same
examples in the same order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SPLIT_KEYS = ("train", "validation", "test")


class Images(Sequence):
    """A lazy column of RGB images (PIL) of a ``datasets.Dataset``: indexing decodes, slicing stays lazy."""

    def __init__(self, dataset: Any, column: str, rows: Sequence[int] | None = None) -> None:
        self.dataset, self.column = dataset, column
        self.rows = list(range(len(dataset))) if rows is None else list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return Images(self.dataset, self.column, self.rows[index])
        image = self.dataset[self.rows[index]][self.column]
        return image.convert("RGB")

    def thumbnails(self, n: int, size: int) -> np.ndarray:
        """The first ``n`` images as an ``n × size × size × 3`` uint8 array (for figures)."""
        return np.stack([np.asarray(self[i].resize((size, size))) for i in range(min(n, len(self)))])


SHOWN_IMAGES = 8  # held-out images kept with a model's samples, for the figures and the explorer


def shown_images(images: Any, n: int, size: int = 128) -> np.ndarray:
    """The first ``n`` (at most :data:`SHOWN_IMAGES`) images as uint8 arrays: generated scenes as they are,
    dataset images as ``size``-pixel thumbnails."""
    k = min(n, SHOWN_IMAGES)
    return np.ascontiguousarray(images[:k] if isinstance(images, np.ndarray) else images.thumbnails(k, size))


def _local_files(path: Path) -> tuple[str, dict[str, list[str]]]:
    """The ``datasets`` builder and data files of a local file or directory of split files."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    builders = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
    kinds = {builders.get(p.suffix) for p in files} - {None}
    if len(kinds) != 1:
        raise ValueError(f"data.dataset {path}: expected json(l), csv or parquet files of one kind, found {files}")
    by_split: dict[str, list[str]] = {}
    for p in files:
        if p.suffix in builders:
            by_split.setdefault("train" if path.is_file() else p.stem, []).append(str(p))
    return kinds.pop(), by_split


def _karpathy(data: dict[str, Any], split: str):
    """Karpathy's dataset_coco.json as rows {image path, sentences}; ``train`` includes ``restval``."""
    import datasets

    path = Path(data["dataset"]).expanduser()
    root = Path(data["image_root"]).expanduser() if data.get("image_root") else path.parent
    wanted = {"train": ("train", "restval")}.get(split, (split,))
    rows = [
        {
            "image": str(root / image.get("filepath", "") / image["filename"]),
            "captions": [s["raw"] for s in image["sentences"]],
        }
        for image in json.loads(path.read_text())["images"]
        if image["split"] in wanted
    ]
    if not rows:
        raise ValueError(f"{path} has no image in split {split!r} (Karpathy's splits are train, restval, val, test)")
    return datasets.Dataset.from_list(rows).cast_column("image", datasets.Image())


def load_split(data: dict[str, Any], which: str, seed: int):
    """The ``datasets.Dataset`` of one of :data:`SPLIT_KEYS`, shuffled by ``seed`` and cut to its maximum size."""
    import datasets

    split = data["splits"][which]
    image_column = data["columns"]["image"]
    if data["format"] == "karpathy":
        dataset = _karpathy(data, split)
        image_column = "image"
    else:
        source = Path(data["dataset"]).expanduser()
        if source.exists():
            builder, files = _local_files(source)
            if split not in files:
                raise ValueError(f"data.splits.{which}: {source} has no {split!r} file (it has {sorted(files)})")
            dataset = datasets.load_dataset(builder, data_files={split: files[split]}, split=split)
            root = (
                Path(data["image_root"]).expanduser()
                if data.get("image_root")
                else (source if source.is_dir() else source.parent)
            )
        else:
            dataset = datasets.load_dataset(
                data["dataset"], data.get("name"), split=split, revision=data.get("revision")
            )
            root = Path(data["image_root"]).expanduser() if data.get("image_root") else None
        if image_column not in dataset.column_names:
            raise ValueError(
                f"data.columns.image: no column {image_column!r} in {data['dataset']} (columns: {dataset.column_names})"
            )
        if not isinstance(dataset.features[image_column], datasets.Image):
            if root is not None:
                dataset = dataset.map(lambda row: {image_column: str(root / row[image_column])})
            dataset = dataset.cast_column(image_column, datasets.Image())
    limit = data["max_examples"][which]
    dataset = dataset.shuffle(seed=seed)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return dataset, image_column


def column(dataset: Any, data: dict[str, Any], key: str) -> list[Any]:
    """A configured column (``data.columns.<key>``), with an error naming the key when it is absent."""
    name = data["columns"][key]
    if name not in dataset.column_names:
        raise ValueError(
            f"data.columns.{key}: no column {name!r} in {data['dataset']} (columns: {dataset.column_names})"
        )
    return dataset[name]


def texts(values: Sequence[Any], field: str) -> list[list[str]]:
    """Reference texts per example from a column of strings, lists of strings or lists of dicts (``field``)."""
    out = []
    for value in values:
        items = value if isinstance(value, list | tuple) else [value]
        out.append([str(v[field]) if isinstance(v, dict) else str(v) for v in items])
    return out


class Splits:
    """Train, validation and test sets of a task, each loaded on first use by ``make(dataset, image_column)``."""

    def __init__(self, data: dict[str, Any], seed: int, make: Callable[[Any, str], Any]) -> None:
        self.data, self.seed, self.make = data, seed, make
        self._loaded: dict[str, Any] = {}

    def _get(self, which: str) -> Any:
        if which not in self._loaded:
            self._loaded[which] = self.make(*load_split(self.data, which, self.seed))
        return self._loaded[which]

    @property
    def train(self) -> Any:
        return self._get("train")

    @property
    def valid(self) -> Any:
        return self._get("validation")

    @property
    def test(self) -> Any:
        return self._get("test")
