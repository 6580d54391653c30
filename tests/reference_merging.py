"""The tests' reference merge: θ = Σ λ_i θ_i over state dicts held in memory (the engine must agree with it).

Two ways to combine LoRA adapters are offered:

* ``paper`` (default): average the A and the B matrices separately, as the
  rewarded-soups code does. Cheap and keeps the rank, but (Σλ B_i)(Σλ A_i) is
  not Σ λ_i B_i A_i: the merged update has cross terms.
* ``exact``: concatenate the adapters along the rank, A = [λ_1 A_1; …] and
  B = [B_1 … B_N], so that B A = Σ λ_i B_i A_i exactly — the interpolation of
  the full fine-tuned weights — at N times the rank.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch

StateDict = Mapping[str, torch.Tensor]

LORA_MODES = ("paper", "exact")
_LORA_A = re.compile(r"\.lora_A(\.[^.]+)?\.weight$")
_LORA_B = re.compile(r"\.lora_B(\.[^.]+)?\.weight$")


def check_compatible(state_dicts: Sequence[StateDict]) -> None:
    """Raise a clear error if the state dicts do not share keys, shapes and dtypes."""
    if not state_dicts:
        raise ValueError("nothing to interpolate: no state dicts given")
    ref = state_dicts[0]
    for i, sd in enumerate(state_dicts[1:], start=1):
        if sd.keys() != ref.keys():
            only_ref = sorted(set(ref) - set(sd))[:5]
            only_sd = sorted(set(sd) - set(ref))[:5]
            raise ValueError(
                f"model 0 and model {i} have different parameters: only in 0: {only_ref}, only in {i}: {only_sd}"
            )
        for key, tensor in sd.items():
            if tensor.shape != ref[key].shape:
                raise ValueError(
                    f"parameter {key!r} has shape {tuple(ref[key].shape)} in model 0 but "
                    f"{tuple(tensor.shape)} in model {i}"
                )


def interpolate(state_dicts: Sequence[StateDict], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Σ λ_i θ_i, parameter by parameter, accumulated in float64.

    Weights are used as given (λ on the simplex for soups; other values for
    extrapolation). A weight vector with a single 1 returns that model's
    tensors exactly.
    """
    if len(state_dicts) != len(weights):
        raise ValueError(f"{len(state_dicts)} models but {len(weights)} weights")
    check_compatible(state_dicts)
    merged: dict[str, torch.Tensor] = {}
    for key, first in state_dicts[0].items():
        if not torch.is_floating_point(first):
            # Integer buffers (step counters, position ids) are not interpolable; they must agree.
            for i, sd in enumerate(state_dicts[1:], start=1):
                if not torch.equal(sd[key], first):
                    raise ValueError(f"non-float parameter {key!r} differs between model 0 and {i}")
            merged[key] = first.clone()
            continue
        nonzero = [(w, sd[key]) for w, sd in zip(weights, state_dicts) if w != 0]
        if len(nonzero) == 1 and nonzero[0][0] == 1:
            merged[key] = nonzero[0][1].clone()
            continue
        acc = torch.zeros(first.shape, dtype=torch.float64)
        for w, sd in zip(weights, state_dicts):
            if w != 0:
                acc += float(w) * sd[key].to(torch.float64)
        merged[key] = acc.to(first.dtype)
    return merged


def concat_lora(state_dicts: Sequence[StateDict], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Exact LoRA combination: B A = Σ λ_i B_i A_i, at rank Σ r_i.

    Non-LoRA tensors (e.g. a trained head saved with the adapter) are
    interpolated as usual. Adapters with zero weight are dropped.
    """
    if len(state_dicts) != len(weights):
        raise ValueError(f"{len(state_dicts)} adapters but {len(weights)} weights")
    check_compatible(state_dicts)
    kept = [(float(w), sd) for w, sd in zip(weights, state_dicts) if w != 0]
    merged: dict[str, torch.Tensor] = {}
    others = []
    for key in state_dicts[0]:
        if _LORA_A.search(key):
            # A is (r, in): stack along rows, scaled by λ_i.
            merged[key] = torch.cat([w * sd[key] for w, sd in kept], dim=0)
        elif _LORA_B.search(key):
            # B is (out, r): stack along columns.
            merged[key] = torch.cat([sd[key] for _, sd in kept], dim=1)
        else:
            others.append(key)
    if not any(_LORA_A.search(k) for k in state_dicts[0]):
        raise ValueError("exact LoRA merge needs adapter state dicts with lora_A/lora_B weights")
    if others:
        rest = interpolate([{k: sd[k] for k in others} for sd in state_dicts], weights)
        merged.update(rest)
    return merged


def merge(
    state_dicts: Sequence[StateDict], weights: Sequence[float], *, lora_mode: str = "paper"
) -> dict[str, torch.Tensor]:
    """Dispatch on ``lora_mode``; full (non-adapter) models always use :func:`interpolate`."""
    if lora_mode not in LORA_MODES:
        raise ValueError(f"unknown lora_mode {lora_mode!r}; choose one of {LORA_MODES}")
    if lora_mode == "exact":
        return concat_lora(state_dicts, weights)
    return interpolate(state_dicts, weights)
