"""Choosing a soup for a user's preference (the paper's Lemma 1) and RS's expected advantage over MORL (Figure 8).

Everything here reads the cached scores (scores.csv): λ is selected on the
``validation`` split and the chosen model is reported on ``test``, so the
numbers are honest (selecting and reporting on the same inputs would be
optimistic; the ``oracle`` entries say by how much).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rewarded_soups.grid import parse_mix
from rewarded_soups.scores import REPORTED_SPLIT, rs_table, weight_matrix, wide

SELECTION_SPLIT = "validation"
# Figure 8's expectation over μ̂ ~ U(0, 1): the mean over this many evenly spaced μ̂ (ends included).
ADVANTAGE_MU_POINTS = 1001


def task_rewards(scores: pd.DataFrame) -> list[str]:
    """The trained rewards, in order, read from the experts' weights (metrics have no expert)."""
    experts = scores[scores["kind"] == "expert"]
    if experts.empty:
        raise ValueError("the scores hold no expert, so the task's rewards are unknown")
    return list(parse_mix(experts["weights"].iloc[0]))


def preference_vector(preference: Mapping[str, float], rewards: Sequence[str]) -> np.ndarray:
    """A preference over ``rewards`` (omitted rewards weigh 0), normalised to sum 1."""
    unknown = [r for r in preference if r not in rewards]
    if unknown:
        raise ValueError(
            f"preference names {unknown}, which are not rewards of this task; its rewards: {list(rewards)}"
        )
    vector = np.array([float(preference.get(r, 0.0)) for r in rewards])
    if np.any(vector < 0) or vector.sum() <= 0:
        raise ValueError(f"a preference needs weights ≥ 0 that are not all 0; got {dict(preference)}")
    return vector / vector.sum()


