"""Captioning data: generated scenes of coloured shapes with five reference captions each.

The images and their captions come from :func:`rewarded_soups.data.shapes.make_set`,
so nothing is downloaded; the word vocabulary is
:mod:`rewarded_soups.vision_language.vocab`. Each split is made on first use,
from its own seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rewarded_soups.data.shapes import make_set
from rewarded_soups.data.splits import LazySplits


@dataclass(frozen=True)
class CaptionSet:
    images: np.ndarray  # n × size × size × 3, uint8
    captions: list[list[str]]  # n lists of reference captions

    def __len__(self) -> int:
        return len(self.captions)


def make_splits(
    n_train: int, n_valid: int, n_test: int, seed: int, image_size: int = 32, n_captions: int = 5
) -> LazySplits[CaptionSet]:
    """Train/validation/test sets, each a pure function of ``seed``, made on first use.

    Splits are drawn independently, so a scene (and thus an identical image)
    can occur in more than one split: the scene space is finite (a few
    thousand scenes), as in any small synthetic benchmark.
    """

    def make(n: int, split_seed: int) -> CaptionSet:
        return CaptionSet(*make_set(n, split_seed, image_size, n_captions))

    return LazySplits(make, (n_train, n_valid, n_test), seed)


def real_splits(data: dict[str, Any], seed: int):
    """COCO-style captions through ``datasets`` (``data.source: datasets``), each split loaded on first use."""
    from rewarded_soups.vision_language.records import Images, Splits, column, texts

    def make(dataset: Any, image_column: str) -> CaptionSet:
        captions = dataset["captions"] if data["format"] == "karpathy" else column(dataset, data, "captions")
        return CaptionSet(Images(dataset, image_column), texts(captions, "raw"))  # type: ignore[arg-type]

    return Splits(data, seed, make)
