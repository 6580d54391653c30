"""End to end: the paper's text setting on tiny models through Snakemake.

A LLaMA-architecture θ0 in a local directory (referenced, not copied), two
reward models of other architectures (DeBERTa-v2, ELECTRA), prompts from a
local JSONL file with a template and a chat template, bf16 weights and bf16
mixed precision, activation checkpointing, gradient accumulation and a drawn
completion length: the whole text DAG, then staleness and device checks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import tiny_models
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def snakemake(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2", *args],
        capture_output=True,
        text=True,
        cwd=workdir,
        env={**os.environ, **(env or {})},
    )


def planned(result: subprocess.CompletedProcess) -> list[dict]:
    """Jobs of a dry run: rule, wildcards and resources."""
    jobs: list[dict] = []
    for line in (result.stdout + result.stderr).splitlines():
        line = line.strip()
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            jobs.append({"rule": m.group(1), "wildcards": "", "resources": ""})
        elif jobs and line.startswith("wildcards: "):
            jobs[-1]["wildcards"] = line.removeprefix("wildcards: ")
        elif jobs and line.startswith("resources: "):
            jobs[-1]["resources"] = line.removeprefix("resources: ")
    return [j for j in jobs if j["rule"] != "all"]


def config(hub: dict[str, Path]) -> dict:
    return {
        "seed": 0,
        "tasks": {
            "llama": {
                "kind": "text",
                "rewards": {
                    "helpful": {"kind": "classifier", "model": str(hub["deberta"])},
                    "harmless": {"kind": "classifier", "model": str(hub["electra"]), "label": "good"},
                },
                "metrics": {
                    "perplexity": {"kind": "perplexity", "dtype": "bfloat16"},
                    "concise": {"kind": "conciseness", "max_chars": 40, "min_chars": 0},
                },
                "data": {
                    "source": "datasets",
                    "dataset": str(hub["prompts"]),
                    "template": "Question: {question} Answer:",
                    "min_chars": 5,
                    "valid_fraction": 0.1,
                    "test_fraction": 0.2,
                },
                "pretrain": {"model": str(hub["llama"]), "block_size": 64, "eval_batches": 1, "dtype": "bfloat16"},
                "finetune": {
                    "steps": 2,
                    "num_generations": 2,
                    "per_device_train_batch_size": 2,
                    "gradient_accumulation_steps": 2,
                    "max_completion_length": [4, 8],
                    "dtype": "bfloat16",
                    "bf16": True,
                    "activation_checkpointing": True,
                    "beta": 0.05,
                    "lora": {"r": 4, "alpha": 8},
                },
                "morl": {"mu": [0.5]},
                "merge": {"grid_points": 3},
                "evaluate": {
                    "n_prompts": 6,
                    "validation_size": 4,
                    "max_new_tokens": 6,
                    "batch_size": 4,
                    "dtype": "bfloat16",
                },
            }
        },
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("llama-workflow")
    hub = {
        "llama": tiny_models.llama_policy(workdir / "hub" / "tiny-llama"),
        "deberta": tiny_models.deberta_reward_model(workdir / "hub" / "rm-deberta"),
        "electra": tiny_models.electra_reward_model(workdir / "hub" / "rm-electra"),
        "prompts": tiny_models.questions_jsonl(workdir / "hub" / "questions.jsonl"),
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config(hub), sort_keys=False))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir, hub


def test_the_whole_text_dag_runs_on_a_llama_with_reward_models(run):
    workdir, _ = run
    results = workdir / "results" / "llama"
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    assert set(scores["reward"]) == {"helpful", "harmless", "perplexity", "concise"}
    assert set(scores["kind"]) == {"init", "expert", "soup", "morl"}
    assert len(scores) == 5 * 4 * 2
    assert (scores.loc[scores["split"] == "test", "n"] == 6).all()
    assert (scores.loc[scores["split"] == "validation", "n"] == 4).all()
    # θ0 is referenced, experts and soups are adapters.
    assert not list((results / "pretrain").rglob("*.safetensors"))
    assert json.loads((results / "pretrain" / "model" / "base_model.json").read_text())["content_sha256"]
    for directory in ("experts/helpful", "experts/harmless", "soups/helpful@0.5+harmless@0.5"):
        assert (results / directory / "adapter_model.safetensors").exists()
    summary = json.loads((results / "summary.json").read_text())
    assert summary["lmc"]["n_points"] == 1 and len(summary["hypervolume"]["reference"]) == 2
    log = (workdir / "logs" / "llama" / "generate" / "soup-helpful@0.5+harmless@0.5.log").read_text()
    assert re.search(r"generated 6 completions on cpu: \d+ new tokens", log)
    samples = (results / "figures" / "samples.md").read_text()
    assert "[user] Question:" in samples


def test_replacing_a_local_reward_model_reruns_what_read_it(run):
    workdir, hub = run
    assert not planned(snakemake(workdir, "--dry-run"))
    backup = workdir / "rm-deberta.backup"
    shutil.copytree(hub["deberta"], backup)
    try:
        os.utime(hub["deberta"] / "model.safetensors")  # a newer file with the same bytes changes nothing
        assert not planned(snakemake(workdir, "--dry-run"))
        shutil.rmtree(hub["deberta"])
        tiny_models.deberta_reward_model(hub["deberta"], seed=7)  # other weights under the same path
        jobs = planned(snakemake(workdir, "--dry-run"))
        rules = {(j["rule"], j["wildcards"]) for j in jobs}
        assert ("expert", "task=llama, reward=helpful") in rules
        assert ("expert", "task=llama, reward=harmless") not in rules
        assert not any(r == "pretrain" for r, _ in rules)
        assert any(r == "morl" for r, _ in rules)
        assert ("score", "task=llama, model=init, scorers=helpful") in rules
        assert ("score", "task=llama, model=init, scorers=harmless") not in rules
    finally:
        shutil.rmtree(hub["deberta"])
        shutil.copytree(backup, hub["deberta"])


def test_every_model_job_would_get_the_gpu(run):
    """With `gpu: 1` per stage, model jobs hold a GPU; scoring holds one only when the reward runs a model.

    Last in this module: its forced scoring job makes the aggregates stale.
    """
    workdir, _ = run
    gpu = workdir / "gpu.yaml"
    stages = {stage: {"gpu": 1} for stage in ("pretrain", "finetune", "evaluate")}
    gpu.write_text(yaml.safe_dump({"tasks": {"llama": {"resources": stages}}}))
    result = snakemake(workdir, "--dry-run", "--forceall", "--configfile", str(gpu))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned(result)
    gpus = {}
    for job in jobs:
        if job["rule"] in ("pretrain", "expert", "morl", "generate", "score", "soup"):
            scorers = re.search(r"scorers=([\w-]+)", job["wildcards"])
            key = f"score:{scorers.group(1)}" if job["rule"] == "score" else job["rule"]
            gpus.setdefault(key, set()).add("gpu=1" in job["resources"])
    assert gpus["pretrain"] == gpus["expert"] == gpus["morl"] == gpus["generate"] == {True}
    assert gpus["score:helpful"] == gpus["score:harmless"] == gpus["score:perplexity"] == {True}
    assert gpus["score:rule-based"] == {False} and gpus["soup"] == {False}  # concise
    # One scoring job run for real on a simulated device: it is assigned GPU 0 (CUDA_VISIBLE_DEVICES).
    target = "results/llama/scores/init/helpful.json"
    env = {"RS_GPUS": "0", "RS_GPU_LOCK_DIR": str(workdir / "gpu-locks")}
    result = snakemake(workdir, target, "--force", "--resources", "gpu=1", "--configfile", str(gpu), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (workdir / "logs" / "llama" / "score" / "init" / "helpful.log").read_text()
    assert "GPU(s) 0 assigned to this job" in log
