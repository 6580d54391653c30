"""The rewarded soup itself: Σ λ_i θ_i."""

from __future__ import annotations

from rewarded_soups.merging.methods import MergeMethod, merge_method, weighted_sum, weighted_sum_


@merge_method("linear")
class Linear(MergeMethod):
    """Σ λ_i θ_i, the rewarded soup (the paper's weight interpolation)."""

    one_pass = True
    elementwise = True

    def exact_lora_scale(self) -> float:
        return 1.0

    def combine(self, tensors, weights, base=None, *, name="", fishers=None, inplace=False):
        return weighted_sum_(tensors, weights) if inplace else weighted_sum(tensors, weights)
