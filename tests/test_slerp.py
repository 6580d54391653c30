"""The slerp merge method: the formula on hand-made tensors, and through the engine and the config."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from rewarded_soups.merging import methods
from rewarded_soups.merging.engine import MergeSettings, merge
from rewarded_soups.merging.spec import MergeSpec


def slerp(tensors, weights):
    return methods.build("slerp").combine([t.clone() for t in tensors], weights)


def test_slerp_follows_the_great_circle():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])  # Ω = 90°
    for t in (0.25, 0.5, 0.8):
        want = math.sin((1 - t) * math.pi / 2) * a + math.sin(t * math.pi / 2) * b  # sin Ω = 1
        torch.testing.assert_close(slerp([a, b], [1 - t, t]), want)
    # Ω = 60° between two unit vectors: the midpoint is their normalised mean (norm 1, not the chord's √3/2).
    c, d = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.5, math.sqrt(3) / 2, 0.0])
    mid = slerp([c, d], [0.5, 0.5])
    torch.testing.assert_close(mid, (c + d) / (c + d).norm())
    assert abs(float(mid.norm()) - 1.0) < 1e-6 and float(((c + d) / 2).norm()) < 0.9


def test_slerp_of_colinear_or_zero_tensors_is_linear():
    a = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(slerp([a, 3 * a], [0.25, 0.75]), 0.25 * a + 0.75 * 3 * a)
    torch.testing.assert_close(slerp([a, torch.zeros(3)], [0.5, 0.5]), 0.5 * a)


def test_slerp_declares_two_experts_and_a_copy_at_the_vertices():
    cls = methods.get("slerp")
    assert cls.max_experts == 2 and not cls.needs_base and not cls.elementwise
    assert cls().returns_expert_at_vertex() and cls().exact_lora_scale() is None
    with pytest.raises(ValueError, match="two experts"):
        slerp([torch.ones(2)] * 3, [0.2, 0.3, 0.5])


def test_slerp_through_the_engine(tmp_path):
    dirs = []
    for i, seed in enumerate((0, 1, 2)):
        g = torch.Generator().manual_seed(seed)
        d = tmp_path / f"e{i}"
        d.mkdir()
        save_file({"w": torch.randn(3, 4, generator=g), "steps": torch.tensor(5)}, d / "m.safetensors")
        dirs.append(d)
    settings = MergeSettings("slerp")
    merge(MergeSpec(members=dirs[:2], weights=[0.3, 0.7], files=["m.safetensors"]), tmp_path / "soup", settings)
    experts = [load_file(d / "m.safetensors") for d in dirs[:2]]
    got = load_file(tmp_path / "soup" / "m.safetensors")
    want = slerp([experts[0]["w"].double(), experts[1]["w"].double()], [0.3, 0.7])  # float32 experts: float64 sums
    torch.testing.assert_close(got["w"], want.float())
    assert torch.equal(got["steps"], torch.tensor(5))
    merge(MergeSpec(members=dirs[:2], weights=[0.0, 1.0], files=["m.safetensors"]), tmp_path / "vertex", settings)
    assert torch.equal(load_file(tmp_path / "vertex" / "m.safetensors")["w"], experts[1]["w"])
    with pytest.raises(ValueError, match="at most 2 experts, got 3"):
        merge(MergeSpec(members=dirs, weights=[0.2, 0.3, 0.5], files=["m.safetensors"]), tmp_path / "x", settings)


def test_the_config_takes_slerp_for_pairs_and_refuses_soups_of_three():
    from rewarded_soups.config import ConfigError, validate_config

    def config(**merge):
        rewards = {name: {"kind": "bleu", "n": 1} for name in ("a", "b", "c")}
        task = {"kind": "captioning", "rewards": rewards, "morl": {"mu": []}, "merge": {"method": "slerp", **merge}}
        return {"tasks": {"cap": task}}

    # With three rewards the pair's grid comes with the uniform soup of all three experts.
    with pytest.raises(ConfigError, match=r"merge.method: merge method slerp combines at most 2 experts.*a@0\.3333"):
        validate_config(config(pairs=[["a", "b"]], grid_points=3))


def test_the_config_takes_slerp_for_two_rewards():
    from rewarded_soups.config import validate_config

    rewards = {name: {"kind": "bleu", "n": 1} for name in ("a", "b")}
    config = {"tasks": {"cap": {"kind": "captioning", "rewards": rewards, "merge": {"method": "slerp"}}}}
    assert validate_config(config)["tasks"]["cap"]["merge"]["slerp"] == {}
