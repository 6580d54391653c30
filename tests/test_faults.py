"""Faults mid-run, end to end through Snakemake: SIGKILL of a training job, of Snakemake itself, of the warm job
server and of the METEOR service. After each the rerun completes, training resumes where it was, nothing that
was already computed is computed again, and the scores equal an uninterrupted run's."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def config_of(task: str, tmp: Path) -> Path:
    """tests/data/tiny.yaml's task alone, its expert trained long enough (text) to be killed mid-training."""
    data = yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text())
    data["tasks"] = {task: data["tasks"][task]}
    if task == "text":
        data["tasks"]["text"]["finetune"]["steps"] = 300
    data["checkpoint"] = {"every_minutes": None, "every_steps": 10}
    path = tmp / f"{task}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def start(workdir: Path, config: Path, sockets: Path) -> subprocess.Popen:
    """Snakemake on ``config`` in ``workdir`` (the default profile: warm jobs on), its output in snakemake.out."""
    workdir.mkdir(exist_ok=True)
    (workdir / "snakemake.out").write_text("")
    shutil.copy(config, workdir / "config.yaml")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2"]
    command += ["--directory", str(workdir), "--configfile", str(workdir / "config.yaml")]
    env = os.environ | {"REWARDED_SOUPS_SOCKET_DIR": str(sockets)}
    log = open(workdir / "snakemake.out", "w")
    return subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, workdir: Path, timeout: float = 900) -> str:
    process.wait(timeout=timeout)
    return (workdir / "snakemake.out").read_text()


