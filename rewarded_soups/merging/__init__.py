"""Weight interpolation and the other merge methods, streamed tensor by tensor.

* :mod:`~rewarded_soups.merging.engine` — :func:`merge` a :class:`MergeSpec`
  (experts' checkpoint files, λ, method) into a soup directory, or into a
  recipe that :func:`materialize` builds in memory at evaluation.
* :mod:`~rewarded_soups.merging.methods` — linear, task arithmetic, TIES, DARE,
  Fisher-weighted averaging.
* :mod:`~rewarded_soups.merging.inmemory` — the same interpolation over state
  dicts held in memory (the reference the engine is tested against).
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
from rewarded_soups.merging.inmemory import LORA_MODES, check_compatible, concat_lora, interpolate
from rewarded_soups.merging.inmemory import merge as merge_state_dicts
from rewarded_soups.merging.methods import METHODS

__all__ = [
    "LORA_MODES",
    "METHODS",
    "MergeSettings",
    "MergeSpec",
    "check_compatible",
    "concat_lora",
    "interpolate",
    "is_recipe",
    "load_state",
    "materialize",
    "merge",
    "merge_state_dicts",
    "run",
]
