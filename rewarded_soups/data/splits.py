"""Train, validation and test sets built on first use, each from its own seed.

An evaluation job needs the held-out sets only; generating the training
scenes too would cost it seconds for nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


def split_seeds(seed: int) -> tuple[int, int, int]:
    """Three independent generator seeds (train, valid, test) derived from one.

    ``seed``, ``seed + 1``, ... would also differ, but then run seeds 0 and 1
    would share splits shifted by one; SeedSequence spawning avoids that.
    """
    children = np.random.SeedSequence(seed).spawn(3)
    return tuple(int(c.generate_state(1, dtype=np.uint32)[0]) for c in children)  # type: ignore[return-value]


class LazySplits(Generic[T]):
    """``make(n, seed)`` for the train, validation and test sizes, seeds from :func:`split_seeds` of ``seed``."""

    def __init__(self, make: Callable[[int, int], T], sizes: tuple[int, int, int], seed: int) -> None:
        self._make, self._sizes, self._seeds = make, sizes, split_seeds(seed)

    @cached_property
    def train(self) -> T:
        return self._make(self._sizes[0], self._seeds[0])

    @cached_property
    def valid(self) -> T:
        return self._make(self._sizes[1], self._seeds[1])

    @cached_property
    def test(self) -> T:
        return self._make(self._sizes[2], self._seeds[2])


def held_out_seed(seed: int) -> int:
    """A fourth generator seed, independent of :func:`split_seeds`'s three (a set no other split overlaps).

    SeedSequence children are numbered: the fourth child of ``seed`` is
    independent of the first three, which are the train, valid and test seeds.
    """
    return int(np.random.SeedSequence(seed).spawn(4)[3].generate_state(1, dtype=np.uint32)[0])
