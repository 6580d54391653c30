"""Figures drawn from scores.csv alone (so they regenerate without training).

* :func:`plot_front` — the paper's Figure 2: experts, the RS curve labelled by
  λ, MORL points, θ0, and the straight line between the experts that
  Hypothesis 1 must beat.
* :func:`plot_lambda_curves` — the paper's Figure 5b: every reward and metric
  as a function of λ.
* :func:`plot_spider` — the paper's Figures 3c and 4: spider maps of all N > 2
  rewards for θ0, the experts, the uniform soup, MORL and clockwise subsets.
* :func:`plot_advantage` — the paper's Figure 8: RS's expected reward
  advantage over MORL with M runs (numbers from summary.json).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from rewarded_soups import registry
from rewarded_soups.analysis import method_kinds
from rewarded_soups.grid import format_weight
from rewarded_soups.scores import standard_errors, weight_matrix, wide

PALETTE = {
    "init": "#222222",
    "expert": "#1f77b4",
    "soup": "#1f77b4",
    "morl": "#d62728",
    "line": "#888888",
    "ensemble": "#2ca02c",
    "wise": "#9467bd",
}


def edge_curve(table: pd.DataFrame, rewards: Sequence[str], pair: Sequence[str]) -> pd.DataFrame:
    """Experts and soups on the simplex edge between ``pair``, ordered by λ of ``pair[0]``.

    Adds a column ``lam`` (weight of the first reward of the pair). For two
    rewards this is the whole RS curve.
    """
    rs = table[table["kind"].isin(["expert", "soup"])].copy()
    w = weight_matrix(rs, rewards)
    idx = [list(rewards).index(p) for p in pair]
    others = [i for i in range(len(rewards)) if i not in idx]
    on_edge = np.isclose(w[:, idx].sum(axis=1), 1.0) & (np.all(w[:, others] == 0, axis=1) if others else True)
    rs = rs[on_edge]
    rs["lam"] = w[on_edge][:, idx[0]]
    return rs.sort_values("lam")


def baseline_curves(table: pd.DataFrame, rewards: Sequence[str], pair: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Baselines on the pair's front: the ensemble curve (expert to expert, by λ of
    ``pair[0]``) and one WiSE curve per expert (θ0 to the expert, by α)."""
    w = weight_matrix(table, rewards)
    idx = {r: list(rewards).index(r) for r in pair}
    experts = {r: table[(table["kind"] == "expert") & np.isclose(w[:, idx[r]], 1.0)] for r in pair}
    curves: dict[str, pd.DataFrame] = {}
    ens = table["kind"] == "ensemble"
    if ens.any():
        others = [i for i in range(len(rewards)) if i not in idx.values()]
        on = ens & (np.all(w[:, others] == 0, axis=1) if others else True)
        rows = pd.concat([experts[pair[0]], table[on], experts[pair[1]]])
        curves["ensemble"] = rows.assign(t=weight_matrix(rows, rewards)[:, idx[pair[0]]]).sort_values("t")
    others = [i for i in range(len(rewards)) if i not in idx.values()]
    off_pair = np.all(w[:, others] == 0, axis=1) if others else np.ones(len(table), dtype=bool)
    for kind in method_kinds(table):
        # A further merge method: its curve from one expert to the other (beyond them when extrapolated).
        rows = pd.concat([experts[pair[0]], table[(table["kind"] == kind) & off_pair], experts[pair[1]]])
        curves[f"method-{kind}"] = rows.assign(t=weight_matrix(rows, rewards)[:, idx[pair[0]]]).sort_values("t")
    init = table[table["kind"] == "init"]
    for r in pair:
        wise = (table["kind"] == "wise") & (w[:, idx[r]] > 0)
        if wise.any():
            rows = pd.concat([init, table[wise], experts[r]])
            curves[f"wise-{r}"] = rows.assign(t=weight_matrix(rows, rewards)[:, idx[r]]).sort_values("t")
    return curves


