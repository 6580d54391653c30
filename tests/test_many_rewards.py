"""N > 2 rewards: pair fronts, clockwise subsets, baselines, the summary and spider maps."""

import copy

import numpy as np
import pandas as pd
import pytest

from rewarded_soups import plan
from rewarded_soups.analysis import pair_summary, summarise, uniform_soup_comparison
from rewarded_soups.config import ConfigError, validate_config
from rewarded_soups.grid import mix_name
from rewarded_soups.plots import plot_front, plot_lambda_curves, plot_spider, spider_groups
from rewarded_soups.scores import wide

NAMES = ["bleu1", "bleu4", "rouge", "meteor", "cider"]


def _config(**task_overrides):
    task = {
        "kind": "captioning",
        "rewards": {
            "bleu1": {"kind": "bleu", "n": 1},
            "bleu4": {"kind": "bleu", "n": 4},
            "rouge": {"kind": "rouge"},
            "meteor": {"kind": "meteor"},
            "cider": {"kind": "cider"},
        },
        "morl": {"mu": [{"bleu1": 0.5, "rouge": 0.5}]},
        "merge": {"grid_points": 5, "pairs": [["bleu1", "rouge"]], "subsets_from": ["bleu1", "rouge"]},
        "baselines": {"ensemble": True, "wise": True, "grid_points": 3},
        "analysis": {"axes": ["bleu1", "rouge"]},
    }
    task.update(task_overrides)
    return validate_config({"tasks": {"captioning": task}})["tasks"]["captioning"]


def test_clockwise_subsets_wrap_around_in_reward_order():
    assert plan.clockwise_subsets(NAMES, "bleu1") == [NAMES[:m] for m in range(1, 6)]
    assert plan.clockwise_subsets(NAMES, "meteor")[:3] == [
        ["meteor"],
        ["meteor", "cider"],
        ["meteor", "cider", "bleu1"],
    ]
    assert all(len(s) == m for m, s in enumerate(plan.clockwise_subsets(NAMES, "rouge"), start=1))


def test_pair_soups_uniform_soup_subsets_and_baselines():
    task = _config()
    names = {m.name: m for m in plan.models(task)}
    kinds = [m.kind for m in names.values()]
    # Pair edge: λ = 0.75, 0.5, 0.25 between bleu1 and rouge, naming only the pair.
    for lam in (0.75, 0.5, 0.25):
        assert f"soup-bleu1@{lam:g}+rouge@{1 - lam:g}" in names
    assert "soup-bleu1@0.2+bleu4@0.2+rouge@0.2+meteor@0.2+cider@0.2" in names
    # Clockwise from bleu1 (M = 2, 3, 4) and from rouge; M = 1 are experts, M = 5 the uniform soup.
    assert "soup-bleu1@0.5+bleu4@0.5" in names and "soup-bleu1@0.25+bleu4@0.25+rouge@0.25+meteor@0.25" in names
    assert (
        "soup-rouge@0.5+meteor@0.5" in names
        and "soup-bleu1@0.3333+rouge@0.3333+meteor@0.3333+cider@0.3333" not in names
    )
    assert "soup-bleu1@0.25+rouge@0.25+meteor@0.25+cider@0.25" in names
    assert kinds.count("soup") == 3 + 1 + 3 + 3
    assert len(set(names)) == len(kinds)  # no duplicates
    assert [m.name for m in plan.models(task) if m.kind == "ensemble"] == ["ensemble-bleu1@0.5+rouge@0.5"]
    assert sorted(m.name for m in plan.models(task) if m.kind == "wise") == ["wise-bleu1@0.5", "wise-rouge@0.5"]
    assert names["morl-bleu1@0.5+rouge@0.5"].mix == {"bleu1": 0.5, "rouge": 0.5}


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"merge.pairs\[0\]"):
        _config(merge={"pairs": [["bleu1", "bleu9"]]})
    with pytest.raises(ConfigError, match="subsets_from"):
        _config(merge={"pairs": [["bleu1", "rouge"]], "subsets_from": ["spice"]})
    with pytest.raises(ConfigError, match="too many soups"):
        _config(merge={"grid_points": 11})
    with pytest.raises(ConfigError, match=r"morl.mu\[0\]"):
        _config(morl={"mu": [{"bleu1": 0.5, "spice": 0.5}]})
    text = {
        "kind": "text",
        "rewards": {"a": {"kind": "vader"}, "b": {"kind": "conciseness"}},
        "baselines": {"wise": True},
    }
    with pytest.raises(ConfigError, match="does not implement"):
        validate_config({"tasks": {"text": text}})


