"""The streaming merge engine: exactness against in-memory interpolation, errors, atomicity, methods, recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reference_merging import concat_lora, interpolate
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from rewarded_soups.merging import methods as m
from rewarded_soups.merging.checkpoint import Checkpoint, TensorInfo
from rewarded_soups.merging.engine import MergeSettings, materialize, merge
from rewarded_soups.merging.spec import MergeSpec
from rewarded_soups.merging.writer import SafetensorsWriter


def llama(path: Path, seed: int, dtype=torch.float32, shard: str | None = "10KB") -> Path:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    model = LlamaForCausalLM(config).to(dtype)
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(path, **kwargs)
    return path


def state(directory: Path) -> dict[str, torch.Tensor]:
    index = directory / "model.safetensors.index.json"
    if index.exists():
        files = set(json.loads(index.read_text())["weight_map"].values())
        return {k: v for f in files for k, v in load_file(directory / f).items()}
    return load_file(directory / "model.safetensors")


def spec(members, weights, **kw) -> MergeSpec:
    return MergeSpec(members=members, weights=weights, files=["model.safetensors"], copy=["config.json"], **kw)


@pytest.fixture(scope="module")
def experts(tmp_path_factory):
    root = tmp_path_factory.mktemp("llamas")
    return [llama(root / f"e{i}", seed=i) for i in range(3)], llama(root / "base", seed=9)


def test_writer_round_trips_every_dtype_and_odd_shapes(tmp_path):
    tensors = {
        "f32": torch.randn(3, 5),
        "bf16": torch.randn(7).to(torch.bfloat16),
        "f16": torch.randn(2, 2, 2).half(),
        "i64": torch.arange(6).reshape(2, 3),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 4),
        "flag": torch.tensor([True, False, True]),
    }
    entries = [(k, TensorInfo(v.dtype, tuple(v.shape))) for k, v in tensors.items()]
    writer = SafetensorsWriter(tmp_path / "x.safetensors", entries, {"format": "pt"})
    for k, v in tensors.items():
        writer.write(k, v)
    writer.close()
    with safe_open(tmp_path / "x.safetensors", framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
        for k, v in tensors.items():
            assert torch.equal(f.get_tensor(k), v) and f.get_tensor(k).dtype == v.dtype


def test_streaming_equals_in_memory_interpolation_bit_for_bit(experts, tmp_path):
    members, _ = experts
    assert (members[0] / "model.safetensors.index.json").exists()  # sharded, as save_pretrained writes big models
    weights = [0.2, 0.3, 0.5]
    merge(spec(members, weights), tmp_path / "soup")
    expected = interpolate([state(d) for d in members], weights)
    got = state(tmp_path / "soup")
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    # The same shards and an index, and transformers loads it.
    index = json.loads((tmp_path / "soup" / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == json.loads((members[0] / "model.safetensors.index.json").read_text())["weight_map"]
    model = LlamaForCausalLM.from_pretrained(tmp_path / "soup")
    assert torch.equal(model.state_dict()["lm_head.weight"], expected["lm_head.weight"])
    assert not list(tmp_path.glob(".soup.partial-*"))


def test_bf16_accumulates_in_float32_within_rounding(tmp_path):
    members = [llama(tmp_path / f"b{i}", seed=i, dtype=torch.bfloat16, shard=None) for i in range(2)]
    merge(spec(members, [0.3, 0.7]), tmp_path / "soup")
    got = load_file(tmp_path / "soup" / "model.safetensors")
    reference = interpolate([load_file(d / "model.safetensors") for d in members], [0.3, 0.7])
    for k, v in got.items():
        assert v.dtype == torch.bfloat16
        torch.testing.assert_close(v.float(), reference[k].float(), rtol=2**-7, atol=1e-6)


def test_bf16_soups_of_two_experts_are_one_rounding_step_from_the_float32_sum(tmp_path):
    """16-bit experts go through torch.lerp (float32 inside, one rounding): at most one bf16 step from rounding the
    float32 sum Σ λ_i θ_i, never more."""
    members = [llama(tmp_path / f"b{i}", seed=i, dtype=torch.bfloat16, shard=None) for i in range(2)]
    merge(spec(members, [0.3, 0.7]), tmp_path / "soup")
    got = load_file(tmp_path / "soup" / "model.safetensors")
    experts = [load_file(d / "model.safetensors") for d in members]
    steps = []
    for name, value in got.items():
        if not value.is_floating_point():
            continue
        rounded = (experts[0][name].float() * 0.3 + experts[1][name].float() * 0.7).to(torch.bfloat16)
        steps.append((value.view(torch.int16).int() - rounded.view(torch.int16).int()).abs().max().item())
    assert max(steps) <= 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_single_one_returns_the_expert_exactly(tmp_path, dtype):
    members = [llama(tmp_path / f"x{i}", seed=i, dtype=dtype, shard=None) for i in range(2)]
    for weights, chosen in (([1.0, 0.0], 0), ([0.0, 1.0], 1)):
        out = tmp_path / f"soup{chosen}"
        merge(spec(members, weights), out)
        got, want = load_file(out / "model.safetensors"), load_file(members[chosen] / "model.safetensors")
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_mismatches_name_the_tensor(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    for d in (a, b):
        d.mkdir()
    save_file({"w": torch.zeros(2, 3), "v": torch.zeros(2)}, a / "model.safetensors")
    save_file({"w": torch.zeros(3, 3), "v": torch.zeros(2)}, b / "model.safetensors")
    s = MergeSpec(members=[a, b], weights=[0.5, 0.5], files=["model.safetensors"])
    with pytest.raises(ValueError, match=r"tensor 'w' has shape \(2, 3\) in .*a/model.safetensors but \(3, 3\)"):
        merge(s, tmp_path / "out")
    save_file({"w": torch.zeros(2, 3, dtype=torch.float16), "v": torch.zeros(2)}, b / "model.safetensors")
    with pytest.raises(ValueError, match=r"tensor 'w' has dtype torch.float32 .* but torch.float16"):
        merge(s, tmp_path / "out")
    save_file({"w": torch.zeros(2, 3), "u": torch.zeros(2)}, b / "model.safetensors")
    with pytest.raises(ValueError, match=r"tensor 'u' is in expert 1 .* but not in .*a/model.safetensors"):
        merge(s, tmp_path / "out")
    (b / "model.safetensors").write_bytes(b"\x10" + b"garbage" * 10)
    with pytest.raises(ValueError, match=r"cannot read checkpoint .*b/model.safetensors"):
        merge(s, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


def crash_at_combine(monkeypatch, n: int) -> None:
    """Make the linear method's n-th combination (float32 or 16-bit kernel) raise "simulated crash"."""
    calls = {"n": 0}
    linear = m.get("linear")
    original, original_rounded = linear.combine, linear.combine_rounded_once

    def count() -> None:
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError("simulated crash")

    def failing(self, tensors, weights, base=None, **kw):
        count()
        return original(self, tensors, weights, base, **kw)

    def failing_rounded(self, tensors, weights):
        count()
        return original_rounded(self, tensors, weights)

    monkeypatch.setattr(linear, "combine", failing)
    monkeypatch.setattr(linear, "combine_rounded_once", failing_rounded)


