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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # also what the code digest (rewarded_soups.codedigest) follows from here
    from rewarded_soups.merging import engine, methods  # noqa: F401

# Names resolved on first use (PEP 562): the engine imports torch, and the
# workflow reads only the method catalogue while it builds the DAG.
_WHERE = {
    "METHODS": "methods",
    "MergeSettings": "engine",
    "MergeSpec": "engine",
    "is_recipe": "engine",
    "load_state": "engine",
    "materialize": "engine",
    "merge": "engine",
    "run": "engine",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
