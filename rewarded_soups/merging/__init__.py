"""Weight interpolation and the other merge methods, streamed tensor by tensor.

* :mod:`~rewarded_soups.merging.spec` — :class:`MergeSpec`, what a task merges
  (its checkpoint files, the experts, λ, θ0 for task vectors).
* :mod:`~rewarded_soups.merging.engine` — :func:`merge` a spec into a soup
  directory, or into a recipe that :func:`materialize` builds in memory at
  evaluation.
* :mod:`~rewarded_soups.merging.methods` — the methods, one module each.

This is the one way soups are made: the workflow asks each task for the
:class:`MergeSpec` of its checkpoints and calls the engine's :func:`run`.
(The tests compare it with an in-memory reference, ``tests/reference_merging.py``.)
"""
