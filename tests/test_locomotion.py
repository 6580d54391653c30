"""Locomotion task: reward construction, policy interpolation and storage, the jax shim."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rewarded_soups import stages
from rewarded_soups.registry import reward_spec
from rewarded_soups.rewards.locomotion import ActionCost, EpisodeLength, LocomotionReward, Velocity
from rewarded_soups.samples import read as read_samples
from rewarded_soups.tasks import locomotion
from rewarded_soups.tasks.locomotion import policy as io
from rewarded_soups.tasks.locomotion.env import configure_jax, make_env, mixed_ctrl_cost

ROOT = Path(__file__).resolve().parent.parent

DATA = {
    "env": "humanoid",
    "backend": "spring",
    "episode_length": 20,
    "forward_reward_weight": 1.25,
    "healthy_reward": 5.0,
}
RISKY = {"kind": "locomotion", "ctrl_cost": 0.0}
CAUTIOUS = {"kind": "locomotion", "ctrl_cost": 1.0}


@pytest.fixture(scope="module")
def jax():
    configure_jax(1)
    import jax

    return jax


@pytest.fixture
def jax_without_replicated(jax, monkeypatch):
    """jax as from 0.10 on: no ``device_put_replicated`` (0.9 serves it as a deprecated name)."""
    fallback = vars(jax).get("__getattr__")

    def module_getattr(name):
        if name == "device_put_replicated" or fallback is None:
            raise AttributeError(f"module 'jax' has no attribute {name!r}")
        return fallback(name)

    monkeypatch.setattr(jax, "__getattr__", module_getattr, raising=False)
    if "device_put_replicated" in vars(jax):
        monkeypatch.delattr(jax, "device_put_replicated")
    assert not hasattr(jax, "device_put_replicated")
    yield jax
    vars(jax).pop("device_put_replicated", None)  # what the shim installed


def _step_metrics(jax, data, alpha):
    """One environment step with a fixed non-zero action; Σa² of the controls the actuators receive."""
    env = make_env(data, alpha)
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    action = np.linspace(-0.8, 0.9, env.action_size).astype(np.float32)
    nxt = jax.jit(env.step)(state, action)
    # The environment maps the policy's [-1, 1] onto each actuator's control range.
    low, high = np.asarray(env.sys.actuator.ctrl_range).T
    control = (action + 1) * (high - low) / 2 + low
    return {k: float(v) for k, v in nxt.metrics.items()}, float(nxt.reward), float(np.sum(control**2))


def test_environment_reward_is_the_sum_of_its_components(jax):
    for alpha in (0.0, 0.1, 1.0):
        metrics, reward, action_sq = _step_metrics(jax, DATA, alpha)
        total = metrics["forward_reward"] + metrics["reward_alive"] + metrics["reward_quadctrl"]
        assert reward == pytest.approx(total, rel=1e-5, abs=1e-5)
        assert metrics["reward_quadctrl"] == pytest.approx(-alpha * action_sq, rel=1e-5)
        assert metrics["reward_alive"] == pytest.approx(5.0)


def test_alpha_zero_without_alive_bonus_is_pure_velocity(jax):
    metrics, reward, _ = _step_metrics(jax, {**DATA, "healthy_reward": 0.0}, 0.0)
    assert metrics["reward_quadctrl"] == 0.0 and metrics["reward_alive"] == 0.0
    assert reward == pytest.approx(metrics["forward_reward"], rel=1e-6)
    assert metrics["forward_reward"] != 0.0


def test_episode_rewards_from_components():
    episodes = [
        {"forward": 3.0, "alive": 50.0, "action_sq": 12.0, "steps": 10.0, "distance": 0.4},
        {"forward": -1.0, "alive": 20.0, "action_sq": 2.5, "steps": 4.0, "distance": -0.1},
    ]
    assert LocomotionReward(0.0)(episodes) == [53.0, 19.0]  # risky: velocity (and alive) only
    assert LocomotionReward(1.0)(episodes) == [41.0, 16.5]
    assert LocomotionReward(0.5)(episodes) == [47.0, 17.75]  # the μ = 0.5 mix of the two
    assert Velocity()(episodes) == [3.0, -1.0]
    assert ActionCost()(episodes) == [12.0, 2.5] and not reward_spec("action_cost").higher_is_better
    assert EpisodeLength()(episodes) == [10.0, 4.0]
    with pytest.raises(ValueError, match="ctrl_cost"):
        LocomotionReward(-1.0)


def test_mixed_reward_is_the_environment_at_the_mixed_alpha():
    rewards = {"risky": RISKY, "cautious": CAUTIOUS}
    assert mixed_ctrl_cost(rewards, {"risky": 0.5, "cautious": 0.5}) == 0.5
    assert mixed_ctrl_cost({"cautious": CAUTIOUS}, {"cautious": 1.0}) == 1.0
    assert mixed_ctrl_cost(rewards, {"risky": 0.3, "cautious": 0.7}) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="sum to 1"):
        mixed_ctrl_cost(rewards, {"risky": 1.0, "cautious": 1.0})
    with pytest.raises(ValueError, match="kind locomotion"):
        mixed_ctrl_cost({"x": {"kind": "velocity"}}, {"x": 1.0})


def _policy(seed: int, mean=None) -> io.Policy:
    rng = np.random.default_rng(seed)
    params = {
        "params": {
            "hidden_0": {
                "kernel": rng.normal(size=(5, 4)).astype(np.float32),
                "bias": rng.normal(size=4).astype(np.float32),
            },
            "hidden_1": {
                "kernel": rng.normal(size=(4, 6)).astype(np.float32),
                "bias": rng.normal(size=6).astype(np.float32),
            },
        }
    }
    spec = io.PolicySpec("humanoid", 5, 3, (4,))
    mean = np.arange(5, dtype=np.float32) if mean is None else mean
    return io.Policy(spec, params, mean, np.full(5, 2.0, dtype=np.float32))


def _leaves(policy):
    return io.flatten(policy.params)


def _merged(tmp_path, policies, weights, name="soup"):
    """The task's soup of ``policies`` (the streaming merge engine), loaded back."""
    dirs = []
    for i, policy in enumerate(policies):
        io.save(policy, tmp_path / f"{name}-member{i}")
        dirs.append(tmp_path / f"{name}-member{i}")
    stages.merge(locomotion, dirs[0], dirs, weights, tmp_path / name, {})
    return io.load(tmp_path / name)


