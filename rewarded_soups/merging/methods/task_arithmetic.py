"""Task arithmetic (Ilharco et al. 2023): θ0 + s · Σ λ_i (θ_i − θ0)."""

from __future__ import annotations

from rewarded_soups.merging.methods import TaskVectorMethod, merge_method, weighted_sum


@merge_method("task_arithmetic")
class TaskArithmetic(TaskVectorMethod):
    """θ0 + scale · Σ λ_i (θ_i − θ0); with λ outside the simplex it extrapolates (the paper's Figure 13g)."""

    one_pass = True
    elementwise = True
    extrapolates = True

    def __init__(self, *, scale: float = 1.0) -> None:
        self.scale = float(scale)

    def exact_lora_scale(self) -> float:
        return self.scale

    def combine_updates(self, vectors, weights, *, name):
        update = weighted_sum(vectors, weights)
        return update.mul_(self.scale) if self.scale != 1.0 else update
