"""Rewards and quality metrics, one decorated class each (:func:`rewarded_soups.registry.reward`).

Modules here are grouped by what they score (text, images, captions,
episodes); a task that needs its own metric registers it in its package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def weighted_sum(values: Mapping[str, Sequence[float]], weights: Mapping[str, float]) -> np.ndarray:
    """Σ_r weights[r]·values[r], sample by sample, in float64 and in ``values``' order (the MORL scalarisation).

    ``values`` maps each reward to one value per sample; every reward needs a weight.
    """
    missing = sorted(set(values) - set(weights))
    if missing:
        raise KeyError(f"no weight for rewards {missing}")
    lengths = {name: len(v) for name, v in values.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"rewards scored different numbers of samples: {lengths}")
    total = np.zeros(next(iter(lengths.values()), 0), dtype=np.float64)
    for name, v in values.items():
        total += weights[name] * np.asarray(v, dtype=np.float64)
    return total


class Scalarised:
    """Σ weights[r]·R_r of a batch of outputs, sample by sample: the reward an expert or a MORL run trains on.

    Each reward is built once, with the task's ``context`` (what its
    ``reward_context`` supplies); ``missing`` replaces the NaN of samples a
    reward does not apply to (grounding's size classes: 0, nothing to
    reinforce). Use as a context manager, or call :meth:`close`: a reward may
    hold a process (METEOR's Java).
    """

    def __init__(
        self,
        rewards: Mapping[str, Mapping[str, Any]],
        weights: Mapping[str, float],
        context: Mapping[str, Any] | None = None,
        *,
        missing: float | None = None,
    ) -> None:
        from rewarded_soups.registry import build_reward

        self.weights, self.missing = dict(weights), missing
        self.scorers = {name: build_reward(spec, context=context) for name, spec in rewards.items()}

    def values(self, *inputs: Any) -> dict[str, np.ndarray]:
        """Each reward's values on the batch (float64, NaN replaced by ``missing`` when given)."""
        out = {}
        for name, scorer in self.scorers.items():
            values = np.asarray(scorer(*inputs), dtype=np.float64)
            out[name] = values if self.missing is None else np.nan_to_num(values, nan=self.missing)
        return out

    def combine(self, values: Mapping[str, Sequence[float]]) -> list[float]:
        return weighted_sum(values, self.weights).tolist()

    def __call__(self, *inputs: Any) -> list[float]:
        return self.combine(self.values(*inputs))

    def close(self) -> None:
        for scorer in self.scorers.values():
            close = getattr(scorer, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> Scalarised:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
