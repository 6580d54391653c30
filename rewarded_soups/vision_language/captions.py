"""Texts scored against reference texts (captions, VQA answers): how rewards read them, and CIDEr's corpus.

Samples hold one record per image with ``caption`` (the model's text) and
``references`` (the human ones); every caption metric
(:mod:`rewarded_soups.rewards.captioning`) and the VQA accuracy score them.
CIDEr weights n-grams by document frequencies fixed to θ0's training
references (self-critical training's CIDEr-D), saved with θ0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REFERENCES_FILE = "train_references.json"


def reward_context(base_dir: Path) -> dict[str, Any]:
    """What caption rewards take from the task: the training references (CIDEr's document frequencies)."""
    path = Path(base_dir) / REFERENCES_FILE
    return {"df_references": json.loads(path.read_text())} if path.exists() else {}


def reward_inputs(samples: Any) -> tuple[list[str], list[list[str]]]:
    """(candidates, references) of each sample."""
    return samples.column("caption"), [list(r) for r in samples.column("references")]


def against_references(scalarised: Any, references: list[list[str]]):
    """``reward(texts, example indices)`` for REINFORCE: ``scalarised`` (Σ weights[r]·R_r) of texts against
    each example's references."""

    def reward(texts: list[str], indices: list[int]) -> list[float]:
        return list(scalarised(texts, [list(references[i]) for i in indices]))

    return reward