def morl_points(table: pd.DataFrame, rewards: Sequence[str], pair: Sequence[str]) -> pd.DataFrame:
    """MORL runs whose μ weighs only the pair (a run on other rewards is no point of this front), with ``mu``
    the weight of ``pair[0]``."""
    morl = table[table["kind"] == "morl"].copy()
    if len(morl):
        w = weight_matrix(morl, rewards)
        others = [i for i, r in enumerate(rewards) if r not in pair]
        morl = morl[np.all(w[:, others] == 0, axis=1)] if others else morl
        morl["mu"] = weight_matrix(morl, rewards)[:, list(rewards).index(pair[0])]
    return morl


def pair_lmc(scores: pd.DataFrame, rewards: Sequence[str], pair: Sequence[str]) -> dict | None:
    """Strict and noise-aware LMC of the soups between the pair's experts (as summary.json reports it)."""
    from rewarded_soups.analysis import lmc_report

    table = wide(scores)
    curve = edge_curve(table, rewards, pair)
    experts = curve[curve["kind"] == "expert"].sort_values("lam", ascending=False)
    soups = curve[curve["kind"] == "soup"]
    if len(experts) != 2 or not len(soups):
        return None
    return lmc_report(experts, soups, pair, standard_errors(scores))


def figure_intervals(
    scores: pd.DataFrame, per_sample: pd.DataFrame | None, rewards: Sequence[str], pair: Sequence[str], seed: int = 0
) -> dict | None:
    """The pair's paired statistics (:func:`rewarded_soups.paired.pair_intervals`) for a figure, or None without
    per-sample scores."""
    if per_sample is None or not len(per_sample):
        return None
    from rewarded_soups.paired import pair_intervals
    from rewarded_soups.pareto import auto_reference

    table = wide(scores)
    curve = edge_curve(table, rewards, pair)
    experts = curve[curve["kind"] == "expert"].sort_values("lam", ascending=False)
    # As summary.json: the soups between the experts (an extrapolating method's λ outside [0, 1] are not).
    soups = curve[(curve["kind"] == "soup") & curve["lam"].between(0, 1)]
    if len(experts) != 2:
        return None
    morl = morl_points(table, rewards, pair)
    init = list(table.index[table["kind"] == "init"])
    reference = auto_reference(table[list(pair)].to_numpy(float))
    return pair_intervals(per_sample, experts, soups, morl, init, pair, reference, seed=seed)


def paired_caption(intervals: dict | None) -> str:
    """LMC classes from the paired intervals, and RS − MORL hypervolume with its interval."""
    if not intervals:
        return ""
    classes = intervals["lmc"]["classes"]
    n = sum(classes.values())
    parts = [f"LMC (paired 95%): holds {classes['holds']}/{n}, undecided {classes['undecided']}/{n}, "
             f"fails {classes['fails']}/{n}"]  # fmt: skip
    difference = intervals["hypervolume"].get("rs_minus_morl")
    if difference:
        parts.append(
            f"hypervolume RS − MORL {difference['estimate']:+.3g} [{difference['low']:+.3g}, {difference['high']:+.3g}]"
        )
    not_learned = [e["expert"].removeprefix("expert-") for e in intervals["experts"] if not e["learned"]]
    if not_learned:
        parts.append("did not learn: " + ", ".join(not_learned))
    return "; ".join(parts)


def lmc_caption(lmc: dict | None) -> str:
    if not lmc:
        return ""
    n = lmc["n_points"]
    strict = round(lmc["holds_fraction"] * n)
    noisy = round(lmc["holds_within_noise_fraction"] * n)
    return f"LMC holds at {strict}/{n} soups strictly, {noisy}/{n} within noise (one-sided 95%)"


