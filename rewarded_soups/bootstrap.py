"""Intervals for comparisons of models scored on the same inputs: the paired bootstrap (scipy.stats.bootstrap).

Every model of a task is evaluated on the same held-out inputs, in the same
order (the task protocol's ``generate``), so a comparison between models is
paired: one bootstrap replicate resamples the inputs once, for every model.
The paired interval of a difference is then far narrower than the one that
treats the models as independent, when the models' scores are correlated
across inputs (they are: a hard input is hard for every model).

Per-sample values may be NaN where a reward does not apply to an input
(grounding's size classes); means skip them, and a difference is taken on the
inputs where both sides apply.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
METHOD = (
    f"paired bootstrap over the shared inputs (scipy.stats.bootstrap, percentile, {RESAMPLES} resamples, "
    f"{CONFIDENCE:.0%}): one resample of the inputs for every model in a replicate"
)
UNPAIRED_METHOD = (
    f"unpaired bootstrap (scipy.stats.bootstrap, percentile, {RESAMPLES} resamples, {CONFIDENCE:.0%}): "
    "each model's inputs resampled independently"
)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided interval."""

    estimate: float
    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low

    def sign(self) -> str:
        """``above`` 0 (low > 0), ``below`` (high < 0), or ``undecided`` (the interval holds 0, or is NaN)."""
        return "above" if self.low > 0 else "below" if self.high < 0 else "undecided"

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.estimate:+.4g} [{self.low:+.4g}, {self.high:+.4g}]"


def _nanmean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.nanmean(values, axis=axis)


def _bounds(distribution: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bounds of bootstrap replicates (last axis), skipping replicates where a statistic is NaN (a
    resample that holds no input a reward applies to); NaN where every replicate is (then undecided)."""
    tail = (1 - CONFIDENCE) / 2 * 100
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as wanted
        low, high = np.nanpercentile(distribution, [tail, 100 - tail], axis=-1)
    return low, high


def _replicates(samples: tuple[np.ndarray, ...], statistic: Callable, *, vectorized: bool, seed: int, resamples: int):
    """scipy.stats.bootstrap with this module's settings (percentile, :data:`CONFIDENCE`, seeded)."""
    from scipy.stats import bootstrap

    return bootstrap(
        samples,
        statistic,
        vectorized=vectorized,
        n_resamples=resamples,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )


def _interval(estimate: float, result) -> Interval:
    low, high = _bounds(np.asarray(result.bootstrap_distribution, dtype=float))
    return Interval(float(estimate), float(low), float(high))


def mean_interval(values: np.ndarray, *, seed: int) -> Interval:
    """The mean of per-sample ``values`` (NaN skipped) with its bootstrap interval."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    estimate = float(values.mean()) if len(values) else float("nan")
    if len(values) < 2 or np.all(values == values[0]):
        return Interval(estimate, estimate, estimate)
    result = _replicates((values,), np.mean, vectorized=True, seed=seed, resamples=RESAMPLES)
    return _interval(estimate, result)


def difference(values: np.ndarray, weights: Sequence[float], others: Sequence[np.ndarray], *, seed: int) -> Interval:
    """mean(values − Σ weights_i · others_i) over the shared inputs, paired: a soup's LMC margin over its
    experts' line, or an expert's gain over θ0 (one other, weight 1)."""
    diff = np.asarray(values, dtype=float) - sum(w * np.asarray(o, dtype=float) for w, o in zip(weights, others))
    return mean_interval(diff, seed=seed)


def unpaired_difference(
    values: np.ndarray, weights: Sequence[float], others: Sequence[np.ndarray], *, seed: int
) -> Interval:
    """The same difference with each model's inputs resampled independently (for comparison only)."""
    samples = [np.asarray(values, dtype=float), *(np.asarray(o, dtype=float) for o in others)]
    samples = [s[~np.isnan(s)] for s in samples]
    weights = np.asarray(weights, dtype=float)

    def statistic(first: np.ndarray, *rest: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(first, axis=axis) - sum(w * np.mean(r, axis=axis) for w, r in zip(weights, rest))

    estimate = float(statistic(*samples))
    if any(len(s) < 2 for s in samples):
        return Interval(estimate, estimate, estimate)
    result = _replicates(tuple(samples), statistic, vectorized=True, seed=seed, resamples=RESAMPLES)
    return _interval(estimate, result)


def paired_statistics(
    per_model: Sequence[np.ndarray],
    statistic: Callable[[np.ndarray], Sequence[float]],
    *,
    seed: int,
    resamples: int = RESAMPLES,
) -> list[Interval]:
    """Statistics of the models' mean scores (``statistic(means)`` -> values; means: models × rewards), each
    with its paired interval: every replicate resamples the inputs once, for all models and all the values.
    ``per_model``: inputs × rewards arrays."""
    stacked = np.stack([np.asarray(m, dtype=float) for m in per_model])  # models × inputs × rewards
    estimates = np.asarray(statistic(_nanmean(stacked, axis=1)), dtype=float)
    inputs = np.arange(stacked.shape[1])

    def replicate(index: np.ndarray) -> np.ndarray:
        return np.asarray(statistic(_nanmean(stacked[:, index.astype(int)], axis=1)), dtype=float)

    result = _replicates((inputs,), replicate, vectorized=False, seed=seed, resamples=resamples)
    lows, highs = _bounds(np.atleast_2d(np.asarray(result.bootstrap_distribution, dtype=float)))
    return [Interval(float(e), float(lo), float(hi)) for e, lo, hi in zip(estimates, lows, highs)]


def paired_statistic(
    per_model: Sequence[np.ndarray], statistic: Callable[[np.ndarray], float], *, seed: int, resamples: int = RESAMPLES
) -> Interval:
    """One statistic of the models' mean scores with its paired interval (:func:`paired_statistics`)."""
    (interval,) = paired_statistics(per_model, lambda means: [statistic(means)], seed=seed, resamples=resamples)
    return interval
