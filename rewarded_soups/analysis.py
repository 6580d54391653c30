"""From scores.csv to summary.json: Hypothesis 1 (LMC) and 2 (Pareto, hypervolume)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from rewarded_soups.pareto import (
    auto_reference,
    hypervolume,
    lmc_margin_errors,
    lmc_margins,
    lmc_summary,
    pareto_front,
)
from rewarded_soups.scores import on_simplex, rs_table, standard_errors, weight_matrix, wide
from rewarded_soups.selection import SELECTION_SPLIT, expected_advantage, select

REFERENCE_RULE = (
    "per-reward minimum over all evaluated models (init, experts, soups, MORL) minus 5% of that reward's observed range"
)


# Every other kind in scores.csv is a merge method beyond the first (merge.method), named after it.
STANDARD_KINDS = ("init", "expert", "soup", "morl", "ensemble", "wise")


def method_kinds(table: pd.DataFrame) -> list[str]:
    """Kinds of the models made by further merge methods (ties, dare, …), in order of appearance."""
    return [k for k in dict.fromkeys(table["kind"]) if k not in STANDARD_KINDS]


def lmc_report(
    experts: pd.DataFrame, soups: pd.DataFrame, columns: Sequence[str], sem: pd.DataFrame | None
) -> dict[str, Any]:
    """LMC of ``soups`` against the line between ``experts`` (in reward order) on ``columns``.

    Strict and, with the standard errors ``sem`` (model × reward), noise-aware
    (:data:`rewarded_soups.pareto.LMC_RULE`), with each soup's margins, errors and class.
    """
    columns = list(columns)
    weights = weight_matrix(soups, columns)
    margins = lmc_margins(experts[columns].to_numpy(float), weights, soups[columns].to_numpy(float))
    if sem is None:
        return lmc_summary(margins)
    errors = lmc_margin_errors(
        sem.loc[experts.index, columns].to_numpy(float), weights, sem.loc[soups.index, columns].to_numpy(float)
    )
    summary = lmc_summary(margins, errors)
    summary["points"] = [
        {
            "model": model,
            "margins": dict(zip(columns, map(float, m))),
            "errors": dict(zip(columns, map(float, e))),
            "class": c,
        }
        for model, m, e, c in zip(soups.index, margins, errors, summary["classes"])
    ]
    return summary


def _on_pair(table: pd.DataFrame, rewards: Sequence[str], pair: Sequence[str]) -> np.ndarray:
    """Rows whose weights lie on the pair only (other rewards weigh 0)."""
    w = weight_matrix(table, rewards)
    others = [i for i, r in enumerate(rewards) if r not in pair]
    return np.all(w[:, others] == 0, axis=1) if others else np.ones(len(table), dtype=bool)


def pair_summary(
    table: pd.DataFrame,
    rewards: Sequence[str],
    pair: Sequence[str],
    sem: pd.DataFrame | None = None,
    per_sample: pd.DataFrame | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The front of two rewards (the paper's N=2 figures inside an N-reward task).

    LMC over the soups between the pair's experts (on the pair's two rewards);
    2-D hypervolumes of RS (experts + those soups), MORL runs whose μ weighs
    only the pair, and the baselines present (ensemble: the experts and the
    ensembles; wise: θ0, the experts and their interpolations toward θ0), all
    against one reference built from every model's pair of scores.
    """
    pair = list(pair)
    on_pair = _on_pair(table, rewards, pair)
    experts = table[(table["kind"] == "expert") & on_pair]
    experts = experts.iloc[np.argsort([int(np.argmax(w)) for w in weight_matrix(experts, pair)])]
    simplex = on_simplex(table, rewards)

    def soups_of(kind: str) -> pd.DataFrame:
        return table[(table["kind"] == kind) & on_pair & simplex]

    def lmc_of(kind: str) -> dict[str, Any]:
        soups = soups_of(kind)
        return lmc_report(experts, soups, pair, sem)

    ref = auto_reference(table[pair].to_numpy(float))
    groups = {
        "rs": pd.concat([experts, soups_of("soup")]),
        "morl": table[(table["kind"] == "morl") & on_pair],
        "ensemble": pd.concat([experts, table[(table["kind"] == "ensemble") & on_pair]]),
        "wise": pd.concat([table[table["kind"] == "init"], experts, table[table["kind"] == "wise"]]),
    }
    methods = method_kinds(table)
    groups |= {kind: pd.concat([experts, soups_of(kind)]) for kind in methods}
    present = {"rs", "morl", *methods} | {k for k in ("ensemble", "wise") if (table["kind"] == k).any()}
    paired = None
    if per_sample is not None and len(per_sample):
        from rewarded_soups.paired import pair_intervals

        init = list(table.index[table["kind"] == "init"])
        paired = pair_intervals(per_sample, experts, soups_of("soup"), groups["morl"], init, pair, ref, seed=seed)
    return {
        "rewards": pair,
        "paired": paired,
        "lmc": lmc_of("soup"),
        "hypervolume": {k: hypervolume(g[pair].to_numpy(float), ref) for k, g in groups.items() if k in present}
        | {"reference": [float(x) for x in ref], "reference_rule": REFERENCE_RULE},
        "methods": {kind: {"lmc": lmc_of(kind)} for kind in methods},
    }


