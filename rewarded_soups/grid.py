"""Weight vectors on the simplex and their filesystem-safe names.

A *mix* is an ordered mapping reward -> weight (summing to 1). It names both a
soup (interpolation coefficients λ) and a MORL run (preference μ).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence

MIX_SEPARATOR = "+"
WEIGHT_SEPARATOR = "@"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def simplex_lattice(n: int, points_per_edge: int) -> list[tuple[float, ...]]:
    """All weight vectors of ``n`` components on the lattice of step 1/(points_per_edge-1).

    For n=2 and 11 points per edge this is λ ∈ {0, 0.1, ..., 1}. For n>2 the
    uniform average is added when the lattice misses it (it is the paper's
    default soup). Vectors are ordered lexicographically, descending in the
    first weight, so n=2 runs from expert 1 to expert 2.
    """
    if n < 1:
        raise ValueError(f"a simplex needs at least one component, got n={n}")
    if points_per_edge < 2:
        raise ValueError(f"grid_points must be at least 2 (the two experts), got {points_per_edge}")
    steps = points_per_edge - 1
    vectors = [
        tuple(c / steps for c in counts)
        for counts in itertools.product(range(steps, -1, -1), repeat=n)
        if sum(counts) == steps
    ]
    uniform = tuple(1.0 / n for _ in range(n))
    if not any(all(math.isclose(a, b) for a, b in zip(v, uniform)) for v in vectors):
        vectors.append(uniform)
    return vectors


def is_vertex(weights: Sequence[float]) -> bool:
    """True when one component carries all the weight (the vector *is* an expert)."""
    return sum(1 for w in weights if w > 0) == 1


def format_weight(w: float) -> str:
    return format(round(float(w), 4), "g")


def mix_name(mix: Mapping[str, float]) -> str:
    """Readable, filesystem-safe encoding, e.g. ``sentiment@0.3+concise@0.7``."""
    for name in mix:
        if not _NAME.match(name):
            raise ValueError(f"reward name {name!r} must match {_NAME.pattern}")
    return MIX_SEPARATOR.join(f"{name}{WEIGHT_SEPARATOR}{format_weight(w)}" for name, w in mix.items())


def parse_mix(name: str) -> dict[str, float]:
    """Inverse of :func:`mix_name`."""
    mix: dict[str, float] = {}
    for part in name.split(MIX_SEPARATOR):
        reward, sep, weight = part.partition(WEIGHT_SEPARATOR)
        if not sep or not _NAME.match(reward):
            raise ValueError(f"cannot parse mix {name!r}: expected reward@weight joined by '+'")
        mix[reward] = float(weight)
    return mix


def as_mix(rewards: Sequence[str], weights: Sequence[float]) -> dict[str, float]:
    if len(rewards) != len(weights):
        raise ValueError(f"{len(rewards)} rewards but {len(weights)} weights")
    return {r: float(w) for r, w in zip(rewards, weights)}


def normalise(weights: Sequence[float]) -> tuple[float, ...]:
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
    return tuple(w / total for w in weights)


def renormalise(weights: Sequence[float]) -> tuple[float, ...]:
    """Weights divided by their sum, which must be positive; negative weights (extrapolation) are allowed."""
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"weights must have a positive sum, got {list(weights)}")
    return tuple(w / total for w in weights)
