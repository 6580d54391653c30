"""Diagonal Fisher information of a model, for Fisher-weighted averaging (Matena & Raffel 2022).

F = E_x E_{y ~ p_θ(·|x)} [(∇_θ log p_θ(y|x))²], estimated on ``n`` inputs with
one output sampled from the model itself per input (the "true" Fisher, not the
empirical one on labels), one backward pass per sample so that squares are
taken per sample.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


def diagonal_fisher(
    parameters: dict[str, torch.nn.Parameter], sample_logprob: Callable[[int], torch.Tensor], n: int
) -> dict[str, torch.Tensor]:
    """Mean over ``i < n`` of the squared gradient of ``sample_logprob(i)`` (a scalar) for each parameter."""
    if n < 1:
        raise ValueError(f"need at least one sample for a Fisher estimate, got {n}")
    start = time.time()
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in parameters.items()}
    for i in range(n):
        for p in parameters.values():
            p.grad = None
        logprob = sample_logprob(i)
        logprob.backward()
        for name, p in parameters.items():
            if p.grad is not None:
                fisher[name] += p.grad.detach().float() ** 2
        if (i + 1) % max(1, n // 5) == 0:
            log.info("Fisher: %d/%d samples", i + 1, n)
    log.info("Fisher over %d samples and %d tensors in %.1f s", n, len(fisher), time.time() - start)
    return {name: f / n for name, f in fisher.items()}
