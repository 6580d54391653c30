"""What the workflow does around a task at each stage: the task supplies its model, the rest is here.

Each function takes the task's module (:func:`rewarded_soups.registry.load_task`)
and calls only the task functions :data:`rewarded_soups.tasks.base.STAGE_FUNCTIONS`
names for its stage; the Snakemake scripts are one call each. Everything here
is testable without Snakemake.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from rewarded_soups import samples as sample_files
from rewarded_soups.tasks.base import STAGE_FUNCTIONS, TRAIN_METRICS, Run
from rewarded_soups.workflow import write_json

log = logging.getLogger(__name__)

ENSEMBLE_FILE = "ensemble.json"  # a prediction ensemble's directory holds only its members and weights


def code_entries(task: ModuleType, stage: str) -> list[str]:
    """The code a stage's job can run: this module's stage function and the task functions it calls."""
    functions = [name for name in STAGE_FUNCTIONS[stage] if callable(getattr(task, name, None))]
    return [f"{__name__}:{stage}", *(f"{task.__name__}:{name}" for name in functions)]


def code_digest(kind: str, stage: str, reward_kinds: tuple[str, ...] = (), modules: tuple[str, ...] = ()) -> str:
    """The digest of a job's code (:mod:`rewarded_soups.codedigest`): the stage, the task's functions, and the
    modules the job looks up by name at run time: its rewards' (by kind) and ``modules`` (a merge method's)."""
    from rewarded_soups import codedigest, registry

    entries = [*code_entries(registry.load_task(kind), stage), *modules]
    entries += [registry.reward_spec(reward).module for reward in reward_kinds]
    return codedigest.digest(entries)


def pretrain(task: ModuleType, out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
    """Train θ0 into ``out_dir``; return its metrics."""
    return task.pretrain(Path(out_dir), settings, seed=seed, threads=threads)


def finetune(
    task: ModuleType,
    base_dir: Path,
    out_dir: Path,
    rewards: dict[str, dict[str, Any]],
    weights: dict[str, float],
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
    data_seed: int | None = None,
) -> dict[str, Any]:
    """An expert (one weight 1) or a MORL run; its metrics go to ``TRAIN_METRICS`` in ``out_dir``.

    ``data_seed`` (default ``seed``) picks the data; ``seed`` the training's randomness (:class:`Run`).
    """
    run = Run(Path(base_dir), Path(out_dir), dict(rewards), dict(weights), settings, seed, threads, data_seed)
    log.info("fine-tuning on %s", run.describe())
    metrics = task.finetune(run)
    write_json(run.out_dir / TRAIN_METRICS, metrics)
    return metrics


def merge(
    task: ModuleType,
    base_dir: Path,
    member_dirs: list[Path],
    weights: list[float],
    out_dir: Path,
    settings: dict[str, Any],
    *,
    fisher_dirs: list[Path] | None = None,
) -> dict[str, Any]:
    """The soup of ``member_dirs`` with ``weights`` (a member may be θ0: WiSE), as ``settings["merge"]`` says."""
    from rewarded_soups.merging.engine import run

    spec = task.merge_spec(Path(base_dir), [Path(d) for d in member_dirs], list(weights), settings)
    if fisher_dirs:
        spec.fishers = [Path(d) for d in fisher_dirs]
    return run(spec, Path(out_dir), settings.get("merge", {}))


def merge_grid(
    task: ModuleType,
    base_dir: Path,
    member_dirs: list[Path],
    grid: Mapping[str, list[float]],
    out_dir: Path,
    settings: dict[str, Any],
) -> list[dict[str, Any]]:
    """The soups of ``grid`` (soup name -> λ, all of the same ``member_dirs``) in one pass over the experts, each
    written to ``out_dir/<name>`` (rule soup_grid; the soup jobs take them from there)."""
    from rewarded_soups.merging import grid as one_pass

    names = list(grid)
    specs = [task.merge_spec(Path(base_dir), [Path(d) for d in member_dirs], list(grid[n]), settings) for n in names]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return one_pass.run(specs, [Path(out_dir) / n for n in names], settings.get("merge", {}))


def take_soup(grid_dir: Path, out_dir: Path) -> bool:
    """Move a soup that a grid job built (``grid_dir``) to ``out_dir``; False when it is not there (taken before,
    or the grid skipped it), and the soup job then merges it itself."""
    from rewarded_soups.merging.engine import INFO_FILE

    if not (Path(grid_dir) / INFO_FILE).is_file():
        return False
    Path(grid_dir).rename(out_dir)
    return True


def soups_to_build(
    grid: Mapping[str, list[float]], soups_dir: Path, inputs: list[Path], merge_settings: dict[str, Any]
) -> dict[str, list[float]]:
    """The soups of ``grid`` that their jobs will take: those missing from ``soups_dir``, older than an input, or
    merged with other settings. The others are up to date (Snakemake will not rerun their jobs): building them
    again would leave copies nobody takes. A soup job that finds nothing to take merges its soup itself."""
    from rewarded_soups.merging.engine import INFO_FILE

    def stamp(directory: Path) -> float:
        marker = directory / ".snakemake_timestamp"  # what Snakemake dates a directory output by
        return (marker if marker.exists() else directory).stat().st_mtime

    newest = max((stamp(Path(d)) for d in inputs if Path(d).exists()), default=0.0)
    wanted = {}
    for name, weights in grid.items():
        soup = Path(soups_dir) / name
        info_file = soup / INFO_FILE
        if not info_file.is_file() or stamp(soup) < newest:
            wanted[name] = weights
            continue
        info = json.loads(info_file.read_text())
        same = info.get("method") == merge_settings.get("method") and info.get("options") == dict(
            merge_settings.get("options") or {}
        )
        if not same or [round(w, 12) for w in info.get("weights", [])] != [round(w, 12) for w in weights]:
            wanted[name] = weights
    return wanted


def ensemble(member_dirs: list[Path], weights: list[float], out_dir: Path) -> None:
    """A prediction ensemble (paper Figure 5c) is its members and weights; the task decodes it at generation."""
    manifest = {"members": [str(Path(d)) for d in member_dirs], "weights": [float(w) for w in weights]}
    write_json(Path(out_dir) / ENSEMBLE_FILE, manifest)


def load(task: ModuleType, base_dir: Path, model_dir: Path | None, settings: dict[str, Any], *, threads: int) -> Any:
    """The model a generate job runs: θ0 (``model_dir`` None), a checkpoint, or a prediction ensemble."""
    if model_dir is not None and (Path(model_dir) / ENSEMBLE_FILE).exists():
        manifest = json.loads((Path(model_dir) / ENSEMBLE_FILE).read_text())
        members = [Path(d) for d in manifest["members"]]
        return task.load_ensemble(Path(base_dir), members, manifest["weights"], settings, threads=threads)
    return task.load_model(Path(base_dir), None if model_dir is None else Path(model_dir), settings, threads=threads)


def generate(
    task: ModuleType,
    base_dir: Path,
    model_dir: Path | None,
    out_dirs: Mapping[str, Path],
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
) -> None:
    """The model's samples on each held-out split, into ``out_dirs[split]``; the model is loaded once."""
    model = load(task, base_dir, model_dir, settings, threads=threads)
    for split, out_dir in out_dirs.items():
        produced = task.generate(model, split, settings, seed=seed)
        sample_files.write(produced, Path(out_dir))
        log.info("%s: %d samples written to %s", split, len(produced), out_dir)


