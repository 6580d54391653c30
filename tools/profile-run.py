#!/usr/bin/env python3
"""Per-stage times of a finished run, from Snakemake's benchmark files.

    python tools/profile-run.py [WORKDIR]

Reads WORKDIR/benchmarks/<task>/**.tsv (one per job: wall seconds, CPU seconds,
peak RSS) and prints, per task and rule, the number of jobs, their summed and
largest wall time, their CPU time and the largest peak RSS; then each task's
total. Where a run's train_metrics.json records ``peak_gpu_memory_gb`` (the
text task's fine-tuning on a GPU), the largest is printed too.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path


def _rule_of(path: Path, task_dir: Path) -> str:
    """benchmarks/<task>/experts/x.tsv -> experts; benchmarks/<task>/figures_png.tsv -> figures."""
    parts = path.relative_to(task_dir).parts
    if len(parts) > 1:
        return parts[0]
    stem = path.stem
    for fmt in ("_png", "_pdf", "_svg"):
        stem = stem.removesuffix(fmt)
    return stem


def profile(workdir: Path) -> list[dict]:
    rows = []
    for task_dir in sorted(p for p in (workdir / "benchmarks").iterdir() if p.is_dir()):
        stats: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "wall": 0.0, "max_wall": 0.0, "cpu": 0.0, "rss": 0.0})
        for tsv in sorted(task_dir.rglob("*.tsv")):
            with open(tsv) as fh:
                for record in csv.DictReader(fh, delimiter="\t"):
                    s = stats[_rule_of(tsv, task_dir)]
                    wall = float(record["s"])
                    s["jobs"] += 1
                    s["wall"] += wall
                    s["max_wall"] = max(s["max_wall"], wall)
                    s["cpu"] += float(record.get("cpu_time") or 0)
                    s["rss"] = max(s["rss"], float(record.get("max_rss") or 0))
        rows += [{"task": task_dir.name, "rule": rule, **s} for rule, s in sorted(stats.items())]
    return rows


def peak_gpu_memory(workdir: Path) -> dict[str, float]:
    peaks: dict[str, float] = {}
    for metrics in (workdir / "results").glob("*/*/*/train_metrics.json"):
        value = json.loads(metrics.read_text()).get("peak_gpu_memory_gb")
        if value is not None:
            task = metrics.relative_to(workdir / "results").parts[0]
            peaks[task] = max(peaks.get(task, 0.0), float(value))
    return peaks


def main(argv: list[str]) -> int:
    workdir = Path(argv[1]) if len(argv) > 1 else Path(".")
    if not (workdir / "benchmarks").is_dir():
        print(f"no benchmarks/ under {workdir}: give the directory a run wrote (snakemake --directory)")
        return 2
    rows = profile(workdir)
    print(f"{'task':<12} {'rule':<16} {'jobs':>5} {'wall s':>9} {'max s':>8} {'cpu s':>9} {'peak RSS MB':>12}")
    for r in rows:
        print(
            f"{r['task']:<12} {r['rule']:<16} {r['jobs']:>5} {r['wall']:>9.1f} {r['max_wall']:>8.1f} "
            f"{r['cpu']:>9.1f} {r['rss']:>12.0f}"
        )
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for r in rows:
        totals[r["task"]][0] += r["jobs"]
        totals[r["task"]][1] += r["wall"]
        totals[r["task"]][2] += r["cpu"]
    for task, (jobs, wall, cpu) in totals.items():
        print(f"{task:<12} {'(all)':<16} {jobs:>5.0f} {wall:>9.1f} {'':>8} {cpu:>9.1f}")
    for task, gb in peak_gpu_memory(workdir).items():
        print(f"{task}: peak GPU memory in fine-tuning {gb:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
