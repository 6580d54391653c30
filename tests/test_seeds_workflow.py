"""Replicates over training seeds (config ``seeds``) through the DAG: the tiny text task, two seeds, then three."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2", *args],
        capture_output=True,
        text=True,
        cwd=workdir,
    )


def planned_jobs(result: subprocess.CompletedProcess) -> list[tuple[str, str]]:
    """(rule, task wildcard) of every job of a dry run."""
    jobs, rule = [], None
    for line in (result.stdout + result.stderr).splitlines():
        line = line.strip()
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule = m.group(1)
            jobs.append((rule, ""))
        elif rule and line.startswith("wildcards: ") and (m := re.search(r"task=([\w]+)", line)):
            jobs[-1] = (rule, m.group(1))
    return [j for j in jobs if j[0] != "all"]


def write_config(workdir: Path, seeds: list[int]) -> None:
    tiny = yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text())
    config = {"seed": 0, "seeds": seeds, "tasks": {"text": tiny["tasks"]["text"]}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("seeds")
    write_config(workdir, [0, 1])
    result = snakemake(workdir)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    return workdir


def test_a_replicate_trains_from_the_same_theta0_and_data_with_its_own_seed(run):
    results = run / "results"
    for file in (results / "text" / "pretrain" / "model").rglob("*"):
        if file.is_file():
            twin = (
                results
                / "text_seed1"
                / "pretrain"
                / "model"
                / file.relative_to(results / "text" / "pretrain" / "model")
            )
            assert twin.read_bytes() == file.read_bytes(), file.name
    scores = {
        name: pd.read_csv(results / name / "scores.csv", keep_default_na=False) for name in ("text", "text_seed1")
    }
    init = {name: s[s["model"] == "init"].reset_index(drop=True) for name, s in scores.items()}
    pd.testing.assert_frame_equal(init["text"], init["text_seed1"])  # same θ0, same inputs, same sampling
    # The tiny experts' few steps may not change their scores; their weights must differ by seed.
    for reward in ("sentiment", "concise"):
        weights = [(results / t / "experts" / reward / "adapter_model.safetensors").read_bytes() for t in scores]
        assert weights[0] != weights[1], f"the training seed changed nothing in expert {reward}"


def test_seeds_are_summarised_together(run):
    results = run / "results" / "text"
    seeds = json.loads((results / "seeds.json").read_text())
    assert seeds["seeds"] == [0, 1]
    assert set(seeds["per_seed"]) == {"0", "1"}
    across = seeds["across_seeds"]
    difference = across["hypervolume_rs_minus_morl"]
    assert difference["seeds"] == 2 and difference["low"] <= difference["mean"] <= difference["high"]
    assert set(across["expert_own_gain"]) == {"sentiment", "concise"}
    png = results / "figures" / "seeds-sentiment-concise.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_staleness_is_per_seed(run):
    """Nothing to do after the run; a third seed plans only its own replicate and the seeds' aggregates."""
    nothing = snakemake(run, "-n")
    assert nothing.returncode == 0 and not planned_jobs(nothing), planned_jobs(nothing)
    write_config(run, [0, 1, 2])
    result = snakemake(run, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    assert {task for _, task in jobs} == {"text_seed2", "text"}
    assert {rule for rule, task in jobs if task == "text"} == {"seeds", "seeds_figure"}
    assert ("pretrain", "text_seed2") in jobs and ("expert", "text_seed2") in jobs
