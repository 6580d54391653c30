#!/usr/bin/env python3
"""Where a run's time went: per stage, on the critical path, and outside the jobs' own work.

    python tools/profile-run.py [WORKDIR]              # report on a finished (or stopped) run
    python tools/profile-run.py --record WORKDIR -- snakemake ...   # run it, recording its totals

Reads, under WORKDIR (the directory Snakemake ran in, ``--directory``):

* ``benchmarks/<task>/**.tsv``: one per job (wall and CPU seconds, peak RSS);
* the newest ``.snakemake/log/*.snakemake.log``: when each job started and
  finished and which files it read and wrote, hence the run's wall time, its
  job count and its critical path (the chain of dependent jobs with the
  largest summed duration: the wall time the run would take on unlimited
  cores);
* ``logs/**.log``: the timing line every job writes (``rewarded_soups.workflow``):
  CPU spent before the job's work (interpreter, Snakemake's script preamble,
  imports), in its work, and in its child processes (METEOR's Java), and the
  heavy libraries it imported (whose import cost is measured here, once per
  set of libraries, in a fresh interpreter);
* ``benchmarks/run.json`` (written by ``--record``): the wall time and the
  CPU time of Snakemake and all its jobs, so that the scheduler's own CPU is
  the difference.

Where a run's train_metrics.json records ``peak_gpu_memory_gb`` (fine-tuning
on a GPU), the largest is printed too.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

TIMING_PREFIX = "job timing: "  # rewarded_soups.workflow.TIMING_PREFIX (not imported: runs without the package)
_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_RULE = re.compile(r"^(?:local)?(?:checkpoint|rule) (\w+):$")
_FINISHED = re.compile(r"^Finished jobid: (\d+)")


def _rule_of(path: Path, task_dir: Path) -> str:
    """benchmarks/<task>/experts/x.tsv -> experts; benchmarks/<task>/figures_png.tsv -> figures."""
    parts = path.relative_to(task_dir).parts
    if len(parts) > 1:
        return parts[0]
    stem = path.stem
    return "figures" if stem.startswith("figures_") else stem  # figures_<pair>_<fmt>


def _timing_line(log: Path) -> dict | None:
    """The last timing line of a job's log (its final attempt), or None."""
    if not log.is_file():
        return None
    lines = [line for line in log.read_text(errors="replace").splitlines() if TIMING_PREFIX in line]
    return json.loads(lines[-1].split(TIMING_PREFIX, 1)[1]) if lines else None


def _fork_usage(tsv: Path, workdir: Path) -> tuple[float, float]:
    """CPU seconds and peak RSS (MB) of a job that ran in a fork of the warm job server, which Snakemake's
    benchmark (the job's own process tree: the waiting process) does not see: from the job's timing line
    (logs/<same path>.log). (0, 0) for a job that ran in its own process."""
    relative = tsv.relative_to(workdir / "benchmarks").with_suffix(".log")
    record = _timing_line(workdir / "logs" / relative)
    if record is None or "warm" not in record or not record["warm"]:
        return 0.0, 0.0
    cpu = record["startup_cpu"] + record["work_cpu"] + record["children_cpu"]
    return cpu, float(record.get("peak_rss_mb") or 0.0)


def profile(workdir: Path) -> list[dict]:
    """Per task and benchmark folder: jobs, summed and largest wall time, CPU time, largest peak RSS."""
    rows = []
    for task_dir in sorted(p for p in (workdir / "benchmarks").iterdir() if p.is_dir()):
        stats: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "wall": 0.0, "max_wall": 0.0, "cpu": 0.0, "rss": 0.0})
        for tsv in sorted(task_dir.rglob("*.tsv")):
            fork_cpu, fork_rss = _fork_usage(tsv, workdir)
            with open(tsv) as fh:
                for record in csv.DictReader(fh, delimiter="\t"):
                    s = stats[_rule_of(tsv, task_dir)]
                    wall = float(record["s"])
                    s["jobs"] += 1
                    s["wall"] += wall
                    s["max_wall"] = max(s["max_wall"], wall)
                    s["cpu"] += float(record.get("cpu_time") or 0) + fork_cpu
                    s["rss"] = max(s["rss"], float(record.get("max_rss") or 0), fork_rss)
        rows += [{"task": task_dir.name, "rule": rule, **s} for rule, s in sorted(stats.items())]
    return rows


@dataclass
class Job:
    jobid: int
    rule: str
    start: datetime
    end: datetime | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    wildcards: str = ""

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds() if self.end else 0.0


