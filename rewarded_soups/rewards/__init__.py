"""Rewards and quality metrics, one decorated class each (:func:`rewarded_soups.registry.reward`).

Modules here are grouped by what they score (text, images, captions,
episodes); a task that needs its own metric registers it in its package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