def plot_front(
    scores: pd.DataFrame,
    rewards: Sequence[str],
    axes: Sequence[str],
    out: str | Path,
    *,
    title: str = "",
    dpi: int = 150,
    per_sample: pd.DataFrame | None = None,
    seed: int = 0,
    intervals: dict | None = None,
) -> dict[str, list[tuple[float, float]]]:
    """Draw the front; return what was drawn: each legend entry's (x, y) points, for checking the figure.

    With ``per_sample``, each soup's bars are the paired 95% interval of its margin over the experts' line
    (placed at the soup), the caption gives the paired LMC classes and RS − MORL, and an expert that did not
    learn is drawn hollow.
    """
    x, y = axes
    table = wide(scores)
    curve = edge_curve(table, rewards, axes)
    if intervals is None:  # computed here unless the caller has them (:func:`figure_intervals`)
        intervals = figure_intervals(scores, per_sample, rewards, axes, seed)
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    experts = curve[curve["kind"] == "expert"]
    if len(experts) == 2:
        ax.plot(experts[x], experts[y], "--", color=PALETTE["line"], lw=1.2, label="linear interpolation of rewards")
    _draw_soups(ax, curve, standard_errors(scores), x, y, intervals)
    not_learned = {e["expert"] for e in intervals["experts"] if not e["learned"]} if intervals else set()
    _draw_experts(ax, experts, x, y, not_learned)
    _draw_morl(ax, morl_points(table, rewards, axes), x, y)
    _draw_baselines(ax, baseline_curves(table, rewards, axes), x, y)
    init = table[table["kind"] == "init"]
    if len(init):
        ax.scatter(init[x], init[y], marker="o", s=70, color=PALETTE["init"], zorder=4, label="θ0 (pre-trained)")
    ax.set_xlabel(f"{x} (higher is better)")
    ax.set_ylabel(f"{y} (higher is better)")
    ax.set_title(f"{title}: Pareto front of rewarded soups" if title else "Pareto front of rewarded soups")
    caption = paired_caption(intervals) or lmc_caption(pair_lmc(scores, rewards, axes))
    if caption:
        # Under the x label: inside the axes the legend could hide it.
        ax.text(0.0, -0.13, caption, transform=ax.transAxes, fontsize=7, color="#444444", va="top", wrap=True)
    ax.legend(fontsize=8, loc="best", frameon=True)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    drawn = _drawn(ax)
    plt.close(fig)
    return drawn


def margin_bars(curve: pd.DataFrame, intervals: dict, column: str) -> np.ndarray:
    """2 × points error bars of ``column``: each soup's paired margin interval around its score (experts: 0)."""
    margins = {p["model"]: p["margins"][column] for p in intervals["lmc"]["points"]}
    bars = np.zeros((2, len(curve)))
    for k, model in enumerate(curve.index):
        if model in margins:
            m = margins[model]
            bars[:, k] = (m["estimate"] - m["low"], m["high"] - m["estimate"])
    return bars


def _draw_soups(ax, curve: pd.DataFrame, sem: pd.DataFrame, x: str, y: str, intervals: dict | None = None) -> None:
    """The RS curve labelled by λ, with the paired 95% interval of each soup's margin over the experts' line
    (without per-sample scores: ±1 standard error of the evaluation means)."""
    if intervals:
        xerr, yerr = margin_bars(curve, intervals, x), margin_bars(curve, intervals, y)
    else:
        xerr, yerr = sem.loc[curve.index, x], sem.loc[curve.index, y]
    ax.errorbar(curve[x], curve[y], xerr=xerr, yerr=yerr, fmt="none", ecolor=PALETTE["soup"], alpha=0.45, lw=1)
    ax.plot(
        curve[x],
        curve[y],
        "-o",
        color=PALETTE["soup"],
        ms=5,
        lw=2,
        label=f"rewarded soups (RS), λ = weight of {x}",
        zorder=3,
    )
    for _, row in curve.iterrows():
        ax.annotate(
            f"λ={format_weight(row['lam'])}", (row[x], row[y]), textcoords="offset points", xytext=(5, 4), fontsize=7
        )


