"""Deterministic evaluation rollouts and the trajectory viewer.

Every model is rolled out from the same ``n_episodes`` initial states (reset
keys derived from the seed) with its deterministic action (the mode of the
policy distribution). Per episode we keep the sums of the environment's own
reward terms until the episode terminates: the forward term, the alive bonus
and Σ_t Σ_j a_tj² (read from an environment built with α = 1), plus the number
of steps and the distance walked. Any R_α is then forward + alive − α·Σa².
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

import numpy as np

from rewarded_soups.tasks.locomotion.env import components, make_env
from rewarded_soups.tasks.locomotion.policy import Policy

EPISODE_FIELDS = ("forward", "alive", "action_sq", "steps", "distance")


def inference_fn(policy: Policy):
    """``act(params, obs)``: the deterministic action (the mode of the policy distribution).

    The parameters are an argument, not a closure, so that every model of a
    task runs the same compiled rollout (and hits jax's compilation cache).
    """
    import jax
    from brax.training.acme import running_statistics
    from brax.training.agents.ppo import networks as ppo_networks

    network = ppo_networks.make_ppo_networks(
        policy.spec.observation_size,
        policy.spec.action_size,
        preprocess_observations_fn=running_statistics.normalize,
        policy_hidden_layer_sizes=tuple(policy.spec.hidden_sizes),
    )

    make_policy = ppo_networks.make_inference_fn(network)
    key = jax.random.PRNGKey(0)  # unused by the deterministic policy

    def act(params, obs):
        stats = running_statistics.NestedMeanStd(mean=params["mean"], std=params["std"])
        return make_policy((stats, params["policy"]), deterministic=True)(obs, key)[0]

    params = {"mean": policy.obs_mean, "std": policy.obs_std, "policy": policy.params}
    return act, params


def compile_once(jitted: Any, *args: Any) -> Any:
    """``jitted`` compiled for ``args``, one compilation at a time per compilation cache.

    The evaluation jobs of a task all run the same rollout program; when several
    start before any has put it in jax's persistent cache, each compiled it
    (measured: two jobs, 144 s of CPU each, where loading it took the others 28 s
    in all). Under a file lock in the cache directory, the first compiles and
    stores it, the others wait and load it. Without a cache: compiled here.
    """
    import jax

    lowered = jitted.lower(*args)
    cache = jax.config.jax_compilation_cache_dir
    if not cache:
        return lowered.compile()
    Path(cache).mkdir(parents=True, exist_ok=True)
    with open(Path(cache) / "compile.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return lowered.compile()


def rollout(
    policy: Policy, data: dict[str, Any], n_episodes: int, *, seed: int, stream: int = 0
) -> tuple[list[dict[str, float]], dict[str, np.ndarray]]:
    """Per-episode records, and the body positions/rotations of episode 0 until it ends.

    ``stream`` > 0 draws the initial states from another random stream of ``seed`` (another split).
    """
    import jax
    import jax.numpy as jnp

    env = make_env(data, ctrl_cost_weight=1.0)
    names = components(data["env"])
    act, params = inference_fn(policy)

    def run(params, keys):
        state = jax.vmap(env.reset)(keys)
        x0 = state.pipeline_state.x.pos[:, 0, 0]

        def step(carry, _):
            state, running, last_x = carry
            nxt = jax.vmap(env.step)(state, act(params, state.obs))
            m = nxt.metrics
            terms = jnp.stack([m[names.forward], m[names.alive], -m[names.control], jnp.ones_like(running)], -1)
            frame = (nxt.pipeline_state.x.pos[0], nxt.pipeline_state.x.rot[0], running[0])
            last_x = jnp.where(running > 0, nxt.pipeline_state.x.pos[:, 0, 0], last_x)
            # where, not a product: a fallen body may drift into NaN, and NaN·0 is NaN.
            return (nxt, running * (1.0 - nxt.done), last_x), (jnp.where(running[:, None] > 0, terms, 0.0), frame)

        running = jnp.ones(keys.shape[0])
        (_, _, last_x), (terms, frames) = jax.lax.scan(step, (state, running, x0), None, length=data["episode_length"])
        return terms.sum(0), last_x - x0, frames

    key = jax.random.PRNGKey(seed)
    keys = jax.random.split(jax.random.fold_in(key, stream) if stream else key, n_episodes)
    sums, distance, (pos, rot, alive) = jax.device_get(compile_once(jax.jit(run), params, keys)(params, keys))
    episodes = [
        {
            "forward": float(s[0]),
            "alive": float(s[1]),
            "action_sq": float(s[2]),
            "steps": float(s[3]),
            "distance": float(d),
        }
        for s, d in zip(np.asarray(sums, dtype=np.float64), np.asarray(distance, dtype=np.float64))
    ]
    length = int(np.asarray(alive).sum())
    trajectory = {"pos": np.asarray(pos[:length]), "rot": np.asarray(rot[:length])}
    return episodes, trajectory


def render_html(data: dict[str, Any], trajectory: dict[str, np.ndarray]) -> str:
    """brax's HTML viewer of a stored trajectory (it loads its viewer script from a CDN)."""
    from types import SimpleNamespace

    from brax import base
    from brax.io import html

    env = make_env(data, ctrl_cost_weight=1.0)
    states = [SimpleNamespace(x=base.Transform(pos=p, rot=r)) for p, r in zip(trajectory["pos"], trajectory["rot"])]
    if not states:
        raise ValueError("empty trajectory: nothing to render")
    # The viewer plays one frame per sys.opt.timestep; a stored frame is one env step (env.dt).
    sys = env.sys.tree_replace({"opt.timestep": env.dt})
    return html.render(sys, states, height=480, colab=False)
