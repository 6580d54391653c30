"""Locomotion (paper Section 3.6, Appendix I): a brax humanoid, risky and cautious rewards.

θ0 is brax PPO on brax's default dense reward; experts are PPO from θ0's
policy with its observation normaliser frozen, each on R_α (one α per
reward); soups interpolate the policy parameter trees. Samples are episode
records (``episodes.json``) and the body trajectory of the first episode
(``trajectory.safetensors``) for brax's HTML viewer. jax and brax are imported
inside the functions, after :func:`env.configure_jax` has set threads and the
compilation cache, so that looking this task up stays cheap.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rewarded_soups.registry import register_task
from rewarded_soups.tasks.locomotion.env import configure_jax, mixed_ctrl_cost

register_task("locomotion", module=__name__, modality="episode")


log = logging.getLogger(__name__)

EPISODES_FILE = "episodes.json"
TRAJECTORY_FILE = "trajectory.safetensors"


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


def finetune(
    base_dir: Path,
    out_dir: Path,
    rewards: dict[str, dict[str, Any]],
    weights: dict[str, float],
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
) -> dict[str, Any]:
    alpha = mixed_ctrl_cost(rewards, weights)
    configure_jax(threads)
    from rewarded_soups.tasks.locomotion import policy as io
    from rewarded_soups.tasks.locomotion.ppo import finetune as train

    log.info("fine-tuning on R_α with α = %g (weights %s)", alpha, weights)
    policy, metrics = train(io.load(Path(base_dir)), settings["data"], settings["finetune"], alpha, seed=seed)
    io.save(policy, Path(out_dir))
    return metrics


def merge(
    base_dir: Path,
    expert_dirs: list[Path],
    weights: list[float],
    out_dir: Path,
    settings: dict[str, Any],
    *,
    fisher_dirs: list[Path] | None = None,
) -> None:
    """Σ λ_i θ_i over the policy parameters, streamed; the frozen normaliser, shared by all, is kept as is."""
    from rewarded_soups.merging.engine import run
    from rewarded_soups.merging.spec import MergeSpec
    from rewarded_soups.tasks.locomotion import policy as io

    specs = {io.PolicySpec.from_json((Path(d) / io.CONFIG).read_text()) for d in expert_dirs}
    if len(specs) > 1:
        raise ValueError(f"policies differ in shape: {sorted(map(str, specs))}")
    spec = MergeSpec(
        members=list(expert_dirs),
        weights=list(weights),
        files=[io.WEIGHTS],
        copy=[io.CONFIG],
        base=Path(base_dir),
        keep=rf"^normalizer{io.SEP}",
        fishers=fisher_dirs,
    )
    run(spec, Path(out_dir), settings.get("merge", {}))


# Initial states of each evaluation split: its own random stream (test keeps the states it always had).
ROLLOUT_STREAMS = {"test": 0, "validation": 1}


def generate(
    base_dir: Path,
    model_dir: Path | None,
    out_dirs: dict[str, Path],
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
) -> None:
    """Deterministic rollouts from each split's initial states, the same for every model."""
    configure_jax(threads)
    from safetensors.numpy import save_file

    from rewarded_soups.tasks.locomotion import policy as io
    from rewarded_soups.tasks.locomotion.rollout import rollout

    policy = io.load(Path(model_dir) if model_dir is not None else Path(base_dir))
    cfg = settings["evaluate"]
    for split, out_dir in out_dirs.items():
        n = cfg["episodes"] if split == "test" else cfg["validation_size"]
        episodes, trajectory = rollout(policy, settings["data"], n, seed=seed, stream=ROLLOUT_STREAMS[split])
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / EPISODES_FILE).write_text(json.dumps(episodes, indent=1))
        save_file(trajectory, str(out_dir / TRAJECTORY_FILE))
        log.info(
            "%s: %d episodes, mean length %.1f", split, len(episodes), sum(e["steps"] for e in episodes) / len(episodes)
        )


def read_episodes(samples_dir: Path) -> list[dict[str, float]]:
    return json.loads((Path(samples_dir) / EPISODES_FILE).read_text())


def score(
    samples_dirs: dict[str, Path], reward: dict[str, Any], *, base_dir: Path, threads: int
) -> dict[str, list[float]]:
    from rewarded_soups.registry import build_reward

    scorer = build_reward(reward)
    return {split: scorer(read_episodes(Path(samples_dir))) for split, samples_dir in samples_dirs.items()}


def samples_table(samples: dict[str, Path], n: int) -> str:
    """Markdown: per model, the first ``n`` evaluation episodes' terms."""
    lines = [
        "Per evaluation episode: steps before falling, distance walked (m), Σ forward term, Σ alive bonus, Σ a².",
        "",
    ]
    for label, path in samples.items():
        lines += [
            f"### {label}",
            "",
            "| episode | steps | distance | forward | alive | Σa² |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for i, e in enumerate(read_episodes(Path(path))[:n]):
            lines.append(
                f"| {i} | {e['steps']:.0f} | {e['distance']:.2f} | {e['forward']:.1f} | {e['alive']:.1f} "
                f"| {e['action_sq']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def qualitative(samples: dict[str, Path], out_dir: Path, settings: dict[str, Any]) -> None:
    """One brax HTML viewer per model (its first evaluation episode), to watch the gaits."""
    configure_jax(1)
    from safetensors.numpy import load_file

    from rewarded_soups.tasks.locomotion.rollout import render_html

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for label, path in samples.items():
        trajectory = load_file(str(Path(path) / TRAJECTORY_FILE))
        (out_dir / f"{label}.html").write_text(render_html(settings["data"], trajectory))
