"""Shipped θ0s: a task starts from a θ0 made once by this workflow's own pretrain job, instead of training it.

The paper starts from a pre-trained model it did not train. A task's
``theta0: DIR`` names a directory written by ``tools/ship-theta0.py`` from a
finished run: ``model/`` (the pretrain job's output), ``metrics.json`` and
``made_by.json`` (the pretrain settings and seed it was trained with, the
digest of the code that trained it, the command that made it). The pretrain
job then copies it (seconds) instead of training. Its settings must equal the
config's, so a shipped θ0 is exactly what ``theta0: null`` would train: a
config that changes ``data`` or ``pretrain`` is refused before any job, with
the keys that differ and the switch to train from scratch.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

MADE_BY = "made_by.json"
MODEL_DIR = "model"
METRICS = "metrics.json"
FROM_SCRATCH = "theta0: null (or snakemake --configfile config/from-scratch.yaml) to pre-train with your settings"


def resolve(value: str, basedir: Path) -> Path:
    """``theta0``'s directory: relative paths are relative to the workflow (where the Snakefile is)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(basedir) / path


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: value}


def differences(made_with: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """``key: shipped X, config Y`` for every setting that differs (missing keys shown as absent)."""
    shipped, wanted = _flatten(made_with), _flatten(config)
    return [
        f"{key}: shipped {shipped.get(key, '(absent)')!r}, config {wanted.get(key, '(absent)')!r}"
        for key in sorted(set(shipped) | set(wanted))
        if shipped.get(key, "(absent)") != wanted.get(key, "(absent)")
    ]


def check(directory: Path, *, where: str, kind: str, settings: dict[str, Any], seed: int, code: str) -> list[str]:
    """Refuse a shipped θ0 that is not what this config would train (ValueError); return warnings."""
    made_by_file = directory / MADE_BY
    if not made_by_file.exists() or not (directory / MODEL_DIR).is_dir():
        raise ValueError(
            f"{where}.theta0: {directory} is not a shipped θ0 (it needs {MODEL_DIR}/ and {MADE_BY}, written by "
            f"tools/ship-theta0.py); set {FROM_SCRATCH}"
        )
    made_by = json.loads(made_by_file.read_text())
    if made_by["kind"] != kind:
        raise ValueError(f"{where}.theta0: {directory} holds a θ0 of task kind {made_by['kind']!r}, not {kind!r}")
    found = differences(made_by["settings"], settings)
    if made_by["seed"] != seed:
        found.insert(0, f"seed: shipped {made_by['seed']}, config {seed}")
    if found:
        shown = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
        raise ValueError(f"{where}.theta0: {directory} was trained with other settings ({shown}); set {FROM_SCRATCH}")
    if made_by.get("code") != code:
        return [
            f"{where}.theta0: {directory} was trained by other pretrain code (or other versions of the libraries it "
            "imports) than this checkout's; its results may differ from training from scratch (remake it with "
            "tools/ship-theta0.py)"
        ]
    return []


def install(directory: Path, model_out: Path, metrics_out: Path) -> dict[str, Any]:
    """Copy a shipped θ0 into the pretrain job's outputs; return its metrics (``seconds`` = this copy's)."""
    started = time.time()
    shutil.copytree(directory / MODEL_DIR, model_out, ignore=shutil.ignore_patterns(".*"))
    metrics = json.loads((directory / METRICS).read_text())
    metrics |= {
        "shipped_from": str(directory),
        "trained_seconds": metrics.get("seconds"),
        "seconds": time.time() - started,
    }
    Path(metrics_out).write_text(json.dumps(metrics, indent=1))
    return metrics


def ship(
    model_dir: Path,
    metrics_file: Path,
    out: Path,
    *,
    kind: str,
    settings: dict[str, Any],
    seed: int,
    code: str,
    command: str,
    task_config: dict[str, Any],
) -> None:
    """Write ``out`` (model/, metrics.json, made_by.json) from a finished run's pretrain outputs."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(model_dir, out / MODEL_DIR, ignore=shutil.ignore_patterns(".*"))
    shutil.copy(metrics_file, out / METRICS)
    made_by = {
        "kind": kind,
        "seed": seed,
        "settings": settings,
        "code": code,
        "command": command,
        "task_config": task_config,
    }
    (out / MADE_BY).write_text(json.dumps(made_by, indent=1, sort_keys=True) + "\n")