def parse_log(path: Path) -> tuple[datetime | None, datetime | None, int | None, list[Job]]:
    """First and last timestamp, the planned job count ('total' of Job stats) and every started job."""
    jobs: dict[int, Job] = {}
    first = last = None
    planned = None
    current: Job | None = None
    now: datetime | None = None
    for line in path.read_text(errors="replace").splitlines():
        if (m := _STAMP.match(line)) is not None:
            now = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            first = first or now
            last = now
            current = None
        elif (m := _RULE.match(line)) is not None and now is not None:
            current = Job(jobid=-1, rule=m.group(1), start=now)
        elif current is not None and line.startswith("    ") and ": " in line:
            key, _, value = line.strip().partition(": ")
            if key == "jobid":
                current.jobid = int(value)
                jobs[current.jobid] = current
            elif key in ("input", "output"):
                getattr(current, f"{key}s").extend(v.strip() for v in value.split(","))
            elif key == "wildcards":
                current.wildcards = value
        elif (m := _FINISHED.match(line)) is not None and int(m.group(1)) in jobs:
            jobs[int(m.group(1))].end = now
        elif planned is None and line.startswith("total "):
            planned = int(line.split()[-1])
    return first, last, planned, list(jobs.values())


def critical_path(jobs: list[Job]) -> list[Job]:
    """The chain of finished jobs, each reading an output of the previous one, with the largest summed time."""
    finished = sorted((j for j in jobs if j.end is not None), key=lambda j: (j.start, j.jobid))
    producer = {out: job for job in finished for out in job.outputs}
    best: dict[int, tuple[float, Job | None]] = {}
    for job in finished:  # a job starts after its inputs' producers end: start order is topological
        parents = [producer[i] for i in job.inputs if i in producer and producer[i].jobid in best]
        parent = max(parents, key=lambda p: best[p.jobid][0], default=None)
        best[job.jobid] = (job.seconds + (best[parent.jobid][0] if parent else 0.0), parent)
    if not best:
        return []
    end = max(finished, key=lambda j: best[j.jobid][0])
    chain: list[Job] = []
    node: Job | None = end
    while node is not None:
        chain.append(node)
        node = best[node.jobid][1]
    return chain[::-1]


def job_timings(workdir: Path) -> list[dict]:
    """The timing line of every job log under logs/ (the last one of a log: its final attempt)."""
    timings = []
    for log in sorted((workdir / "logs").rglob("*.log")):
        record = _timing_line(log)
        if record is not None:
            parts = log.relative_to(workdir / "logs").parts
            record["task"] = parts[0]
            record["stage"] = parts[1] if len(parts) > 2 else Path(parts[1]).stem
            timings.append(record)
    return timings


