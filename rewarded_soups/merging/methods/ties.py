"""TIES-merging (Yadav et al. 2023) with peft's magnitude pruning and sign election."""

from __future__ import annotations

from typing import Literal

from rewarded_soups.merging.methods import TaskVectorMethod, merge_method


@merge_method("ties", bounds={"density": {"exclusiveMinimum": 0, "maximum": 1}})
class Ties(TaskVectorMethod):
    """TIES-merging: each task vector keeps its ``density`` largest entries, each entry takes the sign of
    Σ λ_i τ_i, and the agreeing experts are averaged with weights λ_i normalised over them (mergekit's
    default), so that λ still interpolates between the pruned experts.

    A whole tensor is ranked at once (no blocks), and an expert alone comes
    back pruned: TIES trims task vectors by design.
    """

    one_pass = True

    def __init__(self, *, density: float = 0.2, majority_sign_method: Literal["total", "frequency"] = "total") -> None:
        self.density = float(density)
        self.majority_sign_method = majority_sign_method

    def combine_updates(self, vectors, weights, *, name):
        import torch
        from peft.utils.merge_utils import calculate_majority_sign_mask, prune

        pruned = torch.stack([prune(t, self.density, method="magnitude") for t in vectors])
        w = torch.tensor([float(x) for x in weights], dtype=pruned.dtype, device=pruned.device)
        w = w.view(-1, *([1] * (pruned.dim() - 1)))
        weighted = pruned * w
        agree = calculate_majority_sign_mask(weighted, method=self.majority_sign_method) & (pruned != 0)
        total = (weighted * agree).sum(dim=0)
        norm = (w * agree).sum(dim=0)
        return torch.where(norm != 0, total / torch.where(norm != 0, norm, torch.ones_like(norm)), 0.0)