def _draw_experts(ax, experts: pd.DataFrame, x: str, y: str, not_learned: set[str] = frozenset()) -> None:
    """Experts as stars; one whose own-reward gain over θ0 is not significant is hollow and says so."""
    learned = experts[~experts.index.isin(not_learned)]
    ax.scatter(
        learned[x], learned[y], marker="*", s=260, color=PALETTE["expert"], edgecolor="k", zorder=4, label="experts θ_i"
    )
    flagged = experts[experts.index.isin(not_learned)]
    if len(flagged):
        ax.scatter(flagged[x], flagged[y], marker="*", s=260, facecolor="none", edgecolor=PALETTE["expert"], lw=1.5,
                   zorder=4, label="expert that did not learn (paired 95%)")  # fmt: skip
    for name, row in experts.iterrows():
        ax.annotate(
            name.removeprefix("expert-") + (" (did not learn)" if name in not_learned else ""),
            (row[x], row[y]),
            textcoords="offset points",
            xytext=(-10, -14),
            fontsize=9,
            weight="bold",
        )


def _draw_morl(ax, morl: pd.DataFrame, x: str, y: str) -> None:
    if not len(morl):
        return
    ax.scatter(morl[x], morl[y], marker="s", s=70, color=PALETTE["morl"], edgecolor="k", zorder=4, label="MORL")
    for _, row in morl.iterrows():
        ax.annotate(
            f"μ={format_weight(row['mu'])}",
            (row[x], row[y]),
            textcoords="offset points",
            xytext=(5, -12),
            fontsize=7,
            color=PALETTE["morl"],
        )


def _draw_baselines(ax, curves: Mapping[str, pd.DataFrame], x: str, y: str) -> None:
    """Prediction ensembling, WiSE and the further merge methods, one curve each."""
    method_colours = iter(sns.color_palette("Dark2", 8))
    for name, rows in curves.items():
        if name == "ensemble":
            style = {"color": PALETTE["ensemble"], "marker": "D", "label": "prediction ensembling (λ)"}
        elif name.startswith("method-"):
            method = name.removeprefix("method-")
            style = {"color": next(method_colours), "marker": "^", "label": f"merge method {method} (λ)"}
            ax.plot(rows[x], rows[y], "-.", ms=5, lw=1.5, zorder=2, **style)
            continue
        else:
            style = {"color": PALETTE["wise"], "marker": "v", "label": f"WiSE: θ0 toward {name.removeprefix('wise-')}"}
        ax.plot(rows[x], rows[y], ":", ms=5, lw=1.5, zorder=2, **style)


def _drawn(ax) -> dict[str, list[tuple[float, float]]]:
    """Legend label -> data points of each labelled line and scatter of ``ax``."""
    out: dict[str, list[tuple[float, float]]] = {}
    for line in ax.get_lines():
        label = line.get_label()
        if not label.startswith("_"):
            out[label] = [(float(a), float(b)) for a, b in zip(line.get_xdata(), line.get_ydata())]
    for collection in ax.collections:
        label = collection.get_label()
        if not label.startswith("_") and hasattr(collection, "get_offsets"):
            out[label] = [(float(a), float(b)) for a, b in collection.get_offsets()]
    return out


