"""The warm job server: a job's script runs in a fork that already has torch, with the job's own everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rewarded_soups import jobserver, services

ROOT = Path(__file__).resolve().parent.parent

# What Snakemake's script preamble does, in short: a `snakemake` object with Namedlists, then the script.
DRIVER = textwrap.dedent(
    """
    import os, sys
    from snakemake.iocontainers import Namedlist

    def named(items, **names):
        value = Namedlist(items)
        for name, index in names.items():
            value._set_name(name, index)
        return value

    class Smk:
        input = named(["in.txt"], data=0)
        output = named(["out.json"])
        params = named([{"a": [1, 2]}, 7], settings=0, seed=1)
        wildcards = named(["m1"], model=0)
        log = named([])
        resources = named([int(os.environ.get("DRIVER_GPUS", "0"))], gpu=0)
        threads = 1
        rule = "demo"
        scriptdir = sys.argv[1]
        config = {}

    snakemake = Smk()
    exec(open(sys.argv[1] + "/job.py").read())
    """
)

JOB = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {root!r})
    from rewarded_soups.jobserver import run_warm

    torch_was_there = "torch" in sys.modules
    run_warm(snakemake, "job.py")
    import rewarded_soups.grid

    print("hello from the job", flush=True)
    with open(snakemake.output[0], "w") as fh:
        json.dump({{
            "pid": os.getpid(),
            "torch_before_import": torch_was_there or "torch" in sys.modules,
            "input": snakemake.input.data,
            "settings": snakemake.params.settings,
            "seed": snakemake.params.seed,
            "model": snakemake.wildcards.model,
            "cwd": os.getcwd(),
            "marker": os.environ.get("JOB_MARKER"),
            "grid_file": rewarded_soups.grid.__file__,
            "frozen_objects": __import__("gc").get_freeze_count(),
        }}, fh)
    mode = open("mode").read() if os.path.exists("mode") else ""
    if mode == "fail":
        raise ValueError("the job failed on purpose")
    if mode == "sleep":
        import subprocess, time
        child = subprocess.Popen(["sleep", "120"])  # what a job starts (Java, a tokenizer's workers) goes too
        open("sleeping", "w").write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(120)
    """
)


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("job")
    (directory / "driver.py").write_text(DRIVER)
    (directory / "job.py").write_text(JOB.format(root=str(ROOT)))
    (directory / "in.txt").write_text("x")
    sockets = tmp_path_factory.mktemp("sockets")
    sockets.chmod(0o700)
    env = {**os.environ, services.SOCKET_DIR_ENV: str(sockets), "JOB_MARKER": "from the job"}
    for name in jobserver.SCHEDULER_ENV:
        env.pop(name, None)
    env[jobserver.ENABLE_ENV] = "1"  # what the Snakefile sets when the config asks for warm jobs
    yield directory, env
    old = os.environ.get(services.SOCKET_DIR_ENV)
    os.environ[services.SOCKET_DIR_ENV] = str(sockets)
    try:
        services.stop_all()
    finally:
        os.environ.pop(services.SOCKET_DIR_ENV) if old is None else os.environ.update({services.SOCKET_DIR_ENV: old})


