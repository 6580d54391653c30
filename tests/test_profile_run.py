"""tools/profile-run.py on a hand-written run: the Snakemake log's jobs, the critical path, the job timing lines."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LOG = """\
Job stats:
job         count
--------  -------
pretrain        1
expert          2
score           1
total           4

[Tue Nov 24 01:00:00 2026]
localrule pretrain:
    output: results/t/pretrain/model, results/t/pretrain/metrics.json
    jobid: 1
    wildcards: task=t
[Tue Nov 24 01:01:40 2026]
Finished jobid: 1 (Rule: pretrain)
[Tue Nov 24 01:01:40 2026]
localrule expert:
    input: results/t/pretrain/model
    output: results/t/experts/a
    jobid: 2
    wildcards: task=t, reward=a
[Tue Nov 24 01:01:40 2026]
localrule expert:
    input: results/t/pretrain/model
    output: results/t/experts/b
    jobid: 3
    wildcards: task=t, reward=b
[Tue Nov 24 01:02:00 2026]
Finished jobid: 2 (Rule: expert)
[Tue Nov 24 01:02:30 2026]
Finished jobid: 3 (Rule: expert)
[Tue Nov 24 01:02:30 2026]
rule score:
    input: results/t/experts/a, results/t/pretrain/model
    output: results/t/scores/a.json
    jobid: 4
    wildcards: task=t, reward=a
[Tue Nov 24 01:02:35 2026]
Finished jobid: 4 (Rule: score)
"""


def _tool():
    spec = importlib.util.spec_from_file_location("profile_run", ROOT / "tools" / "profile-run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["profile_run"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_log_jobs_and_critical_path(tmp_path):
    tool = _tool()
    (tmp_path / "run.log").write_text(LOG)
    first, last, planned, jobs = tool.parse_log(tmp_path / "run.log")
    assert planned == 4 and (last - first).total_seconds() == 155
    assert {j.jobid: j.seconds for j in jobs} == {1: 100, 2: 20, 3: 50, 4: 5}
    # The score job waited for expert b (a core), but depends only on expert a and θ0:
    # the path through its inputs is 100 + 20 + 5, and through b it is 100 + 50.
    chain = tool.critical_path(jobs)
    assert [j.jobid for j in chain] == [1, 3]
    assert sum(j.seconds for j in chain) == 150


def test_report_reads_benchmarks_logs_and_the_recorded_totals(tmp_path, capsys):
    tool = _tool()
    (tmp_path / ".snakemake" / "log").mkdir(parents=True)
    (tmp_path / ".snakemake" / "log" / "2026-11-24T010000.snakemake.log").write_text(LOG)
    bench = tmp_path / "benchmarks" / "t" / "experts"
    bench.mkdir(parents=True)
    (bench / "a.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n20.0\t0:00:20\t100\t19.0\n")
    (tmp_path / "benchmarks" / "run.json").write_text(json.dumps({"wall": 160.0, "cpu": 30.0}))
    log = tmp_path / "logs" / "t" / "experts" / "a.log"
    log.parent.mkdir(parents=True)
    timing = {"startup_cpu": 0.5, "work_cpu": 18.0, "children_cpu": 0.0, "heavy_modules": []}
    log.write_text(f"2026-11-24 01:01:41 INFO rewarded_soups: {tool.TIMING_PREFIX}{json.dumps(timing)}\n")
    assert tool.report(tmp_path, measure_imports=False) == 0
    out = capsys.readouterr().out
    assert "155 s from first to last entry, 4 of 4 jobs finished" in out
    assert "jobs 19 s, so Snakemake itself and the shared servers' start-up 11 s" in out
    assert "Critical path: 150 s over 2 jobs" in out
    row = next(line for line in out.splitlines() if line.startswith("t ") and " experts " in line and "0.5" in line)
    assert row.split()[2:] == ["1", "0.5", "0.0", "0.0", "18.0"]


def test_the_prefix_is_the_one_jobs_write():
    from rewarded_soups.workflow import TIMING_PREFIX

    assert _tool().TIMING_PREFIX == TIMING_PREFIX


def test_record_counts_the_cpu_of_processes_a_job_detached(tmp_path):
    # A job that starts a detached process (as the shared METEOR service is) and exits at once: the
    # detached process's second of CPU still belongs to the run.
    spinner = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\n"
    job = f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {spinner!r}], start_new_session=True)\n"
    # In its own process: the recorder becomes the subreaper of everything below it.
    tool = [sys.executable, str(ROOT / "tools" / "profile-run.py"), "--record", str(tmp_path), "--"]
    subprocess.run([*tool, sys.executable, "-c", job], check=True)
    run = json.loads((tmp_path / "benchmarks" / "run.json").read_text())
    assert run["cpu"] >= 1.0 and "note" not in run
