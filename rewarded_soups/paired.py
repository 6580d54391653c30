"""The summary's paired statistics: every comparison between models of a task, with a paired 95% interval.

Each model's per-sample scores on the reported split (``scores_per_sample.csv.gz``)
are resampled together (:mod:`rewarded_soups.bootstrap`): experts' gains over θ0,
whether each pair of experts trades off, each soup's LMC margin over its
experts' line (with the class the paired interval gives, next to the unpaired
one for comparison), and the RS and MORL hypervolumes and their difference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from rewarded_soups import bootstrap
from rewarded_soups.pareto import hypervolume
from rewarded_soups.scores import REPORTED_SPLIT, per_sample_matrix, weight_matrix

log = logging.getLogger(__name__)

LMC_CLASS_RULE = (
    "fails when any reward's 95% interval of the margin R(soup) − Σ λ_i R(expert_i) lies entirely below 0; "
    "holds when every reward's interval lies at or above 0; else undecided"
)


def lmc_class(intervals: Sequence[bootstrap.Interval]) -> str:
    """``holds``, ``fails`` or ``undecided`` (:data:`LMC_CLASS_RULE`) from one soup's per-reward intervals."""
    if any(i.high < 0 for i in intervals):
        return "fails"
    if all(i.low >= 0 for i in intervals):
        return "holds"
    return "undecided"


def paired_summary(
    per_sample: pd.DataFrame,
    table: pd.DataFrame,
    rewards: Sequence[str],
    experts: pd.DataFrame,
    soups: pd.DataFrame,
    morl: pd.DataFrame,
    reference: np.ndarray,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired intervals for the comparisons the summary makes (``table``: wide test scores, models as index)."""
    rewards = list(rewards)
    init = list(table.index[table["kind"] == "init"])
    models = list(dict.fromkeys([*init, *experts.index, *soups.index, *morl.index]))
    values = dict(zip(models, per_sample_matrix(per_sample, models, rewards, REPORTED_SPLIT)))
    out: dict[str, Any] = {"method": bootstrap.METHOD, "unpaired_method": bootstrap.UNPAIRED_METHOD}
    out["experts"] = _expert_gains(values, init, list(experts.index), rewards, seed)
    out["trade_offs"] = _trade_offs(values, list(experts.index), rewards, seed)
    out["lmc"] = _lmc(values, experts, soups, rewards, seed)
    out["hypervolume"] = _hypervolumes(
        values, list(experts.index) + list(soups.index), list(morl.index), reference, seed
    )
    return out


def _expert_gains(
    values: dict[str, np.ndarray], init: list[str], experts: list[str], rewards: list[str], seed: int
) -> list[dict[str, Any]]:
    """Each expert's gain over θ0 on every reward; ``learned``: its own reward's interval lies above 0."""
    if not init:
        return []
    base = values[init[0]]
    out = []
    for k, expert in enumerate(experts):
        gains = {
            r: bootstrap.difference(values[expert][:, j], [1.0], [base[:, j]], seed=seed + j)
            for j, r in enumerate(rewards)
        }
        own = gains[rewards[k]]
        learned = own.sign() == "above"
        if not learned:
            log.warning("expert %s did not learn: gain on %s %s (paired 95%%)", expert, rewards[k], own)
        out.append(
            {
                "expert": expert,
                "reward": rewards[k],
                "learned": learned,
                "gain": {r: g.as_dict() for r, g in gains.items()},
            }
        )
    return out


def _trade_offs(values: dict[str, np.ndarray], experts: list[str], rewards: list[str], seed: int) -> list[dict]:
    """Per pair of experts: is each better than the other on its own reward (paired)? The pair trades off when both."""
    out = []
    for a, b in combinations(range(len(experts)), 2):
        on_a = bootstrap.difference(values[experts[a]][:, a], [1.0], [values[experts[b]][:, a]], seed=seed + a)
        on_b = bootstrap.difference(values[experts[b]][:, b], [1.0], [values[experts[a]][:, b]], seed=seed + b)
        trades = on_a.sign() == "above" and on_b.sign() == "above"
        if not trades:
            log.warning(
                "experts %s and %s do not trade off: %s on %s %s, %s on %s %s",
                experts[a], experts[b], experts[a], rewards[a], on_a, experts[b], rewards[b], on_b,
            )  # fmt: skip
        out.append(
            {
                "rewards": [rewards[a], rewards[b]],
                "trades_off": trades,
                f"{rewards[a]}: {experts[a]} − {experts[b]}": on_a.as_dict(),
                f"{rewards[b]}: {experts[b]} − {experts[a]}": on_b.as_dict(),
            }
        )
    return out


def _lmc(
    values: dict[str, np.ndarray], experts: pd.DataFrame, soups: pd.DataFrame, rewards: list[str], seed: int
) -> dict[str, Any]:
    """Each soup's margins over its experts' line, paired and unpaired, and the classes each gives."""
    weights = weight_matrix(soups, rewards)
    expert_names = list(experts.index)
    points, ratios = [], []
    for soup, lam in zip(soups.index, weights):
        used = [i for i, w in enumerate(lam) if w != 0]
        paired, unpaired = {}, {}
        for j, r in enumerate(rewards):
            others = [values[expert_names[i]][:, j] for i in used]
            lam_used = [float(lam[i]) for i in used]
            paired[r] = bootstrap.difference(values[soup][:, j], lam_used, others, seed=seed + j)
            unpaired[r] = bootstrap.unpaired_difference(values[soup][:, j], lam_used, others, seed=seed + j)
            if unpaired[r].width > 0:
                ratios.append(paired[r].width / unpaired[r].width)
        points.append(
            {
                "model": soup,
                "class": lmc_class(list(paired.values())),
                "class_unpaired": lmc_class(list(unpaired.values())),
                "margins": {r: paired[r].as_dict() for r in rewards},
                "margins_unpaired": {r: unpaired[r].as_dict() for r in rewards},
            }
        )
    counts = {c: sum(p["class"] == c for p in points) for c in ("holds", "fails", "undecided")}
    counts_unpaired = {c: sum(p["class_unpaired"] == c for p in points) for c in ("holds", "fails", "undecided")}
    return {
        "rule": LMC_CLASS_RULE,
        "classes": counts,
        "classes_unpaired": counts_unpaired,
        "median_width_ratio_paired_to_unpaired": float(np.median(ratios)) if ratios else None,
        "points": points,
    }


def _hypervolumes(
    values: dict[str, np.ndarray], rs: list[str], morl: list[str], reference: np.ndarray, seed: int
) -> dict[str, Any]:
    """RS and MORL hypervolumes (fixed reference) and RS − MORL, each with its paired interval."""
    if not rs or not morl:
        return {}
    n_rs = len(rs)

    def statistic(means: np.ndarray) -> list[float]:
        rs_hv, morl_hv = hypervolume(means[:n_rs], reference), hypervolume(means[n_rs:], reference)
        return [rs_hv, morl_hv, rs_hv - morl_hv]

    per_model = [values[m] for m in [*rs, *morl]]
    intervals = bootstrap.paired_statistics(per_model, statistic, seed=seed)
    return {key: i.as_dict() for key, i in zip(("rs", "morl", "rs_minus_morl"), intervals)}


def pair_intervals(
    per_sample: pd.DataFrame,
    experts: pd.DataFrame,
    soups: pd.DataFrame,
    morl: pd.DataFrame,
    init: list[str],
    pair: Sequence[str],
    reference: np.ndarray,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """The paired statistics of one pair's front (its two experts in the pair's order, the soups between them,
    the MORL runs on it): as :func:`paired_summary`, on the pair's two rewards."""
    pair = list(pair)
    models = list(dict.fromkeys([*init, *experts.index, *soups.index, *morl.index]))
    values = dict(zip(models, per_sample_matrix(per_sample, models, pair, REPORTED_SPLIT)))
    rs = list(experts.index) + list(soups.index)
    return {
        "method": bootstrap.METHOD,
        "experts": _expert_gains(values, init, list(experts.index), pair, seed),
        "trade_offs": _trade_offs(values, list(experts.index), pair, seed),
        "lmc": _lmc(values, experts, soups, pair, seed),
        "hypervolume": _hypervolumes(values, rs, list(morl.index), np.asarray(reference, dtype=float), seed),
    }


