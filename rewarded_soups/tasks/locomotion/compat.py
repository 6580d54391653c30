"""A documented shim for brax 0.14.2 on jax >= 0.10.

brax's PPO (``brax.training.agents.ppo.train``) replicates its training state
with ``jax.device_put_replicated``, which jax 0.10 removed (google/brax#671).
The CPU install pins jax 0.9.2, which still has it; accelerators often carry a
newer jax (0.11.2 on the lent H100), so :func:`install` adds a replacement when
the function is missing and does nothing otherwise. Remove this module once
brax stops calling the function (``tests/test_locomotion.py`` checks both).
"""

from __future__ import annotations

from typing import Any


def _device_put_replicated(tree: Any, devices: list[Any]) -> Any:
    """Stack ``len(devices)`` copies of each leaf along a new leading axis (what ``pmap`` consumes)."""
    import jax
    import jax.numpy as jnp

    if not devices:
        raise ValueError("device_put_replicated needs at least one device")
    # pmap shards a stacked array over its devices itself; placing each copy
    # up front (as jax's original did) only saves that one transfer.
    return jax.tree.map(lambda leaf: jnp.stack([jnp.asarray(leaf)] * len(devices)), tree)


def needs_shim() -> bool:
    import jax

    return not hasattr(jax, "device_put_replicated")


def install() -> bool:
    """Add ``jax.device_put_replicated`` if this jax lacks it; return whether it was added."""
    import jax

    if not needs_shim():
        return False
    jax.device_put_replicated = _device_put_replicated
    return True