def plot_lambda_curves(
    scores: pd.DataFrame,
    rewards: Sequence[str],
    metrics: Mapping[str, str],
    out: str | Path,
    *,
    pair: Sequence[str] | None = None,
    title: str = "",
    dpi: int = 150,
    per_sample: pd.DataFrame | None = None,
    seed: int = 0,
    intervals: dict | None = None,
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """One panel per reward and metric against λ (the weight of ``pair[0]``) along the soups between
    the pair's experts (default the first two rewards); MORL runs of that pair at their μ. The band: the
    paired 95% interval of each soup's margin over the experts' line on the pair's rewards (with
    ``per_sample``), else ±1 standard error.

    Returns what each panel drew (panel -> legend entry -> points), for checking the figure.
    """
    pair = list(pair or rewards[:2])
    table = wide(scores)
    sem = standard_errors(scores)
    if intervals is None:
        intervals = figure_intervals(scores, per_sample, rewards, pair, seed)
    curve = edge_curve(table, rewards, pair)
    morl = morl_points(table, rewards, pair)
    init = table[table["kind"] == "init"]
    columns = list(rewards) + [m for m in metrics if m in table.columns]
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axs = plt.subplots(1, len(columns), figsize=(3.6 * len(columns), 3.4), squeeze=False)
    for ax, col in zip(axs[0], columns):
        paired = intervals is not None and col in pair
        band = "paired 95% of the margin" if paired else "±1 s.e."
        ax.plot(curve["lam"], curve[col], "-o", color=PALETTE["soup"], ms=4, label=f"RS ({band})")
        low, high = margin_bars(curve, intervals, col) if paired else (sem.loc[curve.index, col],) * 2
        ax.fill_between(curve["lam"], curve[col] - low, curve[col] + high, color=PALETTE["soup"], alpha=0.2, lw=0)
        ends = curve[curve["kind"] == "expert"]
        if len(ends) == 2:
            ax.plot(ends["lam"], ends[col], "--", color=PALETTE["line"], lw=1, label="linear")
        if len(morl):
            ax.scatter(
                morl["mu"], morl[col], marker="s", color=PALETTE["morl"], edgecolor="k", zorder=4, label="MORL (at μ)"
            )
        if len(init):
            ax.axhline(float(init[col].iloc[0]), ls=":", color=PALETTE["init"], label="θ0")
        kind = registry.rewards().get(metrics.get(col, ""))
        better = "lower" if kind is not None and not kind.higher_is_better else "higher"
        ax.set_title(f"{col} ({better} is better)", fontsize=10)
        ax.set_xlabel(f"λ (weight of {pair[0]}; 1 − λ of {pair[1]})")
    axs[0][0].legend(fontsize=7)
    caption = paired_caption(intervals) or lmc_caption(pair_lmc(scores, rewards, pair))
    heading = f"{title}: rewards from {pair[1]} (λ=0) to {pair[0]} (λ=1)" if title else ""
    if heading or caption:
        fig.suptitle("\n".join(t for t in (heading, caption) if t), fontsize=10)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    drawn = {ax.get_title().split(" (")[0]: _drawn(ax) for ax in axs[0]}
    plt.close(fig)
    return drawn


def spider_groups(table: pd.DataFrame, rewards: Sequence[str], starts: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """Panels of spider maps: θ0, the experts, the uniform soup and MORL (the paper's Figure 3c),
    then per start the soups of M = 1..N experts taken clockwise (Figure 4)."""
    from rewarded_soups.plan import clockwise_subsets

    n = len(rewards)
    w = weight_matrix(table, rewards)
    uniform = (table["kind"] == "soup") & np.all(np.isclose(w, 1.0 / n, atol=1e-3), axis=1)
    main = table[table["kind"].isin(["init", "expert", "morl"]) | uniform]
    panels = [("θ0, experts, uniform soup, MORL", main)]
    for start in starts:
        rows = []
        for subset in clockwise_subsets(list(rewards), start):
            target = np.array([1.0 / len(subset) if r in subset else 0.0 for r in rewards])
            match = table["kind"].isin(["expert", "soup"]) & np.all(np.isclose(w, target, atol=1e-3), axis=1)
            rows.append(table[match].iloc[:1])
        panels.append((f"uniform soups of M experts, clockwise from {start}", pd.concat(rows)))
    return panels


def _spider_label(name: str, kind: str) -> str:
    if kind == "init":
        return "θ0"
    if kind == "expert":
        return f"expert {name.removeprefix('expert-')}"
    prefix = {"soup": "soup", "morl": "MORL"}.get(kind, kind)
    return f"{prefix} " + "+".join(part.split("@")[0] for part in name.split("-", 1)[1].split("+"))


def plot_spider(
    scores: pd.DataFrame,
    rewards: Sequence[str],
    out: str | Path,
    *,
    starts: Sequence[str] = (),
    title: str = "",
    dpi: int = 150,
) -> None:
    """Spider maps (radar plots) of every reward, for tasks with N > 2 rewards.

    Each axis is rescaled over the models shown in the figure: its minimum at
    0.2, its maximum at 1 (the axis labels give the raw range), so that the
    shapes compare models rather than metric scales.
    """
    table = wide(scores)
    panels = spider_groups(table, rewards, starts)
    shown = pd.concat([rows for _, rows in panels])
    low, high = shown[list(rewards)].min(), shown[list(rewards)].max()
    span = (high - low).replace(0, 1.0)
    angles = np.linspace(0, 2 * np.pi, len(rewards), endpoint=False)
    closed = np.append(angles, angles[:1])
    sns.set_theme(style="white", context="notebook")
    fig, axs = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels), 5.4), subplot_kw={"projection": "polar"}, squeeze=False
    )
    for ax, (panel_title, rows) in zip(axs[0], panels):
        # Clockwise from the top, as the paper draws them.
        ax.set_theta_zero_location("N")
        ax.set_theta_direction(-1)
        colours = sns.color_palette("tab10", len(rows))
        for colour, (name, row) in zip(colours, rows.iterrows()):
            values = 0.2 + 0.8 * ((row[list(rewards)] - low) / span).to_numpy(float)
            style = "--" if row["kind"] in ("init", "morl") else "-"
            ax.plot(
                closed,
                np.append(values, values[:1]),
                style,
                color=colour,
                lw=2,
                label=_spider_label(str(name), row["kind"]),
            )
            ax.fill(closed, np.append(values, values[:1]), color=colour, alpha=0.06)
        ax.set_xticks(angles)
        ax.set_xticklabels([f"{r}\n[{low[r]:.3g}, {high[r]:.3g}]" for r in rewards], fontsize=8)
        ax.set_yticks([0.2, 0.6, 1.0])
        ax.set_yticklabels([])
        ax.set_ylim(0, 1.05)
        ax.set_title(panel_title, fontsize=10, pad=18)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    if title:
        fig.suptitle(f"{title}: spider maps (axis minimum → 0.2, maximum → 1 over the models shown)", fontsize=11)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def plot_advantage(advantage: Mapping, out: str | Path, *, title: str = "", dpi: int = 150) -> dict[str, list]:
    """The paper's Figure 8 from one entry of summary.json's ``advantage``; returns what it drew.

    Bars: E_μ̂[RS − MORL with M runs] for M = 1 … the MORL pool's size; the
    zero line is where MORL catches up with RS's two runs.
    """
    sizes, values = list(advantage["M"]), list(advantage["advantage"])
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 + 0.7 * len(sizes)), 3.8))
    colours = [PALETTE["soup"] if v >= 0 else PALETTE["morl"] for v in values]
    ax.bar(sizes, values, color=colours, width=0.6)
    for m, v in zip(sizes, values):
        ax.annotate(f"{v:+.3g}", (m, v), ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
    ax.axhline(0.0, color=PALETTE["line"], lw=1)
    ax.set_xticks(sizes)
    ax.set_xlabel("M, MORL runs (μ drawn from the pool, all subsets averaged)")
    a, b = advantage["rewards"]
    ax.set_ylabel(f"E_μ̂[R̂_μ̂(RS) − R̂_μ̂(MORL)]\nR̂_μ̂ = (1−μ̂)·{a} + μ̂·{b}")
    pool = ", ".join(advantage["morl_pool"])
    ax.set_title(f"{title}: RS (2 runs) vs MORL, λ and μ chosen on {advantage['selected_on']}".strip(": "), fontsize=10)
    fig.text(0.01, -0.02, f"MORL pool: {pool}; scores on {advantage['scored_on']}", fontsize=7, ha="left", va="top")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return {"M": sizes, "advantage": values}
