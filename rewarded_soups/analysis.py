"""From scores.csv to summary.json: Hypothesis 1 (LMC) and 2 (Pareto, hypervolume)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from rewarded_soups.grid import parse_mix
from rewarded_soups.pareto import auto_reference, hypervolume, lmc_margins, lmc_summary, pareto_front
from rewarded_soups.scores import wide

REFERENCE_RULE = (
    "per-reward minimum over all evaluated models (init, experts, soups, MORL) minus 5% of that reward's observed range"
)


def weight_matrix(table: pd.DataFrame, rewards: Sequence[str]) -> np.ndarray:
    """Weight vector of every row, in ``rewards`` order (missing rewards weigh 0)."""
    return np.array([[parse_mix(w).get(r, 0.0) for r in rewards] for w in table["weights"]], dtype=float)


def rs_table(table: pd.DataFrame) -> pd.DataFrame:
    """Experts and soups: the models that make the rewarded-soups front."""
    return table[table["kind"].isin(["expert", "soup"])]


def preference_comparison(table: pd.DataFrame, rewards: Sequence[str]) -> list[dict[str, Any]]:
    """Lemma 1 of the paper, per MORL preference μ: the scalarised reward Σ μ_i R_i of

    * MORL(μ), trained on exactly that reward;
    * the soup with λ = μ (the a priori choice), when μ is on the λ grid;
    * the best experts-or-soup on the grid (a posteriori choice). It is selected
      on the same evaluation prompts it is scored on, so it is optimistic.
    """
    rs = rs_table(table)
    rs_w = weight_matrix(rs, rewards)
    rs_values = rs[list(rewards)].to_numpy(float)
    morl = table[table["kind"] == "morl"]
    out = []
    for (name, row), mu in zip(morl.iterrows(), weight_matrix(morl, rewards)):
        scalar = rs_values @ mu
        at_mu = np.flatnonzero(np.all(np.isclose(rs_w, mu, atol=1e-4), axis=1))
        best = int(np.argmax(scalar)) if len(scalar) else None
        out.append(
            {
                "mu": row["weights"],
                "morl": {"model": name, "scalarised": float(row[list(rewards)].to_numpy(float) @ mu)},
                "rs_at_mu": (
                    {"model": rs.index[at_mu[0]], "scalarised": float(scalar[at_mu[0]])} if len(at_mu) else None
                ),
                "rs_best": (
                    {"model": rs.index[best], "scalarised": float(scalar[best]), "selected_on": "evaluation split"}
                    if best is not None
                    else None
                ),
            }
        )
    return out


def summarise(
    scores: pd.DataFrame,
    rewards: Sequence[str],
    *,
    reference: Sequence[float] | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Summary of one task's scores over the trained ``rewards``.

    ``reference`` overrides the hypervolume reference point (one value per
    reward); by default it follows :data:`REFERENCE_RULE`.
    """
    table = wide(scores)
    missing = [r for r in rewards if r not in table.columns]
    if missing:
        raise ValueError(f"scores.csv has no column for rewards {missing}; found {sorted(table.columns)}")
    rewards = list(rewards)
    experts = table[table["kind"] == "expert"]
    soups = table[table["kind"] == "soup"]
    morl = table[table["kind"] == "morl"]

    expert_w = weight_matrix(experts, rewards)
    order = [int(np.argmax(row)) for row in expert_w]
    if sorted(order) != list(range(len(rewards))):
        raise ValueError(f"need exactly one expert per reward {rewards}; found {list(experts.index)}")
    experts = experts.iloc[np.argsort(order)]
    expert_scores = experts[rewards].to_numpy(float)

    margins = lmc_margins(expert_scores, weight_matrix(soups, rewards), soups[rewards].to_numpy(float))
    lmc = lmc_summary(margins)
    if len(soups):
        k_worst = np.unravel_index(np.argmin(margins), margins.shape)
        lmc["worst_at"] = {"model": soups.index[k_worst[0]], "reward": rewards[k_worst[1]]}

    all_points = table[rewards].to_numpy(float)
    if reference is None:
        ref = auto_reference(all_points)
        rule = REFERENCE_RULE
    else:
        if len(reference) != len(rewards):
            raise ValueError(f"reference has {len(reference)} values for {len(rewards)} rewards {rewards}")
        ref = np.asarray(reference, dtype=float)
        rule = "set in config (analysis.reference)"

    rs = rs_table(table)
    rs_points = rs[rewards].to_numpy(float)
    morl_points = morl[rewards].to_numpy(float)
    return {
        "rewards": rewards,
        "models": {
            "init": list(table.index[table["kind"] == "init"]),
            "experts": list(experts.index),
            "soups": len(soups),
            "morl": list(morl.index),
        },
        "lmc": lmc,
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
        "preferences": preference_comparison(table, rewards),
        "timings": timings or {},
    }
