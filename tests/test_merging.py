import pytest
import torch
from reference_merging import concat_lora, interpolate
from reference_merging import merge as merge


def _sd(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "layer.weight": torch.randn(4, 3, generator=g),
        "layer.bias": torch.randn(4, generator=g),
        "steps": torch.tensor(7),
    }


def test_endpoints_reproduce_the_experts_exactly():
    a, b = _sd(0), _sd(1)
    for weights, expected in (((1.0, 0.0), a), ((0.0, 1.0), b)):
        merged = interpolate([a, b], weights)
        for key in a:
            assert torch.equal(merged[key], expected[key])


def test_midpoint_is_the_average():
    a, b = _sd(0), _sd(1)
    merged = interpolate([a, b], [0.5, 0.5])
    torch.testing.assert_close(merged["layer.weight"], (a["layer.weight"] + b["layer.weight"]) / 2)
    assert merged["layer.weight"].dtype == torch.float32
    assert torch.equal(merged["steps"], a["steps"])


def test_three_way_interpolation():
    sds = [_sd(i) for i in range(3)]
    w = [0.2, 0.3, 0.5]
    merged = interpolate(sds, w)
    expected = sum(wi * sd["layer.bias"] for wi, sd in zip(w, sds))
    torch.testing.assert_close(merged["layer.bias"], expected)


def test_key_mismatch_is_a_clear_error():
    a, b = _sd(0), _sd(1)
    b["extra.weight"] = b.pop("layer.bias")
    with pytest.raises(ValueError, match=r"different parameters.*layer.bias.*extra.weight"):
        interpolate([a, b], [0.5, 0.5])


def test_shape_mismatch_is_a_clear_error():
    a, b = _sd(0), _sd(1)
    b["layer.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"'layer.weight' has shape \(4, 3\) in model 0 but \(3, 3\)"):
        interpolate([a, b], [0.5, 0.5])


def test_weight_count_mismatch():
    with pytest.raises(ValueError, match="2 models but 3 weights"):
        interpolate([_sd(0), _sd(1)], [0.2, 0.3, 0.5])


def test_non_float_buffers_must_agree():
    a, b = _sd(0), _sd(1)
    b["steps"] = torch.tensor(8)
    with pytest.raises(ValueError, match="non-float parameter 'steps'"):
        interpolate([a, b], [0.5, 0.5])


def _adapter(seed: int, r: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "base_model.model.h.0.attn.c_attn.lora_A.weight": torch.randn(r, 5, generator=g),
        "base_model.model.h.0.attn.c_attn.lora_B.weight": torch.randn(6, r, generator=g),
    }


def _delta(sd: dict[str, torch.Tensor]) -> torch.Tensor:
    return sd["base_model.model.h.0.attn.c_attn.lora_B.weight"] @ sd["base_model.model.h.0.attn.c_attn.lora_A.weight"]


def test_exact_lora_merge_is_the_weighted_sum_of_updates():
    a, b = _adapter(0), _adapter(1)
    merged = concat_lora([a, b], [0.3, 0.7])
    assert merged["base_model.model.h.0.attn.c_attn.lora_A.weight"].shape == (4, 5)
    torch.testing.assert_close(_delta(merged), 0.3 * _delta(a) + 0.7 * _delta(b))


def test_paper_lora_merge_averages_a_and_b_separately():
    a, b = _adapter(0), _adapter(1)
    merged = merge([a, b], [0.5, 0.5], lora_mode="paper")
    # Averaging factors is not averaging updates: the cross terms remain.
    assert not torch.allclose(_delta(merged), 0.5 * _delta(a) + 0.5 * _delta(b))
    for k in a:
        torch.testing.assert_close(merged[k], (a[k] + b[k]) / 2)


def test_unknown_lora_mode():
    with pytest.raises(ValueError, match="lora_mode"):
        merge([_adapter(0)], [1.0], lora_mode="ties")
