"""One training stage of a tiny task in its own process, as a job would run it, for the kill-and-resume tests.

    python tests/resume_child.py KIND STAGE OUT CHECKPOINTS [--base DIR] [--every-steps N] [--kill-after-saves K]

STAGE is ``pretrain`` or ``finetune`` (from θ0 in ``--base``, on the task's
first reward). Training settings are tests/data/tiny.yaml's, with enough steps
for a few checkpoints. ``--kill-after-saves K``: the process SIGKILLs itself
right after its K-th checkpoint is on disk, as a kill mid-training would.
``--every-steps 0``: checkpointing off.
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# More steps than tiny.yaml's, so that a kill lands mid-training with checkpoints before and after it.
LONGER = {
    "text": {"pretrain": {"steps": 12}, "finetune": {"steps": 6}},
    "locomotion": {"pretrain": {"steps": 4096, "evals": 4}, "finetune": {"steps": 4096, "evals": 4}},
    "image": {"pretrain": {"steps": 8}, "finetune": {"steps": 6}},
    "captioning": {"pretrain": {"xent_steps": 6, "scst_steps": 6}, "finetune": {"steps": 6}},
    "grounding": {"pretrain": {"steps": 6}, "finetune": {"steps": 6}},
    "vqa": {"pretrain": {"steps": 6}, "finetune": {"steps": 6}},
}


def task_settings(kind: str, config_path: Path | None = None) -> dict:
    """tests/data/tiny.yaml's task with :data:`LONGER`'s steps; or, from ``config_path``, the task as configured."""
    from rewarded_soups.config import validate_config

    path = config_path or ROOT / "tests" / "data" / "tiny.yaml"
    config = validate_config(yaml.safe_load(path.read_text()))
    task = copy.deepcopy(config["tasks"][kind])
    if config_path is None:
        for stage, changes in LONGER[kind].items():
            task[stage].update(changes)
    return task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind")
    parser.add_argument("stage", choices=("pretrain", "finetune"))
    parser.add_argument("out", type=Path)
    parser.add_argument("checkpoints", type=Path)
    parser.add_argument("--base", type=Path)
    parser.add_argument("--every-steps", type=int, default=2)
    parser.add_argument("--kill-after-saves", type=int, default=0)
    parser.add_argument("--config", type=Path, help="a workflow config: its task as configured (tools/bench-resume.py)")
    args = parser.parse_args()

    import logging

    from rewarded_soups import resume, stages

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from rewarded_soups.registry import load_task

    if args.kill_after_saves:
        save = resume.Checkpoints.save
        trainer_saved = resume.Checkpoints.saved_now

        def die_after(checkpoints: resume.Checkpoints) -> None:
            if len(checkpoints.saves) >= args.kill_after_saves:
                os.kill(os.getpid(), signal.SIGKILL)

        def save_then_maybe_die(self, name, state):
            save(self, name, state)
            die_after(self)

        def trainer_saved_then_maybe_die(self, *args):
            trainer_saved(self, *args)
            die_after(self)

        resume.Checkpoints.save = save_then_maybe_die
        resume.Checkpoints.saved_now = trainer_saved_then_maybe_die

    task = task_settings(args.kind, args.config)
    module = load_task(task["kind"])
    settings = {"dir": str(args.checkpoints), "every_minutes": None, "every_steps": args.every_steps or None}
    params = {"kind": args.kind, "stage": args.stage}
    with resume.job(args.checkpoints, args.stage, args.kind, params, [str(args.out)], settings):
        if args.stage == "pretrain":
            stages.pretrain(module, args.out, task, seed=0, threads=1)
        else:
            reward = next(iter(task["rewards"]))
            rewards = {reward: task["rewards"][reward]}
            stages.finetune(module, args.base, args.out, rewards, {reward: 1.0}, task, seed=0, threads=1)


if __name__ == "__main__":
    main()
