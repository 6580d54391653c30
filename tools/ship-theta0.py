#!/usr/bin/env python3
"""Ship a finished run's θ0 so that a config can start from it (``theta0: DIR``) instead of training it.

    python tools/ship-theta0.py --run WORKDIR --task NAME [--config CONFIG] [--out theta0/NAME]

WORKDIR is the directory a run wrote results/ in; CONFIG the config it ran
(default WORKDIR/config.yaml, else this checkout's config.yaml); the task's
θ0 must be pre-trained there (theta0: null). Writes OUT/model/ (the pretrain
job's output), OUT/metrics.json and OUT/made_by.json: the pretrain settings
and seed (a config using OUT must have the same), the digest of the code
that trained it, this command, and the task's config.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rewarded_soups import plan, stages, theta0  # noqa: E402
from rewarded_soups.config import validate_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the run's working directory (holds results/)")
    parser.add_argument("--task", required=True)
    parser.add_argument("--config", type=Path, help="the config that run used")
    parser.add_argument("--out", type=Path, help="default theta0/TASK in this checkout")
    args = parser.parse_args(argv)
    config_file = args.config or next(
        (p for p in (args.run / "config.yaml", ROOT / "config.yaml") if p.exists()), ROOT / "config.yaml"
    )
    config = validate_config(yaml.safe_load(config_file.read_text()))
    task = config["tasks"].get(args.task)
    if task is None:
        print(f"{config_file} has no task {args.task!r}; tasks: {sorted(config['tasks'])}", file=sys.stderr)
        return 2
    if task["theta0"]:
        print(f"task {args.task} starts from a shipped θ0 ({task['theta0']}) in {config_file}", file=sys.stderr)
        return 2
    pretrain = args.run / "results" / args.task / "pretrain"
    if not (pretrain / "model").is_dir() or not (pretrain / "metrics.json").exists():
        print(f"{pretrain} holds no finished θ0 (model/ and metrics.json)", file=sys.stderr)
        return 2
    out = args.out or ROOT / "theta0" / args.task
    theta0.ship(
        pretrain / "model",
        pretrain / "metrics.json",
        out,
        kind=task["kind"],
        settings=plan.canonical(plan.stage_settings(task, "pretrain")),
        seed=config["seed"],
        code=stages.code_digest(task["kind"], "pretrain"),
        command=shlex.join(["python", "tools/ship-theta0.py", *(argv if argv is not None else sys.argv[1:])]),
        task_config=task,
    )
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"shipped {pretrain} to {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
