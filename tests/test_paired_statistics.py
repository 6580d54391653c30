"""Paired bootstrap intervals on synthetic scores with a known answer, and the summary's paired section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rewarded_soups import bootstrap
from rewarded_soups.paired import lmc_class


def correlated_models(n: int, gain: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two models on the same n inputs: a shared per-input difficulty (sd 1) plus small own noise (sd 0.1)."""
    difficulty = rng.normal(0, 1, n)
    return difficulty + rng.normal(0, 0.1, n), difficulty + gain + rng.normal(0, 0.1, n)


def test_paired_intervals_are_far_narrower_than_unpaired_when_models_are_correlated():
    rng = np.random.default_rng(0)
    base, better = correlated_models(300, 0.05, rng)
    paired = bootstrap.difference(better, [1.0], [base], seed=0)
    unpaired = bootstrap.unpaired_difference(better, [1.0], [base], seed=0)
    assert paired.estimate == pytest.approx(unpaired.estimate)
    assert paired.width < unpaired.width / 5
    # The gain of 0.05 is found by the paired interval, lost in the unpaired one.
    assert paired.sign() == "above" and unpaired.sign() == "undecided"


def test_paired_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    draws = 200
    for k in range(draws):
        base, better = correlated_models(100, 0.03, rng)
        interval = bootstrap.difference(better, [1.0], [base], seed=k)
        covered += interval.low <= 0.03 <= interval.high
    assert 0.90 <= covered / draws <= 0.99


def test_nan_samples_are_skipped_and_constants_give_a_point():
    values = np.array([1.0, np.nan, 3.0, np.nan, 2.0])
    assert bootstrap.mean_interval(values, seed=0).estimate == pytest.approx(2.0)
    constant = bootstrap.mean_interval(np.ones(10), seed=0)
    assert constant.low == constant.high == constant.estimate == 1.0


def test_a_statistic_of_every_models_means_is_resampled_jointly():
    """The difference of two models' means through paired_statistic equals the paired difference interval."""
    rng = np.random.default_rng(2)
    base, better = correlated_models(200, 0.05, rng)
    joint = bootstrap.paired_statistic([base[:, None], better[:, None]], lambda m: m[1, 0] - m[0, 0], seed=0)
    assert joint.sign() == "above"
    assert joint.width < bootstrap.unpaired_difference(better, [1.0], [base], seed=0).width / 5


def test_lmc_classes_from_intervals():
    above, below, zero = (bootstrap.Interval(0.1, 0.05, 0.2), bootstrap.Interval(-0.1, -0.2, -0.05),
                          bootstrap.Interval(0.0, -0.1, 0.1))  # fmt: skip
    assert lmc_class([above, above]) == "holds"
    assert lmc_class([above, below]) == "fails"
    assert lmc_class([above, zero]) == "undecided"


def test_summary_gives_paired_intervals_and_flags_an_expert_that_did_not_learn():
    """Two experts over one θ0: one gains on its reward, the other not at all; soups on the line."""
    from rewarded_soups.analysis import summarise

    rng = np.random.default_rng(3)
    n = 200
    difficulty = rng.normal(0, 1, (n, 2))
    noise = 0.05

    def model(shift):
        return difficulty + np.asarray(shift) + rng.normal(0, noise, (n, 2))

    models = {
        ("init", "init", ""): model([0, 0]),
        ("expert-a", "expert", "a@1+b@0"): model([0.3, 0.05]),  # better than expert-b on both
        ("expert-b", "expert", "a@0+b@1"): model([0.0, 0.0]),  # did not learn
        ("soup-a@0.5+b@0.5", "soup", "a@0.5+b@0.5"): model([0.15, -0.05]),
        ("morl-a@0.5+b@0.5", "morl", "a@0.5+b@0.5"): model([0.1, -0.02]),
    }
    rows, per_sample = [], []
    for (name, kind, weights), values in models.items():
        for j, reward in enumerate("ab"):
            for split in ("test", "validation"):
                column = values[:, j]
                rows.append([name, kind, weights, reward, split, column.mean(), column.std(ddof=1), n])
                per_sample.append(
                    pd.DataFrame({"model": name, "reward": reward, "split": split, "sample": range(n), "value": column})
                )
    scores = pd.DataFrame(rows, columns=["model", "kind", "weights", "reward", "split", "mean", "std", "n"])
    summary = summarise(
        scores,
        ["a", "b"],
        per_sample=pd.concat(per_sample),
        seed=0,
        pairs=[["a", "b"]],
        preferences=[{"a": 0.5, "b": 0.5}],
    )
    paired = summary["paired"]
    learned = {e["expert"]: e["learned"] for e in paired["experts"]}
    assert learned == {"expert-a": True, "expert-b": False}
    assert paired["trade_offs"][0]["trades_off"] is False
    lmc = paired["lmc"]
    assert lmc["median_width_ratio_paired_to_unpaired"] < 0.3
    assert set(paired["hypervolume"]) == {"rs", "morl", "rs_minus_morl"}
    gain = paired["experts"][0]["gain"]["a"]
    assert gain["low"] > 0.25 and gain["high"] < 0.35
    # Lemma 1's choice against MORL(μ̂) and λ = μ̂, and Figure 8's advantage per M, with paired intervals.
    (preference,) = paired["preferences"]
    assert {"selected_minus_morl", "selected_minus_at_preference"} <= set(preference)
    for key in ("selected_minus_morl", "selected_minus_at_preference"):
        interval = preference[key]
        assert interval["low"] <= interval["estimate"] <= interval["high"]
    (advantage,) = paired["advantage"]
    assert [a["M"] for a in advantage["by_M"]] == summary["advantage"][0]["M"]
    assert summary["pairs"][0]["paired"]["lmc"]["classes"]


def test_replicates_without_an_applicable_input_do_not_collapse_the_interval():
    """A reward that applies to few inputs (grounding's size classes): some resamples hold none of them; the
    interval comes from the others instead of collapsing to the point estimate (false certainty)."""
    values = np.full(60, np.nan)
    values[[3, 40]] = [0.0, 1.0]
    first, second = np.zeros((60, 1)), values[:, None]
    interval = bootstrap.paired_statistic([first, second], lambda m: m[1, 0] - m[0, 0], seed=0)
    assert interval.estimate == pytest.approx(0.5)
    assert interval.low == pytest.approx(0.0) and interval.high == pytest.approx(1.0)
    assert interval.sign() == "undecided"
