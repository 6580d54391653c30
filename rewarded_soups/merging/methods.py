"""Merge methods, tensor by tensor: how the experts' tensors and weights λ become the soup's tensor.

Every method gets the experts' tensors θ_i (in the accumulation dtype), their
weights λ_i and, for methods on task vectors τ_i = θ_i − θ0, θ0's tensor (None
for LoRA adapters, whose tensors already are updates of θ0).

* ``linear`` — Σ λ_i θ_i, the rewarded soup.
* ``task_arithmetic`` — θ0 + s · Σ λ_i τ_i (Ilharco et al. 2023); with λ
  outside the simplex it extrapolates (the paper's Figure 13g).
* ``ties`` — TIES-merging (Yadav et al. 2023) with peft's magnitude pruning and
  sign election: each τ_i keeps its ``density`` largest entries, each entry
  takes the sign of Σ λ_i τ_i, and the experts that agree with it are averaged
  with weights λ_i (normalised by the agreeing weights, mergekit's default), so
  that λ still interpolates between the pruned experts.
* ``dare`` — DARE (Yu et al. 2024) through peft's ``dare_linear``: τ_i keeps a
  random ``density`` share of its entries, rescaled by 1/density, then Σ λ_i τ_i.
  The random masks are seeded per tensor name, so every λ uses the same masks.
* ``fisher`` — Fisher-weighted averaging (Matena & Raffel 2022), the direction
  of the paper's Appendix C.2.2: Σ λ_i F_i θ_i / Σ λ_i F_i with each expert's
  diagonal Fisher F_i (floored at ``fisher_floor``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# torch only where a method runs: the workflow reads this catalogue (names,
# options) while it builds the DAG, and importing torch costs seconds there.
if TYPE_CHECKING:
    import torch

Combine = Callable[..., "torch.Tensor"]


@dataclass(frozen=True)
class Method:
    name: str
    combine: Combine
    uses_base: bool  # reads θ0 (task vectors)
    uses_fisher: bool = False
    options: tuple[str, ...] = ()
    # Entry by entry: a tensor can be merged in blocks of rows (TIES ranks whole tensors, DARE draws whole masks).
    elementwise: bool = False


def _weighted_sum(tensors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    # Multiply, then add (not add_ with alpha, which may fuse): the rounding of Σ λ_i θ_i as written.
    acc = tensors[0] * float(weights[0])
    for tensor, weight in zip(tensors[1:], weights[1:]):
        acc += tensor * float(weight)
    return acc


def weighted_sum_(tensors: list[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """:func:`_weighted_sum` in place, consuming ``tensors`` (same rounding, a third of the memory)."""
    acc = tensors[0].mul_(float(weights[0]))
    for i in range(1, len(tensors)):
        acc += tensors[i].mul_(float(weights[i]))
        tensors[i] = None  # type: ignore[call-overload]
    return acc


def linear(tensors, weights, base=None, *, inplace: bool = False, **_: Any) -> torch.Tensor:
    return weighted_sum_(tensors, weights) if inplace else _weighted_sum(tensors, weights)


def _task_vectors(tensors, base):
    return list(tensors) if base is None else [t - base for t in tensors]


def _rebase(update: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
    return update if base is None else update.add_(base)


def task_arithmetic(tensors, weights, base=None, *, scale: float = 1.0, **_: Any) -> torch.Tensor:
    update = _weighted_sum(_task_vectors(tensors, base), weights)
    return _rebase(update.mul_(scale) if scale != 1.0 else update, base)


def ties(
    tensors, weights, base=None, *, density: float = 0.2, majority_sign_method: str = "total", **_: Any
) -> torch.Tensor:
    import torch
    from peft.utils.merge_utils import calculate_majority_sign_mask, prune

    pruned = torch.stack([prune(t, density, method="magnitude") for t in _task_vectors(tensors, base)])
    w = torch.tensor([float(x) for x in weights], dtype=pruned.dtype, device=pruned.device)
    w = w.view(-1, *([1] * (pruned.dim() - 1)))
    weighted = pruned * w
    agree = calculate_majority_sign_mask(weighted, method=majority_sign_method) & (pruned != 0)
    total = (weighted * agree).sum(dim=0)
    norm = (w * agree).sum(dim=0)
    update = torch.where(norm != 0, total / torch.where(norm != 0, norm, torch.ones_like(norm)), 0.0)
    return _rebase(update, base)


def _seed(name: str, seed: int) -> int:
    return (zlib.crc32(name.encode()) + 1_000_003 * seed) % (2**63)


def dare(tensors, weights, base=None, *, density: float = 0.5, seed: int = 0, name: str = "", **_: Any) -> torch.Tensor:
    import torch
    from peft.utils.merge_utils import dare_linear

    vectors = _task_vectors(tensors, base)
    devices = [vectors[0].device] if vectors[0].device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(_seed(name, seed))
        w = torch.tensor([float(x) for x in weights], dtype=vectors[0].dtype, device=vectors[0].device)
        update = dare_linear(vectors, w, density)
    return _rebase(update, base)


def fisher(tensors, weights, base=None, *, fishers=None, fisher_floor: float = 1e-6, **_: Any) -> torch.Tensor:
    if fishers is None:
        raise ValueError("the fisher method needs each expert's Fisher tensor")
    num = None
    den = None
    for t, f, w in zip(tensors, fishers, weights):
        wf = (f.clamp(min=0) + fisher_floor).mul_(float(w))
        num = wf * t if num is None else num.addcmul_(wf, t)
        den = wf if den is None else den.add_(wf)
    return num.div_(den)


METHODS: dict[str, Method] = {
    "linear": Method("linear", linear, uses_base=False, elementwise=True),
    "task_arithmetic": Method("task_arithmetic", task_arithmetic, uses_base=True, options=("scale",), elementwise=True),
    "ties": Method("ties", ties, uses_base=True, options=("density", "majority_sign_method")),
    "dare": Method("dare", dare, uses_base=True, options=("density", "seed")),
    "fisher": Method("fisher", fisher, uses_base=False, uses_fisher=True, options=("fisher_floor",), elementwise=True),
}


def get(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown merge method {name!r}; available: {sorted(METHODS)}") from None
