"""Fisher-weighted averaging (Matena & Raffel 2022), the direction of the paper's Appendix C.2.2."""

from __future__ import annotations

from rewarded_soups.merging.methods import MergeMethod, merge_method, weighted_sum


@merge_method("fisher", bounds={"fisher_floor": {"exclusiveMinimum": 0}})
class Fisher(MergeMethod):
    """Σ λ_i F_i θ_i / Σ λ_i F_i with each expert's diagonal Fisher F_i (plus ``fisher_floor``); a tensor
    without Fisher values (a frozen weight, a buffer) takes the plain λ-weighted mean."""

    needs_fisher = True
    elementwise = True

    def __init__(self, *, fisher_floor: float = 1e-6) -> None:
        self.fisher_floor = float(fisher_floor)

    def combine(self, tensors, weights, base=None, *, name="", fishers=None, inplace=False):
        if fishers is None:
            return weighted_sum(tensors, weights)
        num = None
        den = None
        for t, f, w in zip(tensors, fishers, weights):
            wf = (f.clamp(min=0) + self.fisher_floor).mul_(float(w))
            num = wf * t if num is None else num.addcmul_(wf, t)
            den = wf if den is None else den.add_(wf)
        return num.div_(den)
