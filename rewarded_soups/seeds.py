"""A task replicated over training seeds (config ``seeds``): each seed's results and what they say together.

Each seed's run is a task of its own (``results/<task>`` for the config's
seed, ``results/<task>_seed<s>`` for the others: :func:`rewarded_soups.plan.with_replicates`),
from the same θ0 and the same data. Within a seed, intervals are the paired
bootstrap of its summary (inputs resampled); between seeds, a t interval over
the seeds' estimates (the variation that decides, at scale, whether RS
matches MORL).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BETWEEN_SEEDS = "mean over seeds with a 95% t interval of the seeds' estimates (scipy.stats.t; needs 2 seeds or more)"


def between_seeds(estimates: Sequence[float]) -> dict[str, Any]:
    """The mean of the seeds' estimates and its 95% t interval (no interval with one seed)."""
    from scipy.stats import t

    values = np.asarray(estimates, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return {"mean": mean, "low": None, "high": None, "seeds": len(values)}
    half = float(t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "seeds": len(values)}


def common_hypervolumes(scores: Mapping[int, pd.DataFrame], rewards: Sequence[str]) -> dict[int, dict[str, float]]:
    """Each seed's RS and MORL hypervolumes against one reference point built from every seed's models (each
    seed's summary.json uses its own), so that the seeds' values differ only by their fronts."""
    from rewarded_soups.pareto import auto_reference, hypervolume
    from rewarded_soups.scores import rs_table, wide

    tables = {seed: wide(table) for seed, table in scores.items()}
    reference = auto_reference(np.concatenate([t[list(rewards)].to_numpy(float) for t in tables.values()]))
    out = {}
    for seed, table in tables.items():
        rs = hypervolume(rs_table(table, rewards)[list(rewards)].to_numpy(float), reference)
        morl_points = table[table["kind"] == "morl"][list(rewards)].to_numpy(float)
        morl = hypervolume(morl_points, reference) if len(morl_points) else float("nan")
        out[seed] = {"rs": rs, "morl": morl, "rs_minus_morl": rs - morl, "reference": [float(r) for r in reference]}
    return out


def aggregate(
    summaries: Mapping[int, dict[str, Any]], scores: Mapping[int, pd.DataFrame] | None = None
) -> dict[str, Any]:
    """seeds.json from each seed's summary.json (seed -> summary, with its ``paired`` section) and, for the
    hypervolumes over seeds, each seed's scores (one reference point for all seeds)."""
    seeds = sorted(summaries)
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        paired = summaries[seed].get("paired") or {}
        per_seed[seed] = {
            "task": summaries[seed].get("task"),
            "experts": {
                e["reward"]: {"learned": e["learned"], "own_gain": e["gain"][e["reward"]]}
                for e in paired.get("experts", [])
            },
            "lmc_classes": paired.get("lmc", {}).get("classes"),
            "hypervolume": paired.get("hypervolume"),
        }
    rewards = summaries[seeds[0]]["rewards"]
    across: dict[str, Any] = {"rule": BETWEEN_SEEDS}
    gains = {
        r: [per_seed[s]["experts"][r]["own_gain"]["estimate"] for s in seeds if r in per_seed[s]["experts"]]
        for r in rewards
    }
    across["expert_own_gain"] = {r: between_seeds(v) for r, v in gains.items() if v}
    across["experts_learned"] = {
        r: sum(per_seed[s]["experts"].get(r, {}).get("learned", False) for s in seeds) for r in rewards
    }
    if scores is not None:
        common = common_hypervolumes(scores, rewards)
        for seed in seeds:
            per_seed[seed]["hypervolume_common_reference"] = common[seed]
        differences = [common[s]["rs_minus_morl"] for s in seeds if np.isfinite(common[s]["rs_minus_morl"])]
        if differences:
            across["hypervolume_rs_minus_morl"] = between_seeds(differences) | {
                "reference": common[seeds[0]]["reference"]
            }
    classes = [per_seed[s]["lmc_classes"] for s in seeds if per_seed[s]["lmc_classes"]]
    if classes:
        across["lmc_classes"] = {c: sum(k[c] for k in classes) for c in classes[0]}
    return {"seeds": seeds, "per_seed": per_seed, "across_seeds": across}


def plot_seed_fronts(
    scores: Mapping[int, pd.DataFrame],
    rewards: Sequence[str],
    pair: Sequence[str],
    out: str | Path,
    *,
    title: str = "",
    caption: str = "",
    dpi: int = 150,
) -> dict[str, list[tuple[float, float]]]:
    """Each seed's RS front thin, their mean (λ by λ) thick, each seed's experts and MORL runs; returns what was
    drawn (legend entry -> points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rewarded_soups.plots import PALETTE, _drawn, edge_curve, morl_points
    from rewarded_soups.scores import wide

    x, y = pair
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    curves = []
    for k, (_, table) in enumerate(sorted(scores.items())):
        wide_table = wide(table)
        curve = edge_curve(wide_table, rewards, pair)
        curves.append(curve.set_index("lam")[[x, y]])
        label = "RS front of each seed" if k == 0 else "_"
        ax.plot(curve[x], curve[y], "-", color=PALETTE["soup"], lw=0.8, alpha=0.45, label=label)
        experts = curve[curve["kind"] == "expert"]
        ax.scatter(experts[x], experts[y], marker="*", s=90, color=PALETTE["expert"], alpha=0.6,
                   label="experts of each seed" if k == 0 else "_")  # fmt: skip
        morl = morl_points(wide_table, rewards, pair)
        if len(morl):
            ax.scatter(morl[x], morl[y], marker="s", s=35, color=PALETTE["morl"], alpha=0.6,
                       label="MORL of each seed" if k == 0 else "_")  # fmt: skip
    mean = pd.concat(curves).groupby(level=0).mean().sort_index()
    ax.plot(
        mean[x], mean[y], "-o", color=PALETTE["soup"], lw=2.5, ms=5, label=f"mean over {len(curves)} seeds (λ by λ)"
    )
    ax.set_xlabel(f"{x} (higher is better)")
    ax.set_ylabel(f"{y} (higher is better)")
    ax.set_title(f"{title}: fronts of {len(curves)} seeds" if title else f"fronts of {len(curves)} seeds")
    if caption:
        ax.text(0.0, -0.13, caption, transform=ax.transAxes, fontsize=7, color="#444444", va="top", wrap=True)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    drawn = _drawn(ax)
    plt.close(fig)
    return drawn


def caption(aggregated: dict[str, Any]) -> str:
    """The seeds figure's caption: RS − MORL over seeds, and how many seeds' experts learned."""
    across = aggregated["across_seeds"]
    parts = []
    difference = across.get("hypervolume_rs_minus_morl")
    if difference and difference["low"] is not None:
        parts.append(
            f"hypervolume RS − MORL {difference['mean']:+.3g} [{difference['low']:+.3g}, {difference['high']:+.3g}] "
            f"over {difference['seeds']} seeds"
        )
    n = len(aggregated["seeds"])
    parts.append("experts that learned: " + ", ".join(f"{r} {k}/{n}" for r, k in across["experts_learned"].items()))
    return "; ".join(parts)
