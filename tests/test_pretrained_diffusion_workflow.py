"""End to end: the text-to-image DAG on a tiny Stable Diffusion pipeline and learned rewards, through Snakemake.

θ0 is a local ``StableDiffusionPipeline`` of the real classes (referenced, not
copied); the prompts are a text file; the experts train LoRA adapters on two
learned rewards (an image classifier's probability, a CLIP aesthetic head),
CLIPScore is a metric; soups are built by the merge engine and sample; the
image grid and the front are drawn.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tiny_diffusion as tiny
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def image_config(hub: dict[str, Path]) -> dict:
    return {
        "kind": "image",
        "theta0": None,
        "rewards": {
            "safe": {"kind": "image_classifier", "model": str(hub["classifier"]), "label": "normal"},
            "ava": {"kind": "clip_aesthetic", "model": str(hub["clip"]), "head": str(hub["head"])},
        },
        "metrics": {"clip_score": {"kind": "clip_score", "model": str(hub["clip"])}},
        "analysis": {"axes": ["safe", "ava"]},
        "data": {
            "image_size": 16,
            "source": "datasets",
            "dataset": str(hub["text"]),
            "splits": {"finetune": "train", "validation": "train", "test": "train"},
        },
        "pretrain": {"checkpoint": str(hub["pipeline"])},
        "finetune": {
            "n_images": 8,
            "steps": 3,
            "batch_size": 4,
            "learning_rate": 0.01,
            "inference_steps": 3,
            "lora": {"r": 4, "alpha": 8},
        },
        "evaluate": {"n_prompts": 6, "validation_size": 4, "inference_steps": 3, "batch_size": 4},
        "resources": {stage: {"threads": 1, "gpu": 0} for stage in ("pretrain", "finetune", "evaluate")},
        "morl": {"mu": [0.5]},
        "merge": {"grid_points": 3},
        "plots": {"grid_prompts": 2, "qualitative": [0.0, 0.5, 1.0]},
    }


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2", *args],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    hub = tiny.make_all(tmp_path_factory.mktemp("hub"))
    workdir = tmp_path_factory.mktemp("image")
    config = {"seed": 0, "tasks": {"image": image_config(hub)}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    return workdir, config["tasks"]["image"], hub


def test_the_image_dag_runs_from_a_referenced_pipeline(run):
    workdir, task, hub = run
    results = workdir / "results" / "image"
    reference = json.loads((results / "pretrain" / "model" / "base_model.json").read_text())
    assert reference["model"] == str(hub["pipeline"].resolve())
    assert not list((results / "pretrain").rglob("*.safetensors")), "θ0's weights must be referenced, not copied"
    for reward in task["rewards"]:
        assert (results / "experts" / reward / "adapter_model.safetensors").exists()
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    assert {"init", "expert", "soup", "morl"} <= set(scores["kind"])
    assert {"safe", "ava", "clip_score"} <= set(scores["reward"])
    assert (results / "figures" / "qualitative" / "grid.png").exists()
    assert list((results / "figures").glob("*.png"))
    assert json.loads((results / "summary.json").read_text())


def test_a_soup_averages_the_adapters_and_samples_other_images(run):
    """λ = 0.5 (merge.lora_mode paper): A and B averaged; its images differ from both experts'."""
    import torch
    from safetensors.torch import load_file

    from rewarded_soups.samples import read

    workdir, task, _ = run
    results = workdir / "results" / "image"
    a, b = (load_file(results / "experts" / r / "adapter_model.safetensors") for r in task["rewards"])
    soup_name = "safe@0.5+ava@0.5"
    soup = load_file(results / "soups" / soup_name / "adapter_model.safetensors")
    assert set(soup) == set(a)
    for name in a:
        torch.testing.assert_close(soup[name], 0.5 * a[name] + 0.5 * b[name], rtol=1e-5, atol=1e-6)
    images = {m: read(results / "samples" / m / "test").arrays["images"] for m in ("init", f"soup-{soup_name}")}
    assert images["init"].shape == (6, 16, 16, 3)
    assert not np.array_equal(images["init"], images[f"soup-{soup_name}"]), "the soup samples as θ0 does"


def test_scores_are_the_learned_rewards_of_the_sampled_images(run):
    from rewarded_soups.registry import build_reward
    from rewarded_soups.samples import read

    workdir, task, _ = run
    results = workdir / "results" / "image"
    samples = read(results / "samples" / "expert-ava" / "test")
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    for name, spec in {**task["rewards"], **task["metrics"]}.items():
        values = build_reward(spec)(samples.arrays["images"], samples.column("prompt"))
        row = scores[(scores["model"] == "expert-ava") & (scores["reward"] == name) & (scores["split"] == "test")]
        assert float(row["mean"].iloc[0]) == pytest.approx(float(np.mean(values)), abs=1e-6)  # the csv keeps 6 digits


def planned(result: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    """(rule, wildcards) of the jobs of a dry run."""
    jobs: list[list[str]] = []
    for line in (result.stdout + result.stderr).splitlines():
        line = line.strip()
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            jobs.append([m.group(1), ""])
        elif jobs and line.startswith("wildcards: "):
            jobs[-1][1] = line.removeprefix("wildcards: ")
    return {(rule, wildcards) for rule, wildcards in jobs if rule != "all"}


def test_a_replaced_reward_head_reruns_what_read_it(run):
    """The head file is an input of the jobs that read it: new weights under its path rerun the ava expert, MORL
    and the ava scores; the same bytes with a new time rerun nothing."""
    workdir, _, hub = run
    os.utime(hub["head"])
    assert not planned(snakemake(workdir, "--dry-run"))
    original = hub["head"].read_bytes()
    try:
        tiny.make_aesthetic_head(hub["head"], seed=7)
        jobs = planned(snakemake(workdir, "--dry-run"))
        assert ("expert", "task=image, reward=ava") in jobs
        assert ("expert", "task=image, reward=safe") not in jobs
        assert any(rule == "morl" for rule, _ in jobs)
        assert ("score", "task=image, model=init, scorers=ava") in jobs
        assert ("score", "task=image, model=init, scorers=safe") not in jobs
        assert not any(rule == "pretrain" for rule, _ in jobs)
    finally:
        hub["head"].write_bytes(original)


def test_every_model_job_would_get_the_gpu(run):
    """With gpu: 1 per stage, training, sampling and the learned rewards' scoring jobs each hold a GPU."""
    workdir, _, _ = run
    gpu = workdir / "gpu.yaml"
    stages = {stage: {"gpu": 1} for stage in ("pretrain", "finetune", "evaluate")}
    gpu.write_text(yaml.safe_dump({"tasks": {"image": {"resources": stages}}}))
    result = snakemake(workdir, "--dry-run", "--forceall", "--configfile", str(gpu))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs, current = {}, None
    for line in (result.stdout + result.stderr).splitlines():
        line = line.strip()
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            current = m.group(1)
        elif current and line.startswith("resources: "):
            jobs.setdefault(current, set()).add("gpu=1" in line)
    for rule in ("pretrain", "expert", "morl", "generate", "score"):
        assert jobs[rule] == {True}, rule