def parse_preference(text: str) -> dict[str, float]:
    """``"sentiment=0.3,concise=0.7"`` -> {"sentiment": 0.3, "concise": 0.7}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(
                f"cannot read {part!r} in preference {text!r}: write reward=weight,reward=weight"
            ) from None
    if not out:
        raise ValueError("empty preference: write reward=weight,reward=weight")
    return out


def _entry(table: pd.DataFrame, model: str, rewards: Sequence[str], mu: np.ndarray) -> dict[str, Any]:
    values = table.loc[model, list(rewards)].to_numpy(float)
    return {
        "model": model,
        "weights": table.loc[model, "weights"],
        "test": dict(zip(rewards, map(float, values))),
        "test_scalarised": float(values @ mu),
    }


def _at(table: pd.DataFrame, rewards: Sequence[str], mu: np.ndarray) -> str | None:
    """The model of ``table`` whose weights are μ (to the 4 decimals of model names), if any."""
    if table.empty:
        return None
    match = np.flatnonzero(np.all(np.isclose(weight_matrix(table, rewards), mu, atol=1e-4), axis=1))
    return table.index[match[0]] if len(match) else None


def select(
    scores: pd.DataFrame, preference: Mapping[str, float], rewards: Sequence[str] | None = None
) -> dict[str, Any]:
    """Lemma 1 for one preference μ̂: the soup chosen on validation, λ = μ̂, and MORL(μ̂), all on test.

    ``selected``: the expert or soup maximising Σ μ̂_i R_i on the validation
    split (a posteriori); ``at_preference``: the soup with λ = μ̂ (a priori; None
    when μ̂ is not on the λ grid); ``morl``: the MORL run trained with μ = μ̂
    (None when there is none); ``oracle``: the best on test itself (an
    optimistic bound, not a choice a user could make).
    """
    rewards = list(rewards) if rewards is not None else task_rewards(scores)
    mu = preference_vector(preference, rewards)
    test, validation = wide(scores, REPORTED_SPLIT), wide(scores, SELECTION_SPLIT)
    candidates = rs_table(test, rewards)
    if candidates.empty:
        raise ValueError("the scores hold no expert or soup to choose from")
    val_scalar = validation.loc[candidates.index, rewards].to_numpy(float) @ mu
    chosen = candidates.index[int(np.argmax(val_scalar))]
    oracle = candidates.index[int(np.argmax(candidates[rewards].to_numpy(float) @ mu))]
    at_mu = _at(candidates, rewards, mu)
    morl = _at(test[test["kind"] == "morl"], rewards, mu)
    return {
        "preference": dict(zip(rewards, map(float, mu))),
        "selected": _entry(test, chosen, rewards, mu)
        | {"selected_on": SELECTION_SPLIT, "validation_scalarised": float(val_scalar.max())},
        "at_preference": _entry(test, at_mu, rewards, mu) if at_mu is not None else None,
        "morl": _entry(test, morl, rewards, mu) if morl is not None else None,
        "oracle": _entry(test, oracle, rewards, mu) | {"selected_on": REPORTED_SPLIT},
    }


def _subset_maxweight_matrix(k: int, m: int) -> np.ndarray:
    """P(the j-th best of k items is the best of a uniform m-subset) = C(k-1-j, m-1) / C(k, m), j = 0..k-1."""
    total = math.comb(k, m)
    return np.array([math.comb(k - 1 - j, m - 1) / total for j in range(k)])


def expected_best(validation: np.ndarray, test: np.ndarray, m: int) -> float:
    """E over m-subsets of the models of the test value of the subset's best on validation (exact over subsets).

    ``validation`` and ``test``: one value per model. Ties on validation go to
    the earlier model, as :func:`numpy.argmax` does.
    """
    order = np.argsort(-np.asarray(validation), kind="stable")
    return float(_subset_maxweight_matrix(len(order), m) @ np.asarray(test)[order])


def expected_advantage(
    scores: pd.DataFrame,
    pair: Sequence[str],
    rewards: Sequence[str] | None = None,
    *,
    points: int = ADVANTAGE_MU_POINTS,
) -> dict[str, Any] | None:
    """The paper's Figure 8 for one pair of rewards, on validation-selected models and test scores.

    E_{μ̂~U(0,1)}[max_λ R̂_μ̂(RS) − E_{Λ_M}[max_{μ∈Λ_M} R̂_μ̂(MORL_μ)]] with
    R̂_μ̂ = (1−μ̂)·R_a + μ̂·R_b. RS: the pair's experts and the soups between
    them. The MORL pool: the MORL runs on the pair and the pair's experts (MORL
    with μ = 0 and 1, as in the paper's Λ); the expectation over its
    M-subsets is exact. Every "max" picks its model on validation and counts
    its test score. None when no MORL run lies on the pair.
    """
    rewards = list(rewards) if rewards is not None else task_rewards(scores)
    pair = list(pair)
    test, validation = wide(scores, REPORTED_SPLIT), wide(scores, SELECTION_SPLIT)
    others = [r for r in rewards if r not in pair]
    on_pair = test[np.all(weight_matrix(test, rewards)[:, [rewards.index(r) for r in others]] == 0, axis=1)]
    rs = rs_table(on_pair, rewards)
    experts = on_pair[on_pair["kind"] == "expert"]
    experts = experts.iloc[np.argsort(-weight_matrix(experts, pair)[:, 0], kind="stable")]  # pair[0]'s expert first
    morl_runs = on_pair[on_pair["kind"] == "morl"]
    if morl_runs.empty or len(experts) != 2:
        return None
    pool = pd.concat([experts, morl_runs])
    mu_hat = np.linspace(0.0, 1.0, points)
    user = np.stack([1.0 - mu_hat, mu_hat], axis=1)  # one row per μ̂: weights of (R_a, R_b)

    def scalarised(table: pd.DataFrame, rows: pd.Index) -> np.ndarray:
        return user @ table.loc[rows, pair].to_numpy(float).T  # μ̂ × model

    rs_val, rs_test = scalarised(validation, rs.index), scalarised(test, rs.index)
    rs_value = rs_test[np.arange(points), np.argmax(rs_val, axis=1)]
    pool_val, pool_test = scalarised(validation, pool.index), scalarised(test, pool.index)
    sizes = list(range(1, len(pool) + 1))
    morl_value = np.array([[expected_best(v, t, m) for v, t in zip(pool_val, pool_test)] for m in sizes])
    return {
        "rewards": pair,
        "rs_models": list(rs.index),
        "morl_pool": list(pool.index),
        "M": sizes,
        "rs": float(rs_value.mean()),
        "morl": [float(v.mean()) for v in morl_value],
        "advantage": [float((rs_value - v).mean()) for v in morl_value],
        "mu_points": points,
        "selected_on": SELECTION_SPLIT,
        "scored_on": REPORTED_SPLIT,
    }
