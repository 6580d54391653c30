"""DARE (Yu et al. 2024) through peft's ``dare_linear``."""

from __future__ import annotations

import zlib

from rewarded_soups.merging.methods import TaskVectorMethod, merge_method


def mask_seed(name: str, seed: int) -> int:
    """The random stream of one tensor's masks: the same for every λ of a workflow seed."""
    return (zlib.crc32(name.encode()) + 1_000_003 * seed) % (2**63)


@merge_method("dare", bounds={"density": {"exclusiveMinimum": 0, "maximum": 1}})
class Dare(TaskVectorMethod):
    """DARE: each task vector keeps a random ``density`` share of its entries, rescaled by 1/density, then
    Σ λ_i τ_i; the masks are seeded by the workflow seed and the tensor's name, so every λ uses the same."""

    needs_seed = True

    def __init__(self, *, density: float = 0.5, seed: int = 0) -> None:
        self.density = float(density)
        self.seed = int(seed)

    def combine_updates(self, vectors, weights, *, name):
        import torch
        from peft.utils.merge_utils import dare_linear

        devices = [vectors[0].device] if vectors[0].device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(mask_seed(name, self.seed))
            w = torch.tensor([float(x) for x in weights], dtype=vectors[0].dtype, device=vectors[0].device)
            return dare_linear(vectors, w, self.density)
