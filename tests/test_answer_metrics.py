"""Rewards for short answers: caption metrics averaged over single references, and VQA accuracy."""

from __future__ import annotations

import math
import shutil

import jsonschema
import pytest

from rewarded_soups import services
from rewarded_soups.registry import build_reward, reward_spec
from rewarded_soups.rewards import caption_metrics as metrics
from rewarded_soups.rewards.vqa import normalise_answer, vqa_accuracy
from rewarded_soups.services import meteor as meteor_service

BETA2 = 1.2**2  # pycocoevalcap's ROUGE-L beta, squared


def rouge_f(precision: float, recall: float) -> float:
    return (1 + BETA2) * precision * recall / (recall + BETA2 * precision)


# --- reference_mode ----------------------------------------------------------------------------------------------


def test_bleu1_mean_over_references_by_hand():
    refs = [["red", "it is red"]]
    # vs "red": precision 1, no brevity penalty; vs "it is red": precision 1, brevity penalty exp(1 - 3/1).
    expected = (1.0 + math.exp(1 - 3)) / 2
    mean = build_reward({"kind": "bleu", "n": 1, "reference_mode": "mean"})(["red"], refs)
    assert mean == [pytest.approx(expected, rel=1e-6)]
    bleu1 = metrics.Bleu(1)
    assert mean == [(bleu1(["red"], [["red"]])[0] + bleu1(["red"], [["it is red"]])[0]) / 2]
    # "multi" (the default): the closest reference length, so no penalty.
    assert build_reward({"kind": "bleu", "n": 1})(["red"], refs) == [pytest.approx(1.0)]


def test_rouge_mean_over_references_by_hand():
    refs = [["red", "it is red"], ["top left", "upper left", "in the top left"]]
    candidates = ["red", "top left"]
    # "red" vs "it is red": LCS 1, precision 1, recall 1/3. "top left" vs "upper left": LCS 1 of 2 each way;
    # vs "in the top left": precision 1, recall 2/4.
    expected = [(1.0 + rouge_f(1, 1 / 3)) / 2, (1.0 + rouge_f(1 / 2, 1 / 2) + rouge_f(1, 1 / 2)) / 3]
    mean = build_reward({"kind": "rouge", "reference_mode": "mean"})(candidates, refs)
    assert mean == pytest.approx(expected, rel=1e-9)
    rouge = metrics.Rouge()
    assert mean == [sum(rouge([c], [[r]])[0] for r in rs) / len(rs) for c, rs in zip(candidates, refs)]
    # "multi" takes the best precision and the best recall over the references: an exact match gives 1.
    assert build_reward({"kind": "rouge"})(candidates, refs) == pytest.approx([1.0, 1.0])


def test_cider_mean_with_a_fixed_corpus_is_the_mean_of_single_reference_scores():
    corpus = [["red", "it is red"], ["blue", "bright blue"], ["top left", "upper left"], ["2", "two"], ["yes"]]
    refs = [["red", "red", "it is red"], ["two", "2"]]
    candidates = ["red", "2"]
    cider = metrics.CiderD(corpus)
    mean = build_reward({"kind": "cider", "reference_mode": "mean"}, context={"df_references": corpus})
    expected = [sum(cider([c], [[r]])[0] for r in rs) / len(rs) for c, rs in zip(candidates, refs)]
    assert mean(candidates, refs) == pytest.approx(expected, rel=1e-12)
    assert expected[0] > expected[1] > 0  # "2" matches one of two references, "red" two of three
    multi = build_reward({"kind": "cider"}, context={"df_references": corpus})
    assert multi(candidates, refs) == cider(candidates, refs)


def test_mean_over_references_calls_the_scorer_once():
    calls = []

    def scorer(candidates, references):
        calls.append((list(candidates), [list(r) for r in references]))
        return [float(len(r[0])) for r in references]  # the reference's length, to see what went where

    means = metrics.mean_over_references(scorer, ["a", "b"], [["x", "yyy"], ["zz", "zz", "wwww", "v"]])
    assert calls == [(["a", "a", "b", "b", "b", "b"], [["x"], ["yyy"], ["zz"], ["zz"], ["wwww"], ["v"]])]
    assert means == [2.0, 2.25]
    assert metrics.mean_over_references(scorer, [], []) == [] and len(calls) == 1
    with pytest.raises(ValueError, match="reference set 0"):
        metrics.mean_over_references(scorer, ["a"], ["a string, not a list"])
    with pytest.raises(ValueError, match="2 candidates but 1"):
        metrics.mean_over_references(scorer, ["a", "b"], [["x"]])
    assert metrics.with_reference_mode(scorer, "multi") is scorer
    with pytest.raises(ValueError, match="reference_mode"):
        metrics.with_reference_mode(scorer, "max")