def _close(scorer: Any) -> None:
    close = getattr(scorer, "close", None)
    if close is not None:
        close()


def score(
    task: ModuleType, samples_dirs: Mapping[str, Path], reward: dict[str, Any], *, base_dir: Path, threads: int
) -> dict[str, list[float]]:
    """One value of ``reward`` per sample of each split (split -> values); the reward is built once."""
    from rewarded_soups.registry import build_reward, reward_spec

    if reward_spec(reward["kind"]).uses_device:
        # Rewards that run a model get the job's threads; the rule-based ones never import torch for it.
        from rewarded_soups.gpus import torch_threads

        torch_threads(threads)
    context = task.reward_context(Path(base_dir)) if callable(getattr(task, "reward_context", None)) else {}
    scorer = build_reward(reward, context=context)
    try:
        return {
            split: list(scorer(*task.reward_inputs(sample_files.read(Path(d))))) for split, d in samples_dirs.items()
        }
    finally:
        _close(scorer)


def samples_table(task: ModuleType, samples_dirs: Mapping[str, Path], n: int) -> str:
    """The task's markdown table of the first ``n`` samples of each model (label -> samples directory)."""
    return task.samples_table({label: sample_files.read(Path(d)) for label, d in samples_dirs.items()}, n)


def qualitative(task: ModuleType, samples_dirs: Mapping[str, Path], out_dir: Path, settings: dict[str, Any]) -> None:
    """The task's qualitative figures of θ0 and the chosen λ, into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task.qualitative({label: sample_files.read(Path(d)) for label, d in samples_dirs.items()}, out_dir, settings)


def fisher(
    task: ModuleType,
    base_dir: Path,
    expert_dir: Path,
    out_dir: Path,
    rewards: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
    data_seed: int | None = None,
) -> dict[str, Any]:
    """The expert's diagonal Fisher, saved under its checkpoint's file and tensor names (merge methods use it)."""
    from safetensors.torch import save_file

    weights = {r: 1.0 for r in rewards}
    expert = Run(Path(base_dir), Path(expert_dir), dict(rewards), weights, settings, seed, threads, data_seed)
    values = task.fisher(expert)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for file, tensors in values.items():
        (out_dir / file).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, out_dir / file, metadata={"format": "pt"})
    return {"files": sorted(values), "tensors": sum(len(t) for t in values.values())}