def import_cost(modules: tuple[str, ...]) -> float:
    """CPU seconds to import ``modules`` in a fresh interpreter that has imported numpy (as every job has)."""
    if not modules:
        return 0.0
    code = (
        "import time, numpy; t = time.process_time(); "
        + "; ".join(f"import {m}" for m in modules)
        + "; print(time.process_time() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    # Some imports print to stdout themselves (brax: "Failed to import warp"): the number is the last line.
    lines = out.stdout.strip().splitlines()
    try:
        return float(lines[-1]) if out.returncode == 0 and lines else float("nan")
    except ValueError:
        return float("nan")


def peak_gpu_memory(workdir: Path) -> dict[str, float]:
    peaks: dict[str, float] = {}
    for metrics in (workdir / "results").glob("*/*/*/train_metrics.json"):
        value = json.loads(metrics.read_text()).get("peak_gpu_memory_gb")
        if value is not None:
            task = metrics.relative_to(workdir / "results").parts[0]
            peaks[task] = max(peaks.get(task, 0.0), float(value))
    return peaks


def _adopt_orphans() -> bool:
    """Become the subreaper of the run (Linux): processes a job detached (a shared service) are reaped here."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _reap_orphans(seconds: float = 120.0) -> int:
    """Wait for adopted processes (the workflow's onsuccess stopped its services); how many are left."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return 0
        if pid == 0:
            time.sleep(0.2)
    return len([p for p in Path("/proc").glob("[0-9]*") if _parent(p) == os.getpid()])


def _parent(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def record(workdir: Path, command: list[str]) -> int:
    """Run ``command``; write its wall time and its and its descendants' CPU time to benchmarks/run.json.

    Processes that jobs detach (the shared METEOR service) are adopted and reaped, so that their CPU
    time is counted too.
    """
    t0 = time.time()
    adopted = _adopt_orphans()
    rc = subprocess.call(command)
    wall = time.time() - t0
    left = _reap_orphans() if adopted else 0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = workdir / "benchmarks" / "run.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {"command": command, "returncode": rc, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime}
    if not adopted:
        data["note"] = "detached processes (shared services) not counted: no PR_SET_CHILD_SUBREAPER here"
    elif left:
        data["note"] = f"{left} detached processes still running after the run: their CPU time is not counted"
    out.write_text(json.dumps(data, indent=2) + "\n")
    return rc


def report(workdir: Path, measure_imports: bool = True) -> int:
    if not (workdir / "benchmarks").is_dir():
        print(f"no benchmarks/ under {workdir}: give the directory a run wrote (snakemake --directory)")
        return 2
    rows = profile(workdir)
    job_cpu = sum(r["cpu"] for r in rows)
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    if logs:
        first, last, planned, jobs = parse_log(logs[-1])
        done = sum(j.end is not None for j in jobs)
        wall = (last - first).total_seconds() if first and last else 0.0
        print(
            f"Snakemake log {logs[-1].name}: {wall:.0f} s from first to last entry, {done} of {planned} jobs finished"
        )
    else:
        jobs = []
        print("no Snakemake log under .snakemake/log: no wall time, job count or critical path")
    run_file = workdir / "benchmarks" / "run.json"
    if run_file.is_file():
        run = json.loads(run_file.read_text())
        print(
            f"Recorded run: {run['wall']:.0f} s wall, {run['cpu']:.0f} s CPU in all; "
            f"jobs {job_cpu:.0f} s, so Snakemake itself and the shared servers' start-up "
            f"{run['cpu'] - job_cpu:.0f} s (the warm job server imports torch & co. once, about 8 s; METEOR's "
            "Java loads once, about 10 s)"
        )
    print(f"\nPer stage ({len(rows)} rows; wall and CPU seconds summed over jobs)")
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
    for task, (n, wall, cpu) in totals.items():
        print(f"{task:<12} {'(all)':<16} {n:>5.0f} {wall:>9.1f} {'':>8} {cpu:>9.1f}")
    print(
        f"{'(all)':<12} {'':<16} {sum(r['jobs'] for r in rows):>5} {sum(r['wall'] for r in rows):>9.1f} "
        f"{'':>8} {job_cpu:>9.1f}"
    )

    chain = critical_path(jobs)
    if chain:
        print(f"\nCritical path: {sum(j.seconds for j in chain):.0f} s over {len(chain)} jobs")
        for j in chain:
            print(f"  {j.seconds:>6.0f} s  {j.rule:<14} {j.wildcards}")

    timings = job_timings(workdir)
    if timings:
        by_stage: dict[tuple[str, str], dict] = defaultdict(
            lambda: {"jobs": 0, "startup": 0.0, "imports": 0.0, "children": 0.0, "work": 0.0}
        )
        costs: dict[tuple[str, ...], float] = {}
        for t in timings:
            modules = tuple(t["heavy_modules"])
            if measure_imports and modules not in costs:
                costs[modules] = import_cost(modules)
            s = by_stage[(t["task"], t["stage"])]
            # A module the script imported at its top is in startup already: never count more than the work.
            imports = min(costs.get(modules, 0.0), t["work_cpu"])
            s["jobs"] += 1
            s["startup"] += t["startup_cpu"]
            s["imports"] += imports
            s["children"] += t["children_cpu"]
            s["work"] += t["work_cpu"] - imports
        print("\nCPU seconds outside the jobs' own work (from each job's timing line)")
        print("  startup: interpreter, Snakemake's script preamble, the script's imports (a warm fork: from the fork)")
        print(
            "  imports: heavy libraries the job imported later, not those a warm fork had ("
            + ("measured once per set in a fresh interpreter" if measure_imports else "not measured: --no-imports")
            + ")"
        )
        print("  children: child processes (METEOR's Java)")
        print(f"{'task':<12} {'stage':<16} {'jobs':>5} {'startup':>9} {'imports':>9} {'children':>9} {'work':>9}")
        for (task, stage), s in sorted(by_stage.items()):
            print(
                f"{task:<12} {stage:<16} {s['jobs']:>5} {s['startup']:>9.1f} {s['imports']:>9.1f} "
                f"{s['children']:>9.1f} {s['work']:>9.1f}"
            )
        total = {k: sum(s[k] for s in by_stage.values()) for k in ("startup", "imports", "children", "work")}
        print(
            f"{'(all)':<12} {'':<16} {len(timings):>5} {total['startup']:>9.1f} {total['imports']:>9.1f} "
            f"{total['children']:>9.1f} {total['work']:>9.1f}"
        )
        for modules, cost in sorted(costs.items(), key=lambda kv: -kv[1]):
            if modules:
                print(f"  import {', '.join(modules)}: {cost:.2f} s CPU")
    for task, gb in peak_gpu_memory(workdir).items():
        print(f"{task}: peak GPU memory in fine-tuning {gb:.2f} GB")
    return 0


def main(argv: list[str]) -> int:
    if "--record" in argv:
        i = argv.index("--record")
        if "--" not in argv[i:] or i + 1 >= len(argv):
            print("usage: profile-run.py --record WORKDIR -- COMMAND ...")
            return 2
        return record(Path(argv[i + 1]), argv[argv.index("--") + 1 :])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", nargs="?", default=".", type=Path)
    parser.add_argument("--no-imports", action="store_true", help="do not measure the heavy libraries' import cost")
    args = parser.parse_args(argv[1:])
    return report(args.workdir, measure_imports=not args.no_imports)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