def uniform_soup_comparison(table: pd.DataFrame, rewards: Sequence[str]) -> dict[str, Any] | None:
    """Does the uniform soup of all N experts beat θ0, reward by reward (the paper's Figure 3c)?"""
    n = len(rewards)
    w = weight_matrix(table, rewards)
    uniform = table[(table["kind"] == "soup") & np.all(np.isclose(w, 1.0 / n, atol=1e-3), axis=1)]
    init = table[table["kind"] == "init"]
    if n < 3 or not len(uniform) or not len(init):
        return None
    soup, base = uniform.iloc[0], init.iloc[0]
    beats = [r for r in rewards if soup[r] > base[r]]
    return {
        "model": uniform.index[0],
        "beats_init_on": beats,
        "count": f"{len(beats)} of {n}",
        "soup": {r: float(soup[r]) for r in rewards},
        "init": {r: float(base[r]) for r in rewards},
    }


def summarise(
    scores: pd.DataFrame,
    rewards: Sequence[str],
    *,
    reference: Sequence[float] | None = None,
    timings: dict[str, float] | None = None,
    pairs: Sequence[Sequence[str]] = (),
    preferences: Sequence[dict[str, float]] = (),
    per_sample: pd.DataFrame | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Summary of one task's scores over the trained ``rewards``.

    With ``per_sample`` (every model's value on every input), ``paired`` holds
    the paired intervals of every comparison (:mod:`rewarded_soups.paired`),
    bootstrapped from ``seed``.

    ``reference`` overrides the hypervolume reference point (one value per
    reward); by default it follows :data:`REFERENCE_RULE`. With validation
    scores: Lemma 1 for each of ``preferences`` and Figure 8 for each of
    ``pairs`` that has MORL runs (:mod:`rewarded_soups.selection`).
    """
    table = wide(scores)
    missing = [r for r in rewards if r not in table.columns]
    if missing:
        raise ValueError(f"scores.csv has no column for rewards {missing}; found {sorted(table.columns)}")
    rewards = list(rewards)
    experts = _experts_in_reward_order(table, rewards)
    soups = table[(table["kind"] == "soup") & on_simplex(table, rewards)]
    morl = table[table["kind"] == "morl"]
    sem = standard_errors(scores)
    validated = "split" in scores.columns and bool((scores["split"] == SELECTION_SPLIT).any())
    ref, rule = _reference_point(table, rewards, reference)
    rs = rs_table(table, rewards)
    rs_points = rs[rewards].to_numpy(float)
    morl_points = morl[rewards].to_numpy(float)
    preferences_ = [select(scores, mu, rewards) for mu in preferences] if validated else []
    advantage = [a for p in pairs if validated and (a := expected_advantage(scores, p, rewards))]
    paired = None
    if per_sample is not None and len(per_sample):
        from rewarded_soups.paired import advantage_intervals, paired_summary, preference_intervals

        paired = paired_summary(per_sample, table, rewards, experts, soups, morl, ref, seed=seed)
        paired["preferences"] = preference_intervals(per_sample, preferences_, rewards, seed=seed)
        validation = wide(scores, SELECTION_SPLIT) if validated else None
        paired["advantage"] = [
            {"rewards": a["rewards"], "by_M": advantage_intervals(per_sample, validation, a, seed=seed)}
            for a in advantage
        ]
    return {
        "rewards": rewards,
        "models": {
            "init": list(table.index[table["kind"] == "init"]),
            "experts": list(experts.index),
            "soups": len(soups),
            "morl": list(morl.index),
            "baselines": list(table.index[table["kind"].isin(["ensemble", "wise"])]),
            "methods": {kind: int((table["kind"] == kind).sum()) for kind in method_kinds(table)},
        },
        "lmc": _soups_lmc(experts, soups, rewards, sem),
        "hypervolume": {
            "rs": hypervolume(rs_points, ref) if len(rs_points) else 0.0,
            "morl": hypervolume(morl_points, ref) if len(morl_points) else 0.0,
            "reference": [float(x) for x in ref],
            "reference_rule": rule,
            "library": "moocore",
        },
        "pareto": {
            "rs_front": list(rs.index[pareto_front(rs_points)]) if len(rs_points) else [],
            "morl_front": list(morl.index[pareto_front(morl_points)]) if len(morl_points) else [],
        },
        "preferences": preferences_,
        "advantage": advantage,
        "pairs": [pair_summary(table, rewards, p, sem, per_sample, seed) for p in pairs],
        "uniform_soup": uniform_soup_comparison(table, rewards),
        "methods": _methods_summary(table, experts, rewards, ref, sem),
        "paired": paired,
        "timings": timings or {},
    }


def _experts_in_reward_order(table: pd.DataFrame, rewards: list[str]) -> pd.DataFrame:
    """One expert per reward, in the order of ``rewards`` (an error names what is missing)."""
    experts = table[table["kind"] == "expert"]
    order = [int(np.argmax(row)) for row in weight_matrix(experts, rewards)]
    if sorted(order) != list(range(len(rewards))):
        raise ValueError(f"need exactly one expert per reward {rewards}; found {list(experts.index)}")
    return experts.iloc[np.argsort(order)]


def _soups_lmc(experts: pd.DataFrame, soups: pd.DataFrame, rewards: list[str], sem: pd.DataFrame) -> dict[str, Any]:
    """Hypothesis 1 over the soups, and where the smallest margin is (the first, soup by soup, reward by reward)."""
    lmc = lmc_report(experts, soups, rewards, sem)
    if len(soups):
        _, model, reward = min(
            ((p["margins"][r], p["model"], r) for p in lmc["points"] for r in rewards), key=lambda c: c[0]
        )
        lmc["worst_at"] = {"model": model, "reward": reward}
    return lmc


def _reference_point(
    table: pd.DataFrame, rewards: list[str], reference: Sequence[float] | None
) -> tuple[np.ndarray, str]:
    """The hypervolume reference point and the rule it follows (:data:`REFERENCE_RULE`, or the config's)."""
    if reference is None:
        return auto_reference(table[rewards].to_numpy(float)), REFERENCE_RULE
    if len(reference) != len(rewards):
        raise ValueError(f"reference has {len(reference)} values for {len(rewards)} rewards {rewards}")
    return np.asarray(reference, dtype=float), "set in config (analysis.reference)"


def _methods_summary(
    table: pd.DataFrame, experts: pd.DataFrame, rewards: list[str], ref: np.ndarray, sem: pd.DataFrame
) -> dict[str, Any]:
    """Per further merge method: its models, its front's hypervolume and its LMC."""
    methods = {}
    for kind in method_kinds(table):
        rows = rs_table(table, rewards, kind)
        merged = rows[rows["kind"] == kind]
        methods[kind] = {
            "models": len(table[table["kind"] == kind]),
            "hypervolume": hypervolume(rows[rewards].to_numpy(float), ref),
            "lmc": lmc_report(experts, merged, rewards, sem),
        }
    return methods
