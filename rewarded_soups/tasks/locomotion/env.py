"""The brax environment, with the reward set through the environment's own keyword arguments.

A locomotion reward here is ``R_α = forward + alive − α·Σ_j a_j²`` per step:
brax's own forward-velocity and alive terms, with the control cost weight
``α`` passed to the environment as ``ctrl_cost_weight``. The paper's risky
reward is α = 0, the cautious one α = 1, and pre-training uses brax's default
α = 0.1. The forward weight and the alive bonus are task-level settings
(``data``), shared by every reward, so that a μ-weighted mix of rewards is the
same environment with α = Σ μ_i α_i.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Components:
    """Names of an environment's per-step metrics that hold its reward terms.

    The control term is −α·Σa², so an environment built with α = 1 reports −Σa² itself.
    """

    forward: str
    alive: str
    control: str


# Environments whose constructor takes forward_reward_weight, healthy_reward
# and ctrl_cost_weight (brax's ant, for one, has no forward weight).
COMPONENTS: dict[str, Components] = {
    "humanoid": Components("forward_reward", "reward_alive", "reward_quadctrl"),
}


def components(env_name: str) -> Components:
    try:
        return COMPONENTS[env_name]
    except KeyError:
        raise ValueError(
            f"environment {env_name!r} has no registered reward components; supported: {sorted(COMPONENTS)}"
        ) from None


def configure_jax(threads: int) -> None:
    """Thread count and a persistent compilation cache; must run before jax is imported.

    The cache lets the many small evaluation jobs of one task reuse the same
    compiled rollout instead of compiling it again (tens of seconds on CPU).
    """
    if threads == 1 and "XLA_FLAGS" not in os.environ:
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    cache = os.environ.get("RS_JAX_CACHE", ".jax_cache")
    import jax

    if cache:
        jax.config.update("jax_compilation_cache_dir", os.path.abspath(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    from rewarded_soups.tasks.locomotion import compat

    compat.install()


def make_env(data: dict[str, Any], ctrl_cost_weight: float) -> Any:
    """The brax environment of ``data`` whose reward is R_α with α = ``ctrl_cost_weight``."""
    from brax import envs

    components(data["env"])  # a clear error for an unsupported environment
    kwargs = {
        "backend": data["backend"],
        "ctrl_cost_weight": float(ctrl_cost_weight),
        "forward_reward_weight": float(data["forward_reward_weight"]),
        "healthy_reward": float(data["healthy_reward"]),
    }
    return envs.get_environment(data["env"], **kwargs)


def mixed_ctrl_cost(rewards: dict[str, dict[str, Any]], weights: dict[str, float]) -> float:
    """α of Σ w_i R_{α_i} with Σ w_i = 1: the same environment with α = Σ w_i α_i.

    Weights come from model names rounded to 4 decimals (μ = 1/3 is 0.3333), so
    they are renormalised; a sum far from 1 is a caller's mistake.
    """
    total = sum(weights.values())
    if abs(total - 1.0) > 1e-3:
        raise ValueError(f"reward weights must sum to 1 for a locomotion mix, got {weights} (sum {total})")
    for name, reward in rewards.items():
        if reward["kind"] != "locomotion":
            raise ValueError(
                f"reward {name!r} has kind {reward['kind']!r}; the locomotion task trains on kind locomotion"
            )
    return sum(weights[name] * float(rewards[name]["ctrl_cost"]) for name in weights) / total
