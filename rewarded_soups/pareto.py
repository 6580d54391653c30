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


# One-sided test at 95%: a soup fails Hypothesis 1 on a reward only when its margin is more
# than 1.645 standard errors below the line.
LMC_Z = 1.645
LMC_RULE = (
    "per soup and reward, margin = R(soup) − Σ λ_i R(expert_i), standard error "
    "sqrt(se_soup² + Σ λ_i² se_i²) (each se = std/√n; models are scored on the same inputs, so "
    "treating them as independent overstates the error: conservative against 'fails'); "
    "a reward holds when margin ≥ 0, fails when margin < −1.645·se (one-sided test at 95%), "
    "else is within noise; a soup holds when every reward holds, fails when any fails"
)


def lmc_margin_errors(expert_se: np.ndarray, soup_weights: np.ndarray, soup_se: np.ndarray) -> np.ndarray:
    """Standard error of each margin of :func:`lmc_margins` (see :data:`LMC_RULE`)."""
    expert_se = np.asarray(expert_se, dtype=float)
    soup_weights = np.asarray(soup_weights, dtype=float)
    return np.sqrt(np.asarray(soup_se, dtype=float) ** 2 + (soup_weights**2) @ (expert_se**2))


def lmc_classes(margins: np.ndarray, errors: np.ndarray, z: float = LMC_Z) -> list[str]:
    """Per soup: ``holds``, ``within noise`` or ``fails`` (:data:`LMC_RULE`)."""
    margins, errors = np.asarray(margins, dtype=float), np.asarray(errors, dtype=float)
    fails = np.any(margins < -z * errors, axis=1)
    holds = np.all(margins >= 0, axis=1)
    return ["fails" if f else "holds" if h else "within noise" for f, h in zip(fails, holds)]


def lmc_summary(
    margins: np.ndarray, errors: np.ndarray | None = None, tolerance: float = 0.0
) -> dict[str, float | int | list]:
    """Strict fraction of soups where every reward is at least on the line, the worst margin, and,
    with the margins' standard errors, the noise-aware fraction (no reward significantly below)."""
    margins = np.asarray(margins, dtype=float)
    if margins.size == 0:
        empty = {"holds_fraction": float("nan"), "worst_margin": float("nan"), "n_points": 0}
        return empty | ({"holds_within_noise_fraction": float("nan"), "classes": []} if errors is not None else {})
    holds = np.all(margins >= -tolerance, axis=1)
    out: dict[str, float | int | list] = {
        "holds_fraction": float(holds.mean()),
        "worst_margin": float(margins.min()),
        "n_points": len(margins),
    }
    if errors is not None:
        classes = lmc_classes(margins, errors)
        out |= {
            "holds_within_noise_fraction": float(np.mean([c != "fails" for c in classes])),
            "classes": classes,
            "rule": LMC_RULE,
        }
    return out


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
