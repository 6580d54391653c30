"""Weight interpolation and the other merge methods, streamed tensor by tensor.

* :mod:`~rewarded_soups.merging.engine` — :func:`merge` a :class:`MergeSpec`
  (experts' checkpoint files, λ, method) into a soup directory, or into a
  recipe that :func:`materialize` builds in memory at evaluation.
* :mod:`~rewarded_soups.merging.methods` — linear, task arithmetic, TIES, DARE,
  Fisher-weighted averaging.

This is the one way soups are made: every task describes its checkpoints
with a :class:`MergeSpec` and calls :func:`run`. (The tests compare it with an
in-memory reference, ``tests/reference_merging.py``.)
"""

from rewarded_soups.merging.engine import (
    MergeSettings,
    MergeSpec,
    is_recipe,
    load_state,
    materialize,
    merge,
    run,
)
from rewarded_soups.merging.methods import METHODS

__all__ = [
    "METHODS",
    "MergeSettings",
    "MergeSpec",
    "is_recipe",
    "load_state",
    "materialize",
    "merge",
    "run",
]