def test_interpolation_endpoints_reproduce_the_experts_exactly(tmp_path):
    a, b = _policy(0), _policy(1)
    for lam, expected in ((1.0, a), (0.0, b)):
        soup = _merged(tmp_path, [a, b], [lam, 1.0 - lam], name=f"soup{lam}")
        for name, value in _leaves(soup).items():
            assert value.dtype == np.float32
            np.testing.assert_array_equal(value, _leaves(expected)[name])
        np.testing.assert_array_equal(soup.obs_mean, a.obs_mean)
    half = _merged(tmp_path, [a, b], [0.5, 0.5], name="half")
    name = "params/hidden_0/kernel"
    np.testing.assert_allclose(_leaves(half)[name], (_leaves(a)[name] + _leaves(b)[name]) / 2, rtol=1e-6)


def test_interpolation_refuses_policies_from_different_starts(tmp_path):
    with pytest.raises(ValueError, match="must be the same in every expert"):
        _merged(tmp_path, [_policy(0), _policy(1, mean=np.ones(5, dtype=np.float32))], [0.5, 0.5])
    with pytest.raises(ValueError, match="one weight per expert"):
        _merged(tmp_path, [_policy(0)], [0.5, 0.5], name="other")


def test_save_and_load_round_trip(tmp_path):
    original = _policy(3)
    io.save(original, tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [io.CONFIG, io.WEIGHTS]
    loaded = io.load(tmp_path / "model")
    assert loaded.spec == original.spec
    assert _leaves(loaded).keys() == _leaves(original).keys()
    for name, value in _leaves(original).items():
        np.testing.assert_array_equal(_leaves(loaded)[name], value)
    np.testing.assert_array_equal(loaded.obs_std, original.obs_std)
    with pytest.raises(FileNotFoundError, match="not a locomotion policy"):
        io.load(tmp_path)


def test_shim_matches_jax_and_is_needed_while_brax_calls_it(jax, request):
    from brax.training.agents.ppo import train as ppo_train

    from rewarded_soups.tasks.locomotion import compat

    # When brax stops calling it, delete compat.py and this test.
    assert "jax.device_put_replicated" in inspect.getsource(ppo_train)
    tree = {"a": np.arange(3.0), "b": (np.ones((2, 2)), np.int32(4))}
    devices = jax.local_devices()[:1]
    shimmed = compat._device_put_replicated(tree, devices)
    if hasattr(jax, "device_put_replicated") and jax.device_put_replicated is not compat._device_put_replicated:
        reference = jax.device_put_replicated(tree, devices)
        for x, y in zip(jax.tree.leaves(shimmed), jax.tree.leaves(reference)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
            assert x.shape == y.shape
    request.getfixturevalue("jax_without_replicated")
    assert compat.needs_shim() and compat.install() and not compat.needs_shim()
    assert compat.install() is False  # a no-op when present


# Second tier: brax's PPO compiled for a newer jax's API (accelerator installs); 184 s of the first tier.
@pytest.mark.slow
def test_ppo_runs_on_a_jax_without_device_put_replicated(jax_without_replicated, tmp_path):
    """brax PPO through the task's entry points on a jax that lacks the function (jax >= 0.10)."""
    from rewarded_soups.tasks import locomotion

    ppo = {
        "steps": 512,
        "num_envs": 8,
        "batch_size": 8,
        "num_minibatches": 2,
        "updates_per_batch": 1,
        "unroll_length": 4,
        "learning_rate": 3e-4,
        "entropy_cost": 1e-3,
        "discounting": 0.97,
        "reward_scaling": 0.1,
        "evals": 1,
        "value_hidden": [8],
    }
    settings = {
        "data": DATA,
        "pretrain": {**ppo, "ctrl_cost_weight": 0.1, "policy_hidden": [8]},
        "finetune": ppo,
        "evaluate": {"episodes": 2},
    }
    locomotion.pretrain(tmp_path / "base", settings, seed=0, threads=1)
    base = io.load(tmp_path / "base")
    stages.finetune(
        locomotion,
        tmp_path / "base",
        tmp_path / "expert",
        {"cautious": CAUTIOUS},
        {"cautious": 1.0},
        settings,
        seed=0,
        threads=1,
    )
    expert = io.load(tmp_path / "expert")
    # The normaliser stays θ0's; the policy moved.
    np.testing.assert_array_equal(expert.obs_mean, base.obs_mean)
    np.testing.assert_array_equal(expert.obs_std, base.obs_std)
    assert any(not np.array_equal(v, _leaves(base)[k]) for k, v in _leaves(expert).items())
    stages.generate(
        locomotion, tmp_path / "base", tmp_path / "expert", {"test": tmp_path / "samples"}, settings, seed=0, threads=1
    )
    episodes = read_samples(tmp_path / "samples").records
    assert len(episodes) == 2 and all(0 < e["steps"] <= DATA["episode_length"] for e in episodes)
    cautious = stages.score(
        locomotion, {"test": tmp_path / "samples"}, CAUTIOUS, base_dir=tmp_path / "base", threads=1
    )["test"]
    assert cautious == pytest.approx([e["forward"] + e["alive"] - e["action_sq"] for e in episodes])


def test_rounded_weights_are_renormalised(tmp_path):
    third = {"kind": "locomotion", "ctrl_cost": 0.3}
    rewards = {"a": RISKY, "b": CAUTIOUS, "c": third}
    assert mixed_ctrl_cost(rewards, {"a": 0.3333, "b": 0.3333, "c": 0.3333}) == pytest.approx(1.3 / 3)
    policies = [_policy(i) for i in range(3)]
    soup = _merged(tmp_path, policies, [1 / 3] * 3)
    name = "params/hidden_1/bias"
    expected = sum(_leaves(p)[name].astype(np.float64) for p in policies) / 3
    np.testing.assert_allclose(_leaves(soup)[name], expected, rtol=1e-6)


def test_training_network_reads_the_frozen_normaliser(jax):
    """PPO's own policy at fine-tuning start acts exactly like the evaluation policy of θ0."""
    from brax.training.acme import running_statistics, specs
    from brax.training.agents.ppo import train as ppo

    from rewarded_soups.tasks.locomotion.ppo import network_factory
    from rewarded_soups.tasks.locomotion.rollout import inference_fn

    env = make_env(DATA, 1.0)
    rng = np.random.default_rng(0)
    spec = io.PolicySpec("humanoid", int(env.observation_size), int(env.action_size), (8,))
    base = io.Policy(
        spec,
        {},
        rng.normal(size=spec.observation_size).astype(np.float32),
        rng.uniform(0.5, 2.0, size=spec.observation_size).astype(np.float32),
    )
    init = ppo.train(
        environment=env, num_timesteps=0, episode_length=10, network_factory=network_factory(spec, [8]), seed=1
    )
    base.params = jax.tree.map(np.asarray, init[1][1])
    placeholder = running_statistics.init_state(specs.Array((spec.observation_size,), np.dtype("float32")))
    make_policy, params, _ = ppo.train(
        environment=env,
        num_timesteps=0,
        episode_length=10,
        normalize_observations=False,
        network_factory=network_factory(spec, [8], frozen=base),
        restore_params=(placeholder, base.params, None),
        restore_value_fn=False,
        seed=2,
    )
    obs = rng.normal(size=(5, spec.observation_size)).astype(np.float32)
    trained = make_policy(params, deterministic=True)(obs, jax.random.PRNGKey(0))[0]
    act, eval_params = inference_fn(base)
    np.testing.assert_allclose(np.asarray(trained), np.asarray(act(eval_params, obs)), rtol=1e-5, atol=1e-6)
    # and the statistics matter: θ0's policy on unnormalised observations acts differently
    plain = ppo.train(
        environment=env, num_timesteps=0, episode_length=10, network_factory=network_factory(spec, [8]), seed=1
    )
    other = plain[0]((placeholder, base.params, None), deterministic=True)(obs, jax.random.PRNGKey(0))[0]
    assert not np.allclose(np.asarray(other), np.asarray(trained))


def test_compile_once_compiles_under_the_cache_lock_and_gives_jits_result(tmp_path):
    # In its own interpreter: jax's compilation cache directory is process-wide state.
    code = f"""
import jax, jax.numpy as jnp
from pathlib import Path
from rewarded_soups.tasks.locomotion.rollout import compile_once
f = jax.jit(lambda x: jnp.sin(x) * 2.0)
x = jnp.arange(5.0)
assert (compile_once(f, x)(x) == f(x)).all()  # no cache: compiled here
jax.config.update("jax_compilation_cache_dir", {str(tmp_path / "cache")!r})
assert (compile_once(f, x)(x) == f(x)).all()
assert (Path({str(tmp_path / "cache")!r}) / "compile.lock").exists()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
