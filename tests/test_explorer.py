"""The front explorer's data and page, without Snakemake or a browser (the browser test is in test_workflow.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rewarded_soups.explorer import display_name, page_data, render, sample_views
from rewarded_soups.samples import Samples


def _scores() -> pd.DataFrame:
    rows = []
    models = {
        "init": ("init", "", (0.1, 0.1)),
        "expert-a": ("expert", "a@1+b@0", (0.9, 0.2)),
        "expert-b": ("expert", "a@0+b@1", (0.2, 0.8)),
        "soup-a@0.5+b@0.5": ("soup", "a@0.5+b@0.5", (0.6, 0.6)),
        "morl-a@0.5+b@0.5": ("morl", "a@0.5+b@0.5", (0.5, 0.5)),
    }
    for split, shift in (("test", 0.0), ("validation", 0.01)):
        for name, (kind, weights, (va, vb)) in models.items():
            for reward, value in (("a", va), ("b", vb), ("m", 3.0)):
                rows.append([name, kind, weights, reward, split, value + shift, 0.1, 4])
    return pd.DataFrame(rows, columns=["model", "kind", "weights", "reward", "split", "mean", "std", "n"])


def _samples() -> dict[str, Samples]:
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    out = {}
    for k, name in enumerate(["init", "expert-a", "expert-b", "soup-a@0.5+b@0.5", "morl-a@0.5+b@0.5"]):
        records = [
            {
                "prompt": f"p{i}",
                "completion": f"{name} says {i}",
                "box": [0.1, 0.1, 0.2 + 0.1 * k, 0.5],
                "target": [0, 0, 1, 1],
            }
            for i in range(2)
        ]
        out[name] = Samples(records, {"images": images})
    out["expert-a"].records[1]["completion"] = out["init"].records[1]["completion"]  # agreeing on one input
    return out


def test_inputs_are_what_every_model_shares_on_every_input():
    views = sample_views(_samples())
    first = views["inputs"][0]
    assert first["fields"] == {"prompt": "p0"} and first["boxes"] == {"target": [0, 0, 1, 1]}
    assert first["image"].startswith("data:image/png;base64,"), "the same image for every model is the input's"
    # completion differs on one input and agrees on the other: an output on both.
    assert views["outputs"]["expert-a"][1]["fields"] == {"completion": "init says 1"}
    assert views["outputs"]["expert-b"][0]["boxes"] == {"box": [0.1, 0.1, 0.4, 0.5]}
    assert "image" not in views["outputs"]["init"][0]


def test_generated_images_are_each_models_output():
    samples = {
        m: Samples([{"prompt": "p"}], {"images": np.full((1, 8, 8, 3), k * 40, dtype=np.uint8)})
        for k, m in enumerate(["init", "expert-a"])
    }
    views = sample_views(samples)
    assert "image" not in views["inputs"][0]
    assert views["outputs"]["init"][0]["image"] != views["outputs"]["expert-a"][0]["image"]


def test_page_data_holds_the_scores_and_lemma_1_as_select_chooses():
    from rewarded_soups.selection import select

    scores = _scores()
    per_sample = pd.DataFrame(
        [[m, r, "test", i, 0.5 + i] for m in scores["model"].unique() for r in ("a", "b", "m") for i in range(2)],
        columns=["model", "reward", "split", "sample", "value"],
    )
    data = page_data("t", ["a", "b"], ["m"], [["a", "b"]], scores, per_sample, {"pairs": []}, _samples())
    assert data["scores"]["test"]["expert-a"] == {"a": 0.9, "b": 0.2, "m": 3.0}
    assert data["per_sample"]["init"]["a"] == [0.5, 1.5]
    for entry in data["selections"]["a-b"]:
        expected = select(scores, {"a": entry["mu"], "b": 1 - entry["mu"]}, ["a", "b"])["selected"]["model"]
        assert entry["selected"] == expected
    assert data["selections"]["a-b"][0]["selected"] == "expert-b"
    labels = {m["name"]: m["label"] for m in data["models"]}
    assert labels == {
        "init": "θ0",
        "expert-a": "expert a",
        "expert-b": "expert b",
        "soup-a@0.5+b@0.5": "soup a 0.5 · b 0.5",
        "morl-a@0.5+b@0.5": "MORL a 0.5 · b 0.5",
    }


def test_the_page_inlines_plotly_and_the_data_and_loads_nothing():
    data = {"task": "t</script><script>alert(1)", "x": [1.5, None]}
    html = render(data)
    assert "Plotly" in html and len(html) > 1_000_000, "plotly.js is inlined"
    assert "<script src" not in html and "<link" not in html
    assert "default-src 'none'" in html, "the page's policy forbids any request"
    payload = html[html.index("const D = ") + len("const D = ") :].split(";\n", 1)[0]
    assert json.loads(payload.replace("<\\/", "</")) == data
    assert "</script><script>alert(1)" not in html


def test_display_names():
    assert display_name("wise-a@0.5", "wise", {"a": 0.5}) == "WiSE a 0.5"
    assert display_name("ties-a@0.5+b@0.5", "ties", {"a": 0.5, "b": 0.5}) == "ties a 0.5 · b 0.5"


@pytest.mark.parametrize("value", [float("nan")])
def test_missing_per_sample_values_are_null(value):
    from rewarded_soups.explorer import _per_sample

    table = pd.DataFrame([["m", "r", "test", 0, value]], columns=["model", "reward", "split", "sample", "value"])
    assert _per_sample(table, 8) == {"m": {"r": [None]}}