def drive(job_dir, env, **kwargs):
    directory, _ = job_dir
    return subprocess.Popen(
        [sys.executable, str(directory / "driver.py"), str(directory)],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_a_job_runs_in_a_warm_fork_with_its_own_inputs_environment_and_code(job_dir):
    directory, env = job_dir
    process = drive(job_dir, env)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    result = json.loads((directory / "out.json").read_text())
    assert result["pid"] != process.pid  # the work ran in the server's fork ...
    assert result["torch_before_import"] is True  # ... which had torch imported before the script ran
    assert result["input"] == "in.txt" and result["settings"] == {"a": [1, 2]} and result["seed"] == 7
    assert result["model"] == "m1" and result["cwd"] == str(directory) and result["marker"] == "from the job"
    assert result["grid_file"] == str(ROOT / "rewarded_soups" / "grid.py")  # the job's package, imported afresh
    assert "hello from the job" in out  # the fork wrote to the job's own stdout
    # The libraries' objects are out of the garbage collector's sight (else every full collection scans them).
    assert result["frozen_objects"] > 100_000

    # A second job is another fork of the same server; a failure is the job's exit status, its traceback on
    # the job's stderr.
    (directory / "mode").write_text("fail")
    failing = drive(job_dir, env)
    _, err = failing.communicate(timeout=300)
    (directory / "mode").unlink()
    assert failing.returncode == 1 and "ValueError: the job failed on purpose" in err
    (log,) = Path(env[services.SOCKET_DIR_ENV]).glob("jobs-*.log")
    assert log.read_text().count("ready on") == 1


def _sleeping_job(job_dir, env, process):
    """Wait until the job's script sleeps; its pid and its child's."""
    directory, _ = job_dir
    deadline = time.monotonic() + 300
    while not (directory / "sleeping").exists() or len((directory / "sleeping").read_text().split()) < 2:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    (directory / "mode").unlink()
    script, child = map(int, (directory / "sleeping").read_text().split())
    return script, child


def _gone(*pids: int, what: str) -> None:
    deadline = time.monotonic() + 30
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
            assert time.monotonic() < deadline, f"{what} (pid {pid}) is still running"
            time.sleep(0.1)


def test_killing_the_job_stops_its_fork_and_what_the_fork_started(job_dir):
    directory, env = job_dir
    (directory / "sleeping").unlink(missing_ok=True)
    (directory / "mode").write_text("sleep")
    process = drive(job_dir, env)
    fork, child = _sleeping_job(job_dir, env, process)
    assert fork != process.pid
    process.send_signal(signal.SIGKILL)  # as Snakemake's --kill or a failed sibling job would
    process.wait()
    _gone(fork, child, what="the fork or its child outlived the job")


@pytest.mark.parametrize("warm", [True, False])
def test_when_snakemake_dies_its_jobs_die_with_it(job_dir, warm):
    """SIGKILL of the job's parent (Snakemake) takes the job, its warm fork and their children down."""
    directory, env = job_dir
    for stale in ("sleeping", "job.pid"):
        (directory / stale).unlink(missing_ok=True)
    (directory / "mode").write_text("sleep")
    env = {**env, jobserver.ENABLE_ENV: "1" if warm else "0"}
    # The driver's parent stands for Snakemake: a shell that waits for it.
    parent = subprocess.Popen(
        ["sh", "-c", f"{sys.executable} {directory / 'driver.py'} {directory} & echo $! > job.pid; wait"],
        cwd=directory,
        env=env,
    )
    deadline = time.monotonic() + 30
    while not (directory / "job.pid").exists() or not (directory / "job.pid").read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job = int((directory / "job.pid").read_text())
    script, child = _sleeping_job(job_dir, env, parent)
    assert (script != job) is warm
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    _gone(job, script, child, what="a job process outlived Snakemake")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.parametrize(
    "setting",
    [{jobserver.ENABLE_ENV: "0"}, {jobserver.ENABLE_ENV: None}, {"SLURM_JOB_ID": "42"}, {"DRIVER_GPUS": "1"}],
    ids=["off", "not-asked-for", "under-slurm", "gpu-job"],
)
def test_off_unasked_under_a_cluster_scheduler_or_with_a_gpu_the_job_runs_in_its_own_process(job_dir, setting):
    directory, env = job_dir
    env = {k: v for k, v in {**env, **setting}.items() if v is not None}
    process = drive(job_dir, env)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert json.loads((directory / "out.json").read_text())["pid"] == process.pid


def test_a_job_started_as_snakemake_died_does_not_run_on(job_dir):
    """Snakemake's pid comes from the environment: a job that starts after its Snakemake is gone stops at once,
    where its parent would already be init (no parent to watch)."""
    directory, env = job_dir
    gone = subprocess.Popen(["true"])
    gone.wait()
    (directory / "mode").write_text("sleep")
    process = drive(job_dir, {**env, jobserver.SNAKEMAKE_PID_ENV: str(gone.pid)})
    try:
        process.wait(timeout=60)
    finally:
        (directory / "mode").unlink(missing_ok=True)
    assert process.returncode == -signal.SIGKILL