def test_multi_is_the_default_and_unchanged():
    refs = [["a red circle on the left", "the red circle at the left"], ["a big blue square"]]
    candidates = ["a red circle", "a small blue square at the top"]
    for kind, direct in (("bleu", metrics.Bleu(4)), ("rouge", metrics.Rouge()), ("cider", metrics.CiderD())):
        assert reward_spec(kind).options()[1]["reference_mode"] == "multi"
        assert build_reward({"kind": kind})(candidates, refs) == direct(candidates, refs)
        assert build_reward({"kind": kind, "reference_mode": "multi"})(candidates, refs) == direct(candidates, refs)


@pytest.mark.parametrize("kind", ["bleu", "rouge", "meteor", "cider"])
def test_reference_mode_option_schema(kind):
    schema = reward_spec(kind).options_schema()
    assert schema["properties"]["reference_mode"] == {"enum": ["multi", "mean"]}
    jsonschema.validate({"kind": kind, "reference_mode": "mean"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": kind, "reference_mode": "max"}, schema)


def test_an_unknown_reference_mode_is_refused():
    with pytest.raises(ValueError, match="reference_mode"):
        build_reward({"kind": "rouge", "reference_mode": "max"})


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs java")
def test_meteor_mean_sends_one_request(tmp_path, monkeypatch):
    monkeypatch.setenv(services.SOCKET_DIR_ENV, str(tmp_path / "sockets"))
    monkeypatch.setenv(meteor_service.IDLE_ENV, "5")
    requests = []
    real_score = meteor_service.score

    def counting_score(gts, res):
        requests.append(len(res))
        return real_score(gts, res)

    monkeypatch.setattr(meteor_service, "score", counting_score)
    reward = build_reward({"kind": "meteor", "reference_mode": "mean"})
    try:
        exact, disjoint_half = reward(
            ["a red circle on the left", "a blue square"],
            [["a red circle on the left", "purple"], ["a blue square", "a blue square", "green", "green"]],
        )
    finally:
        reward.close()
        services.stop_all()
    assert requests == [6]  # every candidate × reference pair in one request
    # One exact match (METEOR about 1) and one disjoint reference (0): about a half.
    assert exact == pytest.approx(0.5, abs=0.01) and disjoint_half == pytest.approx(0.5, abs=0.01)


# --- VQA accuracy ------------------------------------------------------------------------------------------------


def test_vqa_accuracy_by_hand():
    three = ["red"] * 3 + ["blue"] * 7
    # Leave-one-out: the 3 subsets without a match keep 2 matches (2/3), the 7 others keep 3 (1).
    assert vqa_accuracy("red", three) == pytest.approx((3 * 2 / 3 + 7 * 1) / 10) == pytest.approx(0.9)
    assert vqa_accuracy("green", three) == 0.0
    assert vqa_accuracy("red", ["red"] * 4 + ["blue"] * 6) == 1.0
    assert vqa_accuracy("red", ["red"] + ["blue"] * 9) == pytest.approx(1 / 3 * 9 / 10)
    assert vqa_accuracy("two", ["2"] * 10) == 1.0
    assert vqa_accuracy("the red", ["red"] * 10) == 1.0
    # Fewer than two references: no subsets, just min(#matches / 3, 1).
    assert vqa_accuracy("red", ["red"]) == pytest.approx(1 / 3)
    assert vqa_accuracy("red", ["red", "red"]) == pytest.approx(1 / 3)  # each subset keeps one match
    with pytest.raises(ValueError, match="non-empty"):
        vqa_accuracy("red", [])


def test_answer_normalisation():
    assert normalise_answer("Two.") == "2"
    assert normalise_answer("  The   RED one ") == "red 1"
    assert normalise_answer("an apple") == "apple"
    assert normalise_answer("yes, there is!") == "yes there is"
    assert normalise_answer("red/blue") == "red blue"
    assert normalise_answer("it's red") == normalise_answer("its red") == "its red"
    assert normalise_answer("1,000") == "1000" and normalise_answer("2.5") == "2.5"
    assert normalise_answer("ten") == "10" and normalise_answer("eleven") == "eleven"


def test_vqa_accuracy_is_a_registered_metric():
    spec = reward_spec("vqa_accuracy")
    assert spec.metric and spec.modality == "caption" and spec.higher_is_better
    assert spec.options() == (set(), {})
    metric = build_reward({"kind": "vqa_accuracy"})
    refs = [["2"] * 3 + ["two"] + ["3"] * 6, ["yes"] * 10, ["top left"] * 2 + ["upper left"] * 8]
    assert metric(["two", "no", "top left"], refs) == pytest.approx([1.0, 0.0, (2 * 1 / 3 + 8 * 2 / 3) / 10])
    assert metric([], []) == []
    with pytest.raises(ValueError, match="2 candidates but 1"):
        metric(["a", "b"], [["a"]])
