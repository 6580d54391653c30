"""Pre-training and fine-tuning with brax's PPO (``brax.training.agents.ppo``).

Pre-training learns the policy and the observation normaliser on brax's
default reward (α = 0.1); fine-tuning restores that policy, starts a fresh
value function (the paper discards θ0's) and keeps the normaliser frozen: the
networks read observations through θ0's statistics, never through the
running statistics PPO keeps updating.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from rewarded_soups.tasks.locomotion.env import make_env
from rewarded_soups.tasks.locomotion.policy import Policy, PolicySpec

log = logging.getLogger(__name__)


def network_factory(spec: PolicySpec, value_hidden_sizes: list[int], frozen: Policy | None = None):
    """brax's PPO networks; with ``frozen``, observations are normalised by its statistics only."""
    from brax.training.acme import running_statistics
    from brax.training.agents.ppo import networks as ppo_networks

    def make(observation_size, action_size, preprocess_observations_fn=None, **_):
        if frozen is not None:
            stats = running_statistics.NestedMeanStd(mean=frozen.obs_mean, std=frozen.obs_std)
            preprocess_observations_fn = lambda obs, _params: running_statistics.normalize(obs, stats)  # noqa: E731
        return ppo_networks.make_ppo_networks(
            observation_size,
            action_size,
            preprocess_observations_fn=preprocess_observations_fn,
            policy_hidden_layer_sizes=tuple(spec.hidden_sizes),
            value_hidden_layer_sizes=tuple(value_hidden_sizes),
        )

    return make