def _scores(task):
    """Synthetic scores: each expert best on its reward; soups average their members' scores."""
    rng = np.random.default_rng(0)
    base = dict(zip(NAMES, [0.5, 0.1, 0.3, 0.12, 0.4]))
    expert = {r: {s: base[s] + (0.1 if s == r else -0.02) for s in NAMES} for r in NAMES}
    rows = []
    for m in plan.models(task):
        if m.kind == "init":
            values = base
        elif m.kind == "expert":
            values = expert[next(r for r, w in m.mix.items() if w == 1)]
        elif m.kind in ("soup", "ensemble", "morl"):
            values = {s: sum(w * expert[r][s] for r, w in m.mix.items()) + 0.005 for s in NAMES}
        else:  # wise: toward θ0
            ((r, a),) = m.mix.items()
            values = {s: a * expert[r][s] + (1 - a) * base[s] for s in NAMES}
        for s in NAMES:
            rows.append(
                {"model": m.name, "kind": m.kind, "weights": m.weights, "reward": s, "mean": values[s]}
                | {"std": float(rng.uniform(0.01, 0.02)), "n": 100}
            )
    return pd.DataFrame(rows)


def test_pair_summary_uniform_soup_and_spider(tmp_path):
    task = _config()
    scores = _scores(task)
    table = wide(scores)
    pair = pair_summary(table, NAMES, ["bleu1", "rouge"])
    assert pair["lmc"]["n_points"] == 3 and pair["lmc"]["holds_fraction"] == 1.0  # +0.005 over the line
    assert set(pair["hypervolume"]) >= {"rs", "morl", "ensemble", "wise", "reference"}
    assert pair["hypervolume"]["rs"] > pair["hypervolume"]["wise"] > 0
    uniform = uniform_soup_comparison(table, NAMES)
    # Each expert adds 0.1 on its reward and loses 0.02 on the 4 others: the average gains 0.02 + 0.005.
    assert uniform["count"] == "5 of 5" and uniform["beats_init_on"] == NAMES
    summary = summarise(scores, NAMES, pairs=[["bleu1", "rouge"]])
    assert summary["pairs"][0]["rewards"] == ["bleu1", "rouge"] and summary["uniform_soup"]["count"] == "5 of 5"
    assert len(summary["models"]["baselines"]) == 3

    panels = spider_groups(table, NAMES, ["bleu1", "rouge"])
    assert [len(rows) for _, rows in panels] == [1 + 5 + 1 + 1, 5, 5]
    assert list(panels[1][1].index) == [
        "expert-bleu1",
        "soup-bleu1@0.5+bleu4@0.5",
        "soup-bleu1@0.3333+bleu4@0.3333+rouge@0.3333",
        "soup-bleu1@0.25+bleu4@0.25+rouge@0.25+meteor@0.25",
        "soup-bleu1@0.2+bleu4@0.2+rouge@0.2+meteor@0.2+cider@0.2",
    ]
    plot_spider(scores, NAMES, tmp_path / "spider.png", starts=["bleu1", "rouge"], title="t")
    assert (tmp_path / "spider.png").read_bytes()[:4] == b"\x89PNG"


def test_each_pair_draws_its_own_curve_and_only_its_morl(tmp_path):
    """The figures of a pair show that pair's soups and the MORL runs of that pair, on the right axes."""
    task = _config()
    scores = _scores(task)
    table = wide(scores)
    morl = table.loc["morl-bleu1@0.5+rouge@0.5"]
    drawn = plot_front(scores, NAMES, ["bleu1", "rouge"], tmp_path / "front.png", title="t")
    assert drawn["MORL"] == [pytest.approx((morl["bleu1"], morl["rouge"]))]
    rs = drawn["rewarded soups (RS), λ = weight of bleu1"]
    assert len(rs) == 5  # grid_points 5 between the pair's experts
    assert rs[-1] == pytest.approx((table.loc["expert-bleu1", "bleu1"], table.loc["expert-bleu1", "rouge"]))
    curves = plot_lambda_curves(scores, NAMES, {}, tmp_path / "curves.png", pair=["bleu1", "rouge"])
    assert list(curves) == NAMES
    rouge_rs = curves["rouge"]["RS (±1 s.e.)"]
    assert [x for x, _ in rouge_rs] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert rouge_rs[0][1] == pytest.approx(table.loc["expert-rouge", "rouge"])  # λ = 0 is rouge's expert
    assert curves["rouge"]["MORL (at μ)"] == [pytest.approx((0.5, morl["rouge"]))]
    # On another pair the bleu1–rouge MORL run is no point at all (it was drawn on the wrong edge once).
    other = plot_lambda_curves(scores, NAMES, {}, tmp_path / "other.png", pair=["bleu1", "bleu4"])
    assert "MORL (at μ)" not in other["bleu1"]


def test_two_reward_tasks_keep_the_full_lattice():
    two = copy.deepcopy(_config())
    two["rewards"] = {"a": {}, "b": {}}
    two["merge"] = {"grid_points": 11}
    two["baselines"] = {}
    mixes = plan.soup_mixes(two)
    assert [mix_name(m) for m in mixes][:2] == ["a@0.9+b@0.1", "a@0.8+b@0.2"] and len(mixes) == 9