def test_a_crash_mid_merge_leaves_no_complete_looking_output(experts, tmp_path, monkeypatch):
    members, _ = experts
    crash_at_combine(monkeypatch, 5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        merge(spec(members[:2], [0.5, 0.5]), tmp_path / "soup")
    assert not (tmp_path / "soup").exists()
    assert not list(tmp_path.iterdir())  # the partial directory is gone too


def test_recipe_store_builds_the_same_soup_in_memory_and_refuses_changed_experts(experts, tmp_path):
    members, _ = experts
    merge(spec(members[:2], [0.4, 0.6]), tmp_path / "full")
    merge(spec(members[:2], [0.4, 0.6]), tmp_path / "recipe", store="recipe")
    assert [p.name for p in (tmp_path / "recipe").iterdir()] == ["recipe.json"]
    built = materialize(tmp_path / "recipe")
    assert built.template == members[0].resolve()
    full = state(tmp_path / "full")
    assert all(torch.equal(built.tensors["model.safetensors"][k], full[k]) for k in full)
    assert built.config("config.json")["model_type"] == "llama"


def test_a_recipe_is_built_on_the_job_device_with_no_pass_through_the_cpu(experts, tmp_path):
    """A device of its own (meta: shapes and dtypes, no storage) stands in for a GPU: every tensor of the soup is
    made there, so the arithmetic ran there; on the CPU it equals the full soup bit for bit (test above)."""
    members, _ = experts
    merge(spec(members[:2], [0.4, 0.6]), tmp_path / "recipe", store="recipe")
    merge(spec(members[:2], [0.4, 0.6]), tmp_path / "full")
    built = materialize(tmp_path / "recipe", device="meta")
    full = state(tmp_path / "full")
    tensors = built.tensors["model.safetensors"]
    assert tensors.keys() == full.keys()
    for name, tensor in tensors.items():
        assert tensor.device.type == "meta" and tensor.shape == full[name].shape and tensor.dtype == full[name].dtype


def test_recipe_refuses_an_expert_that_changed(tmp_path):
    members = [llama(tmp_path / f"r{i}", seed=i, shard=None) for i in range(2)]
    merge(spec(members, [0.5, 0.5]), tmp_path / "recipe", store="recipe")
    (members[1] / "config.json").write_text((members[1] / "config.json").read_text() + " ")
    with pytest.raises(RuntimeError, match="changed or vanished since the recipe was written"):
        materialize(tmp_path / "recipe")


def test_kept_tensors_are_copied_and_must_agree(tmp_path):
    dirs = []
    for i in range(2):
        d = tmp_path / f"p{i}"
        d.mkdir()
        save_file(
            {"policy/w": torch.full((2,), float(i)), "normalizer/mean": torch.tensor([0.1, 0.7])}, d / "p.safetensors"
        )
        dirs.append(d)
    s = MergeSpec(members=dirs, weights=[0.3, 0.7], files=["p.safetensors"], keep=r"^normalizer/")
    merge(s, tmp_path / "soup")
    out = load_file(tmp_path / "soup" / "p.safetensors")
    assert torch.equal(out["normalizer/mean"], torch.tensor([0.1, 0.7]))
    torch.testing.assert_close(out["policy/w"], torch.full((2,), 0.7))
    save_file({"policy/w": torch.ones(2), "normalizer/mean": torch.tensor([0.2, 0.7])}, dirs[1] / "p.safetensors")
    with pytest.raises(ValueError, match="'normalizer/mean' must be the same in every expert"):
        merge(s, tmp_path / "soup2")


def test_exact_lora_streaming_equals_concatenation(tmp_path):
    dirs, sds = [], []
    for i in range(2):
        g = torch.Generator().manual_seed(i)
        sd = {
            "base_model.model.l.lora_A.weight": torch.randn(2, 5, generator=g),
            "base_model.model.l.lora_B.weight": torch.randn(4, 2, generator=g),
        }
        d = tmp_path / f"a{i}"
        d.mkdir()
        save_file(sd, d / "adapter_model.safetensors")
        dirs.append(d)
        sds.append(sd)
    s = MergeSpec(members=dirs, weights=[0.25, 0.75], files=["adapter_model.safetensors"], lora="exact")
    merge(s, tmp_path / "soup")
    got = load_file(tmp_path / "soup" / "adapter_model.safetensors")
    want = concat_lora(sds, [0.25, 0.75])
    assert all(torch.equal(got[k], want[k]) for k in want)


# Methods on hand-checked tensors.
def combine(method: str, tensors, weights, base=None, *, fishers=None, name="", **options) -> torch.Tensor:
    """One tensor of a soup with the registered method ``method`` (the engine's call, inputs copied)."""
    copies = [t.clone() for t in tensors]
    return m.build(method, options).combine(copies, weights, base, name=name, fishers=fishers)


T1, T2, BASE = (
    torch.tensor([1.0, -2.0, 3.0, 0.5]),
    torch.tensor([3.0, 2.0, -1.0, 0.5]),
    torch.tensor([1.0, 0.0, 1.0, 0.0]),
)


def test_linear_and_task_arithmetic_by_hand():
    assert torch.equal(combine("linear", [T1, T2], [0.25, 0.75]), torch.tensor([2.5, 1.0, 0.0, 0.5]))
    # θ0 + Σ λ_i (θ_i − θ0) with λ on the simplex is the linear soup ...
    torch.testing.assert_close(
        combine("task_arithmetic", [T1, T2], [0.25, 0.75], BASE), combine("linear", [T1, T2], [0.25, 0.75])
    )
    # ... and extrapolates outside it (λ = 1.5, −0.5), or scales the task vectors.
    torch.testing.assert_close(combine("task_arithmetic", [T1, T2], [1.5, -0.5], BASE), 1.5 * T1 - 0.5 * T2)
    torch.testing.assert_close(
        combine("task_arithmetic", [T1, T2], [0.5, 0.5], BASE, scale=2.0), BASE + (T1 - BASE) + (T2 - BASE)
    )


def test_ties_by_hand():
    # Task vectors τ1 = [0, -2, 2, 0.5], τ2 = [2, 2, -2, 0.5]; density 0.5 keeps each one's two largest.
    # τ1 -> [0, -2, 2, 0], τ2 -> [2, 2, -2, 0] (ties broken by topk order).
    merged = combine("ties", [T1, T2], [0.5, 0.5], BASE, density=0.5)
    from peft.utils.merge_utils import prune

    tau1 = prune(T1 - BASE, 0.5, method="magnitude")
    tau2 = prune(T2 - BASE, 0.5, method="magnitude")
    # Entry 0: only τ2 (+2) -> 2. Entry 1: signs disagree, λ-weighted sum 0 -> positive wins -> τ2's 2.
    # Entry 2: τ1 +2 vs τ2 −2 -> sum 0 -> positive -> τ1's 2.
    expected = torch.zeros(4)
    for i in range(4):
        votes = [(0.5, t[i].item()) for t in (tau1, tau2) if t[i] != 0]
        total = sum(w * v for w, v in votes)
        sign = 1.0 if total >= 0 else -1.0
        agree = [(w, v) for w, v in votes if v * sign > 0]
        expected[i] = sum(w * v for w, v in agree) / sum(w for w, _ in agree) if agree else 0.0
    torch.testing.assert_close(merged, BASE + expected)
    # An expert alone comes back pruned to its largest entries (TIES trims task vectors by design).
    torch.testing.assert_close(combine("ties", [T1, T2], [1.0, 0.0], BASE, density=0.5), BASE + tau1)


def test_large_tensors_merge_in_blocks_with_the_same_result(tmp_path, monkeypatch):
    """Blocks of rows bound the memory; the soup is the same as merging whole tensors."""
    from rewarded_soups.merging import engine

    members = [llama(tmp_path / f"k{i}", seed=i, shard=None) for i in range(2)]
    merge(spec(members, [0.3, 0.7]), tmp_path / "whole")
    monkeypatch.setattr(engine, "BLOCK_ELEMENTS", 100)  # every matrix in several blocks
    merge(spec(members, [0.3, 0.7]), tmp_path / "blocks")
    merge(spec(members, [1.0, 0.0]), tmp_path / "copy")
    whole, blocks = (
        load_file(tmp_path / "whole" / "model.safetensors"),
        load_file(tmp_path / "blocks" / "model.safetensors"),
    )
    assert all(torch.equal(whole[k], blocks[k]) for k in whole)
    original, copied = load_file(members[0] / "model.safetensors"), load_file(tmp_path / "copy" / "model.safetensors")
    assert all(torch.equal(original[k], copied[k]) for k in original)


def test_dare_is_seeded_per_tensor_and_unbiased():
    base = torch.zeros(20000)
    a, b = torch.ones(20000), 3 * torch.ones(20000)
    one = combine("dare", [a, b], [0.5, 0.5], base, density=0.5, seed=0, name="w")
    again = combine("dare", [a, b], [0.5, 0.5], base, density=0.5, seed=0, name="w")
    other = combine("dare", [a, b], [0.5, 0.5], base, density=0.5, seed=0, name="v")
    assert torch.equal(one, again) and not torch.equal(one, other)
    assert set(one.unique().tolist()) <= {0.0, 1.0, 3.0, 4.0}  # dropped entries, rescaled by 1/density
    assert abs(one.mean().item() - 2.0) < 0.05
    torch.testing.assert_close(combine("dare", [a, b], [0.5, 0.5], base, density=1.0, name="w"), 2 * torch.ones(20000))


def test_fisher_weighting_by_hand():
    f1, f2 = torch.tensor([1.0, 0.0, 3.0, 1.0]), torch.tensor([1.0, 2.0, 1.0, 0.0])
    merged = combine("fisher", [T1, T2], [0.5, 0.5], fishers=[f1, f2], fisher_floor=0.0 + 1e-12)
    # Entry 0: equal Fisher -> mean 2. Entry 1: only expert 2 informative -> 2. Entry 2: (3*3 + 1*(-1))/4 = 2.
    torch.testing.assert_close(merged[:3], torch.tensor([2.0, 2.0, 2.0]))
    # Where no expert has Fisher mass the floor makes it the λ-weighted mean.
    floored = combine("fisher", [T1, T2], [0.25, 0.75], fishers=[torch.zeros(4)] * 2)
    torch.testing.assert_close(floored, combine("linear", [T1, T2], [0.25, 0.75]))


def test_methods_run_through_the_engine_with_a_base(experts, tmp_path):
    members, base = experts
    for method, options in (
        ("task_arithmetic", {"scale": 1.0}),
        ("ties", {"density": 0.3}),
        ("dare", {"density": 0.5}),
    ):
        out = tmp_path / method
        merge(spec(members[:2], [0.5, 0.5], base=base), out, MergeSettings(method, options))
        LlamaForCausalLM.from_pretrained(out)
    with pytest.raises(ValueError, match="needs θ0"):
        merge(spec(members[:2], [0.5, 0.5]), tmp_path / "nobase", MergeSettings("ties", {"density": 0.3}))


def test_checkpoint_reads_lazily_in_file_order(experts):
    members, _ = experts
    with Checkpoint(members[0] / "model.safetensors.index.json") as ckpt:
        assert ckpt.sharded and len(set(ckpt.weight_map.values())) > 1
        assert ckpt.info("lm_head.weight") == TensorInfo(torch.float32, (64, 16))


def test_every_method_gives_the_outputs_it_gave_before_methods_became_classes():
    """Pinned, bit for bit: the values the functions of the earlier methods module computed (float.hex)."""
    tensors = [
        torch.tensor([1.0, -2.0, 3.0, 0.5, 0.25, -1.5]),
        torch.tensor([3.0, 2.0, -1.0, 0.5, -0.75, 2.5]),
        torch.tensor([0.5, 0.0, 2.0, -1.0, 1.0, 1.0]),
    ]
    base = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.5, 0.5])
    fishers = [
        torch.tensor([1.0, 0.0, 3.0, 1.0, 0.5, 2.0]),
        torch.tensor([1.0, 2.0, 1.0, 0.0, 0.5, 1.0]),
        torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
    ]
    weights = [0.2, 0.3, 0.5]
    pinned = {
        ("linear", ()): "0x1.59999ap+0 0x1.99999cp-3 0x1.4ccccc0p+0 -0x1p-2 0x1.4ccccc0p-2 0x1.e66666p-1",
        ("task_arithmetic", (("scale", 1.5),)): (
            "0x1.866668p+0 0x1.333334p-2 0x1.733334p+0 -0x1.8p-2 0x1.e66664p-3 0x1.2ccccc0p+0"
        ),
        ("ties", (("density", 0.5),)): "0x1.8p+1 0x1p+1 0x1.249248p+1 -0x1p+0 0x1p-1 0x1.9p+0",
        ("ties", (("density", 0.5), ("majority_sign_method", "frequency"))): (
            "0x1.8p+1 0x1p+1 0x1.249248p+1 -0x1p+0 0x1p-1 0x1.9p+0"
        ),
        ("dare", (("density", 0.5), ("seed", 3))): (
            "0x1.19999ap+1 0x1.99999cp-2 0x1.666666p+1 0x1p-1 0x1.99999ap-2 0x1.b33334p+0"
        ),
        ("fisher", (("fisher_floor", 1e-6),)): (
            "0x1.05d16ap+1 0x1.b6db4cp+0 0x1.b6db68p+0 -0x1.000002p-2 0x1.4ccccc0p-2 0x1.ccccf2p-2"
        ),
    }
    for (method, options), expected in pinned.items():
        got = combine(
            method,
            tensors,
            weights,
            base if m.get(method).needs_base else None,
            fishers=[f.clone() for f in fishers] if m.get(method).needs_fisher else None,
            name="w",
            **dict(options),
        )
        assert got.tolist() == [float.fromhex(v) for v in expected.split()], method
