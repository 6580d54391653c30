"""Prompts for a pretrained diffusion pipeline, through ``datasets``: a hub id, local data files or a text file.

``data.dataset`` names a hub dataset (``yerevann/coco-karpathy``: COCO
captions, the paper's prompt set), a local json(l)/csv/parquet file or a
directory of split files (``train.jsonl``, ``test.jsonl``, …), or a text file
of one prompt per line. ``data.column`` is the prompt column (a column of
lists, like COCO's five captions per image, gives its first entry). Each role
(``finetune``: the images the experts are trained on; ``validation``;
``test``) reads the dataset split ``data.splits`` names for it; roles that
name the same split get disjoint slices of it, in the order finetune,
validation, test. Every split is shuffled by the data seed first, so each job
of a run (and each seed replicate) reads the same prompts in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROLES = ("finetune", "validation", "test")
_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def _load(data: dict[str, Any], split: str) -> Any:
    import datasets

    source = Path(data["dataset"]).expanduser()
    if source.is_file():
        builder = _BUILDERS.get(source.suffix)
        if builder is None:
            raise ValueError(f"data.dataset {source}: expected a .txt, .json(l), .csv or .parquet file")
        if split != "train":
            raise ValueError(f"data.splits: {source} is one file, whose only split is 'train' (not {split!r})")
        dataset = datasets.load_dataset(builder, data_files={"train": str(source)}, split="train")
        # A text file's one column is its lines ("text"): they are the prompts, whatever data.column says.
        if builder == "text" and data["column"] != "text":
            dataset = dataset.rename_column("text", data["column"])
        return dataset
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix in _BUILDERS)
        chosen = [p for p in files if p.stem == split]
        if not chosen:
            raise ValueError(
                f"data.splits: {source} has no file for split {split!r} (it has {[p.name for p in files]})"
            )
        return datasets.load_dataset(_BUILDERS[chosen[0].suffix], data_files={split: str(chosen[0])}, split=split)
    return datasets.load_dataset(data["dataset"], data.get("name"), split=split, revision=data.get("revision"))


def _texts(dataset: Any, data: dict[str, Any]) -> list[str]:
    name = data["column"]
    if name not in dataset.column_names:
        raise ValueError(f"data.column: no column {name!r} in {data['dataset']} (columns: {dataset.column_names})")
    out = []
    for value in dataset[name]:
        if isinstance(value, list | tuple):
            value = value[0] if value else ""
        if isinstance(value, dict):
            value = value.get("raw", next(iter(value.values()), ""))
        out.append(str(value).strip())
    return [t for t in out if t]


def role_sizes(settings: dict[str, Any]) -> dict[str, int]:
    """How many prompts each role reads: the fine-tuning images and the evaluation's validation and test prompts."""
    return {
        "finetune": settings["finetune"]["n_images"],
        "validation": settings["evaluate"]["validation_size"],
        "test": settings["evaluate"]["n_prompts"],
    }


def load_prompts(data: dict[str, Any], role: str, sizes: dict[str, int], seed: int) -> list[str]:
    """The ``sizes[role]`` prompts of ``role`` (one of :data:`ROLES`), disjoint from the other roles' on one split."""
    if role not in ROLES:
        raise ValueError(f"unknown prompt role {role!r}; expected one of {ROLES}")
    split = data["splits"][role]
    sharing = [r for r in ROLES if data["splits"][r] == split]
    prompts = _texts(_load(data, split).shuffle(seed=seed), data)
    start = sum(sizes[r] for r in sharing[: sharing.index(role)])
    needed = start + sizes[role]
    if needed > len(prompts):
        raise ValueError(
            f"data.dataset {data['dataset']}: split {split!r} has {len(prompts)} prompts, but "
            + " + ".join(f"{r} {sizes[r]}" for r in sharing if r in sizes)
            + " are read from it; lower finetune.n_images or evaluate's sizes, or give more prompts"
        )
    return prompts[start:needed]


def local_files(data: dict[str, Any]) -> Sequence[str]:
    """The local prompt files (declared as inputs: replacing one reruns what read it)."""
    source = Path(data.get("dataset") or "").expanduser()
    if not data.get("dataset") or not source.exists():
        return []
    files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.suffix in _BUILDERS)
    return [str(p.resolve()) for p in files]
