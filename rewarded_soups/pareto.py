"""Pareto analysis of reward vectors (all rewards are maximised).

Hypervolume and non-dominance come from moocore, a maintained C library
(López-Ibáñez et al.), not from a hand-written sweep.
"""

from __future__ import annotations

from collections.abc import Sequence

import moocore
import numpy as np


def _as_points(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n_points, n_rewards), got shape {arr.shape}")
    return arr


def pareto_front(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Boolean mask of the points that no other point dominates (maximisation)."""
    arr = _as_points(points)
    if len(arr) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(arr, maximise=True, keep_weakly=True), dtype=bool)


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float]) -> float:
    """Volume dominated by ``points`` and dominating ``reference`` (maximisation).

    Points that do not strictly beat the reference on every reward add nothing.
    """
    arr = _as_points(points)
    ref = np.asarray(reference, dtype=float)
    if arr.shape[1] != ref.shape[0]:
        raise ValueError(f"reference has {ref.shape[0]} coordinates, points have {arr.shape[1]}")
    arr = arr[np.all(arr > ref, axis=1)]
    if len(arr) == 0:
        return 0.0
    return float(moocore.hypervolume(arr, ref=ref, maximise=True))


def lmc_margins(expert_scores: np.ndarray, soup_weights: np.ndarray, soup_scores: np.ndarray) -> np.ndarray:
    """Margin of each soup over the weight-space straight line, per reward.

    Hypothesis 1 of the paper (linear mode connectivity) holds at θ_λ when
    R_k(Σ λ_i θ_i) ≥ Σ λ_i R_k(θ_i) for every reward k, i.e. every margin ≥ 0.

    expert_scores: (N experts, K rewards); soup_weights: (M soups, N); soup_scores: (M, K).
    """
    expert_scores = np.asarray(expert_scores, dtype=float)
    soup_weights = np.asarray(soup_weights, dtype=float)
    soup_scores = np.asarray(soup_scores, dtype=float)
    if soup_weights.shape[1] != expert_scores.shape[0]:
        raise ValueError(f"{soup_weights.shape[1]} interpolation weights per soup but {expert_scores.shape[0]} experts")
    return soup_scores - soup_weights @ expert_scores


def lmc_summary(margins: np.ndarray, tolerance: float = 0.0) -> dict[str, float | int]:
    """Fraction of soups where every reward is at least on the line, and the worst margin."""
    margins = np.asarray(margins, dtype=float)
    if margins.size == 0:
        return {"holds_fraction": float("nan"), "worst_margin": float("nan"), "n_points": 0}
    holds = np.all(margins >= -tolerance, axis=1)
    return {
        "holds_fraction": float(holds.mean()),
        "worst_margin": float(margins.min()),
        "n_points": len(margins),
    }


def auto_reference(points: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Reference point just below the worst observed score of every reward.

    It is the per-reward minimum over *all* evaluated models (θ0, experts,
    soups, MORL) minus ``margin`` times that reward's observed range, so every
    model contributes and the RS and MORL hypervolumes share one reference.
    """
    arr = _as_points(points)
    low, high = arr.min(axis=0), arr.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return low - margin * span
