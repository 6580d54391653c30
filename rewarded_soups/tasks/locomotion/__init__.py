"""Locomotion (paper Section 3.6, Appendix I): a brax humanoid, risky and cautious rewards.

θ0 is brax PPO on brax's default dense reward; experts are PPO from θ0's
policy with its observation normaliser frozen, each on R_α (one α per
reward); soups interpolate the policy parameter trees. Samples are one record
per episode (the sums of its reward terms) and, in the samples' arrays, the
body trajectory of the first episode for brax's HTML viewer. jax and brax are imported
inside the functions, after :func:`env.configure_jax` has set threads and the
compilation cache, so that looking this task up stays cheap.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rewarded_soups.registry import register_task
from rewarded_soups.tasks.base import Run
from rewarded_soups.tasks.locomotion.env import configure_jax, mixed_ctrl_cost

register_task("locomotion", module=__name__, modality="episode")


log = logging.getLogger(__name__)


def check_settings(task: dict[str, Any]) -> None:
    """What brax's PPO asserts mid-job, checked before any job (ValueError names the key)."""
    for stage in ("pretrain", "finetune"):
        ppo = task[stage]
        if (ppo["batch_size"] * ppo["num_minibatches"]) % ppo["num_envs"]:
            raise ValueError(
                f"{stage}: batch_size × num_minibatches ({ppo['batch_size']} × {ppo['num_minibatches']}) must be "
                f"a multiple of num_envs ({ppo['num_envs']}), as brax's PPO requires"
            )


def pretrain(out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
    configure_jax(threads)
    from rewarded_soups.tasks.locomotion import policy as io
    from rewarded_soups.tasks.locomotion.ppo import pretrain as train

    policy, metrics = train(settings["data"], settings["pretrain"], seed=seed)
    io.save(policy, Path(out_dir))
    return metrics


def finetune(run: Run) -> dict[str, Any]:
    """PPO from θ0's policy (its normaliser frozen) on R_α, α = Σ weights[r]·α_r."""
    alpha = mixed_ctrl_cost(run.rewards, run.weights)
    configure_jax(run.threads)
    from rewarded_soups.tasks.locomotion import policy as io
    from rewarded_soups.tasks.locomotion.ppo import finetune as train

    log.info("fine-tuning on R_α with α = %g (weights %s)", alpha, run.weights)
    settings = run.settings
    policy, metrics = train(io.load(run.base_dir), settings["data"], settings["finetune"], alpha, seed=run.seed)
    io.save(policy, run.out_dir)
    return metrics


def merge_spec(base_dir: Path, member_dirs: list[Path], weights: list[float], settings: dict[str, Any]):
    """Σ λ_i θ_i over the policy parameters, streamed; the frozen normaliser, shared by all, is kept as is."""
    from rewarded_soups.merging.spec import MergeSpec
    from rewarded_soups.tasks.locomotion import policy as io

    specs = {io.PolicySpec.from_json((Path(d) / io.CONFIG).read_text()) for d in member_dirs}
    if len(specs) > 1:
        raise ValueError(f"policies differ in shape: {sorted(map(str, specs))}")
    return MergeSpec(
        members=list(member_dirs),
        weights=list(weights),
        files=[io.WEIGHTS],
        copy=[io.CONFIG],
        base=Path(base_dir),
        keep=rf"^normalizer{io.SEP}",
    )


def load_model(base_dir: Path, model_dir: Path | None, settings: dict[str, Any], *, threads: int):
    """θ0's policy, or the expert, soup or MORL run in ``model_dir``."""
    configure_jax(threads)
    from rewarded_soups.tasks.locomotion import policy as io

    return io.load(Path(model_dir) if model_dir is not None else Path(base_dir))


# Initial states of each evaluation split: its own random stream (test keeps the states it always had).
ROLLOUT_STREAMS = {"test": 0, "validation": 1}


def generate(policy: Any, split: str, settings: dict[str, Any], *, seed: int):
    """Deterministic rollouts from a split's initial states, the same for every model."""
    from rewarded_soups.samples import Samples
    from rewarded_soups.tasks.locomotion.rollout import rollout

    cfg = settings["evaluate"]
    n = cfg["episodes"] if split == "test" else cfg["validation_size"]
    episodes, trajectory = rollout(policy, settings["data"], n, seed=seed, stream=ROLLOUT_STREAMS[split])
    mean_length = sum(e["steps"] for e in episodes) / len(episodes)
    log.info("%s: %d episodes, mean length %.1f", split, len(episodes), mean_length)
    return Samples(episodes, trajectory)


def reward_inputs(samples: Any) -> tuple[list[dict[str, float]]]:
    """(episodes,): every reward and metric is a sum of the recorded terms."""
    return (samples.records,)


def samples_table(samples: dict[str, Any], n: int) -> str:
    """Markdown: per model, the first ``n`` evaluation episodes' terms."""
    lines = [
        "Per evaluation episode: steps before falling, distance walked (m), Σ forward term, Σ alive bonus, Σ a².",
        "",
    ]
    for label, produced in samples.items():
        lines += [
            f"### {label}",
            "",
            "| episode | steps | distance | forward | alive | Σa² |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for i, e in enumerate(produced.records[:n]):
            lines.append(
                f"| {i} | {e['steps']:.0f} | {e['distance']:.2f} | {e['forward']:.1f} | {e['alive']:.1f} "
                f"| {e['action_sq']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def qualitative(samples: dict[str, Any], out_dir: Path, settings: dict[str, Any]) -> None:
    """One brax HTML viewer per model (its first evaluation episode), to watch the gaits."""
    configure_jax(1)
    from rewarded_soups.tasks.locomotion.rollout import render_html

    for label, produced in samples.items():
        (Path(out_dir) / f"{label}.html").write_text(render_html(settings["data"], produced.arrays))
