"""Spherical linear interpolation of two experts (Shoemake 1985), as merge tools apply it to weights."""

from __future__ import annotations

from rewarded_soups.merging.methods import MergeMethod, merge_method, weighted_sum

# Directions closer than this (|cos Ω| above it) are interpolated linearly: sin Ω would be ~0.
COLINEAR = 0.9995


@merge_method("slerp")
class Slerp(MergeMethod):
    """Slerp of two experts along the great circle through them, tensor by tensor:
    θ = sin((1 − t)Ω)/sin Ω · θ_1 + sin(tΩ)/sin Ω · θ_2 with t = λ_2 and Ω the angle between θ_1 and θ_2;
    nearly colinear tensors (and zero ones) are interpolated linearly."""

    max_experts = 2

    def returns_expert_at_vertex(self) -> bool:
        return True

    def combine(self, tensors, weights, base=None, *, name="", fishers=None, inplace=False):
        import torch

        if len(tensors) != 2:
            raise ValueError(f"slerp interpolates two experts; tensor {name!r} has {len(tensors)}")
        first, second = tensors
        t = float(weights[1]) / (float(weights[0]) + float(weights[1]))
        norms = first.norm(), second.norm()
        if min(float(n) for n in norms) == 0.0:
            return weighted_sum(tensors, [1.0 - t, t])
        cos = float(torch.dot(first.flatten() / norms[0], second.flatten() / norms[1]).clamp(-1.0, 1.0))
        if abs(cos) > COLINEAR:
            return weighted_sum(tensors, [1.0 - t, t])
        omega = torch.arccos(torch.tensor(cos, dtype=torch.float64))
        sin_omega = torch.sin(omega)
        coefficients = [float(torch.sin((1.0 - t) * omega) / sin_omega), float(torch.sin(t * omega) / sin_omega)]
        return weighted_sum(tensors, coefficients)