class Progress:
    """brax's training-episode metrics as log lines (no separate evaluation: its compile costs tens of seconds)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.start = label, total, time.time()
        self.last: dict[str, float] = {}
        self.offset = 0  # env steps done before a resume

    def __call__(self, step: int, metrics: dict[str, Any]) -> None:
        if "episode/sum_reward" not in metrics:
            return  # brax's closing call carries loss metrics only
        step += self.offset
        self.last = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
        log.info(
            "%s: %d/%d env steps (%.0f%%), %.0f s, %.0f steps/s; training episodes: reward %.1f, length %.1f",
            self.label,
            step,
            self.total,
            100 * step / max(self.total, 1),
            time.time() - self.start,
            self.last.get("episode/sps", float("nan")),
            self.last.get("episode/sum_reward", float("nan")),
            self.last.get("episode/length", float("nan")),
        )


class ParamsCheckpoint:
    """brax's PPO params (normaliser, policy, value) saved through its ``policy_params_fn`` hook at the end of an
    evaluation epoch when the job's checkpoint is due (:mod:`rewarded_soups.resume`).

    brax's training state beyond the params (Adam's moments, the environments' states, the PRNG keys) is
    internal to ``ppo.train``: its own ``save_checkpoint_path`` keeps the params only as well. A resumed run
    therefore starts those afresh (seed + steps done) and trains the remaining steps: not bit-identical
    to an uninterrupted run (see docs/resume.md for by how much).
    """

    NAME = "ppo"

    def __init__(self, total_steps: int) -> None:
        from rewarded_soups import resume

        self.checkpoints, self.total_steps = resume.active(), total_steps
        self.offset = 0

    def load(self, normaliser_template: Any) -> tuple[int, tuple | None]:
        import jax

        saved = self.checkpoints.load(self.NAME)
        if saved is None:
            return 0, None
        normaliser = jax.tree.unflatten(jax.tree.structure(normaliser_template), saved["normaliser"])
        self.offset = int(saved["step"])
        self.checkpoints.resumed_at(self.offset)
        log.info("PPO resumes from its checkpoint at %d of %d env steps", self.offset, self.total_steps)
        return self.offset, (normaliser, saved["policy"], saved["value"])

    def __call__(self, step: int, _make_policy: Any, params: tuple) -> None:
        import jax

        done = self.offset + int(step)
        if step == 0 or done >= self.total_steps or not self.checkpoints.due(done):
            return
        normaliser, policy, value = jax.device_get(params)
        # Leaves, not the tree: the normaliser's UInt64 count turns numpy fields back into jax arrays.
        leaves = [np.asarray(leaf) if hasattr(leaf, "shape") else leaf for leaf in jax.tree.leaves(normaliser)]
        numpy = jax.tree.map(np.asarray, (policy, value))
        state = {"step": done, "normaliser": leaves, "policy": numpy[0], "value": numpy[1]}
        self.checkpoints.save(self.NAME, state)


def _train(env, settings: dict[str, Any], episode_length: int, *, seed: int, label: str, **extra) -> tuple:
    from brax.training.acme import running_statistics, specs
    from brax.training.agents.ppo import train as ppo

    progress = Progress(label, settings["steps"])
    saver = ParamsCheckpoint(settings["steps"])
    template = running_statistics.init_state(specs.Array((int(env.observation_size),), np.dtype("float32")))
    done, restored = saver.load(template)
    evals = settings["evals"]
    if restored is not None:
        # The remaining steps, at the same steps per evaluation epoch; fresh optimiser, environments and keys.
        per_eval = max(settings["steps"] // evals, 1)
        evals = max(1, evals - done // per_eval)
        extra = extra | {"restore_params": restored, "restore_value_fn": True}
        seed = seed + done
        progress.offset = done
    _, params, _ = ppo.train(
        environment=env,
        num_timesteps=settings["steps"] - done,
        episode_length=episode_length,
        num_envs=settings["num_envs"],
        batch_size=settings["batch_size"],
        num_minibatches=settings["num_minibatches"],
        num_updates_per_batch=settings["updates_per_batch"],
        unroll_length=settings["unroll_length"],
        learning_rate=settings["learning_rate"],
        entropy_cost=settings["entropy_cost"],
        discounting=settings["discounting"],
        reward_scaling=settings["reward_scaling"],
        num_evals=evals,
        run_evals=False,
        log_training_metrics=True,
        training_metrics_steps=max((settings["steps"] - done) // evals, 1),
        seed=seed,
        progress_fn=progress,
        policy_params_fn=saver,
        **extra,
    )
    return params, {k.replace("episode/", "train_episode/"): v for k, v in progress.last.items()}


def pretrain(data: dict[str, Any], settings: dict[str, Any], *, seed: int) -> tuple[Policy, dict[str, Any]]:
    env = make_env(data, settings["ctrl_cost_weight"])
    spec = PolicySpec(data["env"], int(env.observation_size), int(env.action_size), tuple(settings["policy_hidden"]))
    start = time.time()
    params, metrics = _train(
        env,
        settings,
        data["episode_length"],
        seed=seed,
        label="pretrain",
        normalize_observations=True,
        network_factory=network_factory(spec, settings["value_hidden"]),
    )
    normaliser, policy_params = params[0], params[1]
    policy = Policy(spec, _to_numpy(policy_params), np.asarray(normaliser.mean), np.asarray(normaliser.std))
    return policy, {"seconds": time.time() - start, **metrics}


def finetune(
    base: Policy, data: dict[str, Any], settings: dict[str, Any], ctrl_cost_weight: float, *, seed: int
) -> tuple[Policy, dict[str, Any]]:
    from brax.training.acme import running_statistics, specs

    env = make_env(data, ctrl_cost_weight)
    if (int(env.observation_size), int(env.action_size)) != (base.spec.observation_size, base.spec.action_size):
        raise ValueError(f"θ0 was trained on another environment shape ({base.spec}); rerun pretrain")
    # PPO's own normaliser state must have its usual structure; the networks ignore it (see network_factory).
    placeholder = running_statistics.init_state(specs.Array((base.spec.observation_size,), np.dtype("float32")))
    start = time.time()
    params, metrics = _train(
        env,
        settings,
        data["episode_length"],
        seed=seed,
        label=f"finetune α={ctrl_cost_weight:g}",
        normalize_observations=False,
        network_factory=network_factory(base.spec, settings["value_hidden"], frozen=base),
        restore_params=(placeholder, base.params, None),
        restore_value_fn=False,
    )
    policy = Policy(base.spec, _to_numpy(params[1]), base.obs_mean, base.obs_std)
    return policy, {"seconds": time.time() - start, "ctrl_cost_weight": ctrl_cost_weight, **metrics}


def _to_numpy(tree: Any) -> dict[str, Any]:
    import jax

    return jax.tree.map(np.asarray, jax.device_get(tree))
