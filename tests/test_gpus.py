"""CUDA_VISIBLE_DEVICES per local job, with two simulated devices on a CPU machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rewarded_soups import gpus

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def two_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("RS_GPUS", "0,1")
    monkeypatch.setenv("RS_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    yield
    gpus.release()


def test_claims_are_exclusive_and_all_or_nothing(two_devices):
    assert gpus.claim(1) == ["0"]
    # Another process sees device 0 taken; flock is per open file, so a second claim here works the same way.
    assert gpus.claim(1) == ["1"]
    with pytest.raises(TimeoutError):
        gpus.claim(1, poll_seconds=0.05, timeout=0.2)
    gpus.release()
    assert gpus.claim(2) == ["0", "1"]


def test_too_many_gpus_is_a_clear_error(two_devices):
    with pytest.raises(RuntimeError, match="needs 3 GPU"):
        gpus.claim(3)


def test_cpu_jobs_see_no_device_and_slurm_choices_are_kept(two_devices, monkeypatch):
    assert gpus.assign(0) == "" and os.environ["CUDA_VISIBLE_DEVICES"] == ""
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert gpus.assign(1) is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_snakemake_jobs_get_distinct_devices(tmp_path, monkeypatch):
    """Three one-GPU jobs and a two-GPU job under `--resources gpu=2`: never the same device at once."""
    monkeypatch.setenv("RS_GPUS", "0,1")
    monkeypatch.setenv("RS_GPU_LOCK_DIR", str(tmp_path / "locks"))
    (tmp_path / "job.py").write_text(
        textwrap.dedent(
            f"""
            import json, os, sys, time
            sys.path.insert(0, {str(ROOT)!r})
            from rewarded_soups.workflow import logged
            with logged(snakemake):
                start = time.time()
                time.sleep(1.5)
                record = {{"devices": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": time.time()}}
                open(snakemake.output[0], "w").write(json.dumps(record))
            """
        )
    )
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            """
            rule all:
                input: expand("out/one_{i}.json", i=range(3)), "out/two.json"
            rule one:
                output: "out/one_{i}.json"
                resources: gpu=1
                log: "logs/one_{i}.log"
                script: "job.py"
            rule two:
                output: "out/two.json"
                resources: gpu=2
                log: "logs/two.log"
                script: "job.py"
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "4", "--resources", "gpu=2", "--workflow-profile", "none"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("*.json"))]
    devices = sorted(r["devices"] for r in records)
    assert devices.count("0,1") == 1 and set(devices) <= {"0", "1", "0,1"}
    for a in records:
        for b in records:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert not set(a["devices"].split(",")) & set(b["devices"].split(",")), (a, b)