def preference_intervals(
    per_sample: pd.DataFrame, selections: Sequence[dict[str, Any]], rewards: Sequence[str], *, seed: int = 0
) -> list[dict[str, Any]]:
    """Lemma 1 per preference: the test advantage of the soup chosen on validation over MORL(μ̂) and over
    λ = μ̂ in Σ μ̂_i R_i, paired over the test inputs (the choice itself, made on validation, is held fixed)."""
    rewards = list(rewards)
    out = []
    for selection in selections:
        mu = np.array([selection["preference"][r] for r in rewards])
        entry: dict[str, Any] = {"preference": selection["preference"], "selected": selection["selected"]["model"]}
        for other in ("morl", "at_preference"):
            if not selection.get(other):
                continue
            names = [selection["selected"]["model"], selection[other]["model"]]
            per_model = list(per_sample_matrix(per_sample, names, rewards, REPORTED_SPLIT))
            # Each reward's mean over the inputs it applies to, then Σ μ̂_i: NaN-safe (grounding's sizes).
            interval = bootstrap.paired_statistic(per_model, lambda m, mu=mu: float((m[0] - m[1]) @ mu), seed=seed)
            entry[f"selected_minus_{other}"] = interval.as_dict()
        out.append(entry)
    return out


# Figure 8's interval: fewer μ̂ points and replicates than the point estimate (each replicate is a full Figure 8).
ADVANTAGE_MU_POINTS = 101
ADVANTAGE_RESAMPLES = 400


def advantage_intervals(
    per_sample: pd.DataFrame, validation: pd.DataFrame, advantage: dict[str, Any], *, seed: int = 0
) -> list[dict[str, Any]]:
    """Figure 8's RS − MORL advantage per M with its paired interval over the test inputs (each model's choice
    on validation held fixed; ``validation``: wide validation scores)."""
    from rewarded_soups.selection import expected_best

    pair = list(advantage["rewards"])
    rs, pool = list(advantage["rs_models"]), list(advantage["morl_pool"])
    mu_hat = np.linspace(0.0, 1.0, ADVANTAGE_MU_POINTS)
    user = np.stack([1.0 - mu_hat, mu_hat], axis=1)
    rs_val = user @ validation.loc[rs, pair].to_numpy(float).T
    pool_val = user @ validation.loc[pool, pair].to_numpy(float).T
    rs_choice = np.argmax(rs_val, axis=1)
    per_model = list(per_sample_matrix(per_sample, [*rs, *pool], pair, REPORTED_SPLIT))

    sizes = list(advantage["M"])

    def statistic(means: np.ndarray) -> list[float]:
        rs_test, pool_test = user @ means[: len(rs)].T, user @ means[len(rs) :].T
        rs_value = rs_test[np.arange(len(mu_hat)), rs_choice]
        return [
            float((rs_value - np.array([expected_best(v, t, m) for v, t in zip(pool_val, pool_test)])).mean())
            for m in sizes
        ]

    intervals = bootstrap.paired_statistics(per_model, statistic, seed=seed, resamples=ADVANTAGE_RESAMPLES)
    return [{"M": m} | interval.as_dict() for m, interval in zip(sizes, intervals)]
