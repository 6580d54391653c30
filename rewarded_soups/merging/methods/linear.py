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

    def combine_rounded_once(self, tensors, weights):
        # Two experts with λ summing to 1 (every soup of a pair): torch.lerp computes a + λ_b (b − a) in float32 and
        # rounds once to the 16-bit dtype, in one pass over memory (no conversion to float32 and back).
        import torch

        if len(tensors) != 2 or abs(float(weights[0]) + float(weights[1]) - 1.0) > 1e-12:
            return None
        return torch.lerp(tensors[0], tensors[1], float(weights[1]))

    def combine(self, tensors, weights, base=None, *, name="", fishers=None, inplace=False):
        return weighted_sum_(tensors, weights) if inplace else weighted_sum(tensors, weights)
