"""What resuming saves, and what checkpointing costs, for every task's experts as the default config trains them.

    .venv/bin/python tools/bench-resume.py [--tasks text image ...] [--at 0.8] [--out docs/resume-bench.json]

Per task, from its shipped θ0, on the task's first reward, each in its own
process (tests/resume_child.py, as a job would run):

1. the expert uninterrupted, no checkpoints (T_full);
2. the same with one checkpoint at ``--at`` of its steps (PPO: the first
   evaluation epoch past it), killed with SIGKILL right after that checkpoint:
   the checkpoint's size and the seconds it took;
3. the rerun, which resumes from it (T_resume).

It prints the fraction of the training time a resume saves, 1 − T_resume / T_full
(startup and data preparation are in both), and whether the resumed expert equals
the uninterrupted one byte for byte.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHILD = ROOT / "tests" / "resume_child.py"
CONFIG = ROOT / "config.yaml"


def child(kind: str, out: Path, checkpoints: Path, base: Path, *extra: str) -> tuple[int, float, str]:
    args = [sys.executable, str(CHILD), kind, "finetune", str(out), str(checkpoints), "--base", str(base)]
    args += ["--config", str(CONFIG), *extra]
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - start
    if done.returncode not in (0, -9):
        sys.exit(f"{kind}: {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.returncode, seconds, done.stderr


def update_difference(full: Path, resumed: Path, base: Path) -> float | None:
    """||θ_resumed − θ_full|| / ||θ_full − θ0|| over the tensors θ0 has too: how far the resumed expert is from
    the uninterrupted one, as a fraction of what fine-tuning moved."""
    from safetensors.torch import load_file

    num = den = 0.0
    for file in sorted(p.relative_to(full) for p in full.rglob("*.safetensors")):
        if not (base / file).exists():
            return None
        a, b, zero = load_file(full / file), load_file(resumed / file), load_file(base / file)
        for name in a:
            if name in zero and a[name].is_floating_point():
                num += float((b[name].double() - a[name].double()).pow(2).sum())
                den += float((a[name].double() - zero[name].double()).pow(2).sum())
    return (num / den) ** 0.5 if den else None


def same_weights(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a) for p in a.rglob("*.safetensors"))
    return bool(names) and all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def bench(kind: str, at: float, scratch: Path) -> dict:
    from rewarded_soups import theta0
    from rewarded_soups.config import validate_config

    config = validate_config(yaml.safe_load(CONFIG.read_text()))
    task = config["tasks"][kind]
    base = scratch / kind / "base"
    theta0.install(theta0.resolve(task["theta0"], ROOT), base, scratch / kind / "base-metrics.json")
    steps = task["finetune"]["steps"]
    every = max(1, math.ceil(at * steps))
    if "evals" in task["finetune"]:
        # PPO checkpoints only at the end of one of its training epochs (brax runs evals − 1 after its first
        # evaluation): the last one before `at`.
        epochs = max(task["finetune"]["evals"] - 1, 1)
        every = max(1, steps * math.floor(at * epochs) // epochs)

    _, wall_full, _ = child(kind, scratch / kind / "full", scratch / kind / "off", base, "--every-steps", "0")
    checkpoints = scratch / kind / "checkpoints"
    code, wall_killed, killed_log = child(
        kind, scratch / kind / "resumed", checkpoints, base, "--every-steps", str(every), "--kill-after-saves", "1"
    )
    if code != -9:
        sys.exit(f"{kind}: no checkpoint was taken before the end ({steps} steps, one every {every})")
    sizes = [f.stat().st_size for f in checkpoints.rglob("*") if f.is_file() and f.name != "job.json"]
    # The same checkpoint settings as the killed run (no further checkpoint falls within the remaining steps).
    resumed_dir = scratch / kind / "resumed"
    _, wall_resumed, resumed_log = child(kind, resumed_dir, checkpoints, base, "--every-steps", str(every))
    if "resum" not in resumed_log:
        sys.exit(f"{kind}: the rerun did not resume:\n{resumed_log[-3000:]}")
    return {
        "task": kind,
        "steps": steps,
        "checkpoint_at_step": every,
        "full_seconds": round(wall_full, 1),
        "killed_after_seconds": round(wall_killed, 1),
        "resumed_seconds": round(wall_resumed, 1),
        "saved_fraction": round(1 - wall_resumed / wall_full, 3),
        "checkpoint_mb": round(sum(sizes) / 1e6, 2),
        "identical": same_weights(scratch / kind / "full", resumed_dir),
        "difference": update_difference(scratch / kind / "full", resumed_dir, base),
        "checkpoint_seconds": [float(s) for s in re.findall(r"checkpoint .*?MB in ([0-9.]+) s", killed_log)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["text", "image", "captioning", "grounding", "vqa", "locomotion"])
    parser.add_argument("--at", type=float, default=0.8, help="where the kill lands, as a fraction of the steps")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here too")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for kind in args.tasks:
            row = bench(kind, args.at, Path(scratch))
            rows.append(row)
            print(
                f"{kind:11s} {row['steps']:>7d} steps, checkpoint at {row['checkpoint_at_step']:>7d}: "
                f"full {row['full_seconds']:7.1f} s, resumed {row['resumed_seconds']:7.1f} s, "
                f"saved {100 * row['saved_fraction']:5.1f}%, checkpoint {row['checkpoint_mb']:7.2f} MB "
                f"in {', '.join(f'{t:.3f}' for t in row['checkpoint_seconds'])} s, "
                f"identical {row['identical']}"
                + ("" if row["identical"] else f" (difference {row['difference']:.3g} of the fine-tuning update)"),
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
