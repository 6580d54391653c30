import pandas as pd
import pytest

from rewarded_soups.analysis import summarise
from rewarded_soups.grid import mix_name


def _scores(soup_mid: tuple[float, float], std: float = 0.0) -> pd.DataFrame:
    rows = []

    def add(model, kind, weights, a, b):
        for reward, value in (("a", a), ("b", b)):
            rows.append(
                {"model": model, "kind": kind, "weights": weights, "reward": reward, "mean": value, "std": std, "n": 16}
            )

    add("init", "init", "", 0.0, 0.0)
    add("expert-a", "expert", mix_name({"a": 1, "b": 0}), 1.0, 0.0)
    add("expert-b", "expert", mix_name({"a": 0, "b": 1}), 0.0, 1.0)
    add("soup-mid", "soup", mix_name({"a": 0.5, "b": 0.5}), *soup_mid)
    add("morl-mid", "morl", mix_name({"a": 0.5, "b": 0.5}), 0.4, 0.4)
    return pd.DataFrame(rows)


def test_summary_lmc_and_hypervolume_with_explicit_reference():
    summary = summarise(_scores((0.6, 0.6)), ["a", "b"], reference=[0.0, 0.0])
    assert summary["lmc"]["holds_fraction"] == 1.0
    assert summary["lmc"]["worst_margin"] == pytest.approx(0.1)
    # RS front (1,0), (0,1), (0.6,0.6) against (0,0): only the soup has area, 0.36.
    assert summary["hypervolume"]["rs"] == pytest.approx(0.36)
    assert summary["hypervolume"]["morl"] == pytest.approx(0.16)
    assert summary["hypervolume"]["reference"] == [0.0, 0.0]
    assert summary["models"]["experts"] == ["expert-a", "expert-b"]
    assert set(summary["pareto"]["rs_front"]) == {"expert-a", "expert-b", "soup-mid"}


def test_summary_detects_a_failed_lmc():
    summary = summarise(_scores((0.3, 0.6)), ["a", "b"], reference=[0.0, 0.0])
    assert summary["lmc"]["holds_fraction"] == 0.0
    assert summary["lmc"]["worst_margin"] == pytest.approx(-0.2)
    assert summary["lmc"]["worst_at"] == {"model": "soup-mid", "reward": "a"}


def test_summary_auto_reference_is_documented():
    summary = summarise(_scores((0.6, 0.6)), ["a", "b"])
    assert summary["hypervolume"]["reference"] == pytest.approx([-0.05, -0.05])
    assert "minimum" in summary["hypervolume"]["reference_rule"]


def test_summary_needs_one_expert_per_reward():
    scores = _scores((0.6, 0.6))
    scores = scores[scores["model"] != "expert-b"]
    with pytest.raises(ValueError, match="one expert per reward"):
        summarise(scores, ["a", "b"])


def test_without_validation_scores_nothing_is_selected():
    # Selecting on the reported (test) split would be optimistic: a table without validation rows selects nothing.
    summary = summarise(_scores((0.6, 0.6)), ["a", "b"], pairs=[["a", "b"]], preferences=[{"a": 0.5, "b": 0.5}])
    assert summary["preferences"] == [] and summary["advantage"] == []


def test_lmc_below_the_line_by_less_than_the_noise_is_within_noise():
    # std 0.4 over n=16: se 0.1 per model; margin se = sqrt(0.1² + 0.5²·0.1² + 0.5²·0.1²) = 0.1225.
    within = summarise(_scores((0.45, 0.6), std=0.4), ["a", "b"])["lmc"]
    assert within["holds_fraction"] == 0.0  # strictly below the line on a by 0.05
    assert within["holds_within_noise_fraction"] == 1.0 and within["classes"] == ["within noise"]
    point = within["points"][0]
    assert point["margins"]["a"] == pytest.approx(-0.05) and point["errors"]["a"] == pytest.approx(0.122474, rel=1e-4)
    # 0.25 below: more than 1.645 × 0.1225 = 0.2015, a significant failure.
    failed = summarise(_scores((0.25, 0.6), std=0.4), ["a", "b"])["lmc"]
    assert failed["classes"] == ["fails"] and failed["holds_within_noise_fraction"] == 0.0
    held = summarise(_scores((0.6, 0.6), std=0.4), ["a", "b"])["lmc"]
    assert held["classes"] == ["holds"] and held["holds_fraction"] == 1.0
    assert "one-sided test at 95%" in held["rule"]