def wait_for(condition, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def checkpoint_written(workdir: Path) -> bool:
    """A complete checkpoint of a text expert or MORL run (the Trainer marks one once it is written)."""
    return any((workdir / "checkpoints").rglob("rewarded_soups_complete"))


def processes() -> list[tuple[int, str, str]]:
    """(pid, cwd, command line) of every process we can see."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append((int(entry.name), cwd, cmdline))
    return found


def in_workdir(workdir: Path) -> list[tuple[int, str]]:
    """Processes working in ``workdir``: Snakemake, its jobs and warm forks (services work in their own directory)."""
    return [(pid, cmd) for pid, cwd, cmd in processes() if cwd == str(workdir)]


def scores(workdir: Path, task: str) -> bytes:
    return (workdir / "results" / task / "scores.csv").read_bytes()


@pytest.fixture(scope="module")
def sockets(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sockets")
    directory.chmod(0o700)
    yield directory
    os.environ["REWARDED_SOUPS_SOCKET_DIR"], old = str(directory), os.environ.get("REWARDED_SOUPS_SOCKET_DIR")
    try:
        from rewarded_soups import services

        services.stop_all()
    finally:
        os.environ.pop("REWARDED_SOUPS_SOCKET_DIR") if old is None else os.environ.update(
            {"REWARDED_SOUPS_SOCKET_DIR": old}
        )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, sockets):
    runs = {}

    def get(task: str) -> Path:
        if task not in runs:
            tmp = tmp_path_factory.mktemp(f"uninterrupted-{task}")
            out = finish(start(tmp / "run", config_of(task, tmp), sockets), tmp / "run")
            assert "steps (100%) done" in out, out[-3000:]
            runs[task] = tmp / "run"
        return runs[task]

    return get


def test_sigkill_of_snakemake_mid_training_leaves_no_writer_and_the_rerun_resumes(tmp_path, sockets, uninterrupted):
    workdir, config = tmp_path / "run", config_of("text", tmp_path)
    process = start(workdir, config, sockets)
    wait_for(lambda: checkpoint_written(workdir), "an expert's first checkpoint")
    process.send_signal(signal.SIGKILL)
    process.wait()
    # No job, fork or child of theirs goes on writing: all gone within seconds.
    wait_for(lambda: not in_workdir(workdir), f"the jobs to die with Snakemake: {in_workdir(workdir)}", timeout=20)
    assert checkpoint_written(workdir)

    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--unlock",
                    "--directory", str(workdir), "--configfile", str(workdir / "config.yaml")],
                   check=True, capture_output=True)  # fmt: skip
    rerun = finish(start(workdir, config, sockets), workdir)
    assert "steps (100%) done" in rerun, rerun[-3000:]
    logs = "".join(p.read_text() for p in (workdir / "logs" / "text").rglob("*.log"))
    assert "resuming the Trainer from" in logs
    assert "rule pretrain:" not in rerun  # θ0 was done: not computed again
    assert scores(workdir, "text") == scores(uninterrupted("text"), "text")
    assert not list((workdir / "checkpoints").rglob("*.safetensors"))  # removed with their finished jobs


def test_sigkill_of_a_training_job_then_a_rerun_resumes_it(tmp_path, sockets, uninterrupted):
    workdir, config = tmp_path / "run", config_of("text", tmp_path)
    process = start(workdir, config, sockets)
    wait_for(lambda: checkpoint_written(workdir), "an expert's first checkpoint")
    jobs = [pid for pid, cmd in in_workdir(workdir) if "finetune.py" in cmd]
    assert jobs, in_workdir(workdir)
    for pid in jobs:
        os.kill(pid, signal.SIGKILL)
    out = finish(process, workdir)
    assert process.returncode != 0 and "Error in rule" in out
    out = finish(start(workdir, config, sockets), workdir)
    assert "steps (100%) done" in out and "rule pretrain:" not in out, out[-3000:]
    logs = "".join(p.read_text() for p in (workdir / "logs" / "text").rglob("*.log"))
    assert "resuming the Trainer from" in logs
    assert scores(workdir, "text") == scores(uninterrupted("text"), "text")


def _service_roots(sockets: Path, module: str) -> list[int]:
    """The service's own process (it leads its session; the warm server's forks do not), not its launcher."""
    roots = []
    for pid, _, cmd in processes():
        if module in cmd and str(sockets) in cmd and "-c" not in cmd.split():
            try:
                session = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
            except (OSError, IndexError, ValueError):
                continue
            if session == pid:
                roots.append(pid)
    return roots


def _kill_service_then_finish(process, workdir: Path, sockets: Path, module: str) -> None:
    """SIGKILL the service's process mid-run; the run must still complete."""
    roots = _service_roots(sockets, module)
    assert roots, f"no {module} runs at this point of the run"
    for pid in roots:
        os.kill(pid, signal.SIGKILL)
    out = finish(process, workdir)
    assert process.returncode == 0 and "steps (100%) done" in out, out[-3000:]


def test_sigkill_of_the_warm_job_server_mid_run_loses_nothing(tmp_path, sockets, uninterrupted):
    workdir, config = tmp_path / "run", config_of("text", tmp_path)
    process = start(workdir, config, sockets)
    wait_for(lambda: checkpoint_written(workdir), "an expert's first checkpoint")
    # The default profile turns warm jobs on: a server runs while the expert trains.
    _kill_service_then_finish(process, workdir, sockets, "rewarded_soups.jobserver")
    assert scores(workdir, "text") == scores(uninterrupted("text"), "text")


def test_sigkill_of_the_meteor_service_mid_run_loses_nothing(tmp_path, sockets, uninterrupted):
    if shutil.which("java") is None:
        pytest.skip("METEOR needs Java")
    expected = scores(uninterrupted("captioning"), "captioning")
    workdir, config = tmp_path / "run", config_of("captioning", tmp_path)
    process = start(workdir, config, sockets)
    # Mid-scoring: the first score file is written, others are being computed.
    wait_for(lambda: any((workdir / "results" / "captioning" / "scores").rglob("*.json")), "the first scores")
    _kill_service_then_finish(process, workdir, sockets, "services.meteor")
    assert scores(workdir, "captioning") == expected
