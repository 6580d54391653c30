"""End to end: captioning, VQA and grounding on tiny models of real architectures and data in real formats.

Each task's whole DAG through Snakemake: θ0 a local transformers model
(referenced, not copied: a ViT + GPT-2 VisionEncoderDecoderModel on
Karpathy's COCO JSON; a BLIP with LoRA experts on VQA v2-style rows; a
PaliGemma writing location tokens on RefCOCO-style rows), experts, MORL,
soups loaded and generating, scores and figures; then what the soups and
scores must be.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import tiny_vision_language as tiny
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COMMON = {
    "resources": {stage: {"threads": 1, "gpu": 0} for stage in ("pretrain", "finetune", "evaluate")},
    "morl": {"mu": [0.5]},
    "merge": {"grid_points": 3},
    "plots": {"samples_in_table": 2},
}


def task_config(kind: str, hub: dict[str, Path]) -> dict:
    finetune = {"steps": 2, "batch_size": 4, "learning_rate": 0.001}
    evaluate = {"n_images": 6, "validation_size": 4, "batch_size": 4}
    if kind == "captioning":
        return {
            "kind": "captioning",
            "theta0": None,
            "rewards": {"bleu1": {"kind": "bleu", "n": 1}, "rouge": {"kind": "rouge"}},
            "analysis": {"axes": ["bleu1", "rouge"]},
            "data": {"source": "datasets", "format": "karpathy", "dataset": str(hub["karpathy"]),
                     "splits": {"validation": "val"}},
            "pretrain": {"checkpoint": str(hub["vit-gpt2"])},
            "finetune": {**finetune, "max_len": 6},
            "evaluate": {**evaluate, "max_len": 6},
        }  # fmt: skip
    if kind == "vqa":
        return {
            "kind": "vqa",
            "theta0": None,
            "rewards": {
                "bleu1": {"kind": "bleu", "n": 1, "reference_mode": "mean"},
                "rouge": {"kind": "rouge", "reference_mode": "mean"},
            },
            "metrics": {"accuracy": {"kind": "vqa_accuracy"}},
            "analysis": {"axes": ["bleu1", "rouge"]},
            "data": {"source": "datasets", "dataset": str(hub["vqa"]), "prompt": "question {} answer",
                     "columns": {"kind": "question_type"}},
            "pretrain": {"checkpoint": str(hub["blip"])},
            "finetune": {**finetune, "max_len": 4, "lora": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]},
                         "gradient_accumulation_steps": 2},
            "evaluate": {**evaluate, "max_len": 4},
        }  # fmt: skip
    return {
        "kind": "grounding",
        "theta0": None,
        "rewards": {
            # Any overlap counts (the tiny model rarely passes IoU 0.5), in the generated scenes' size classes
            # (their shapes are smaller than RefCOCO+'s objects).
            **{
                size: {"kind": "box_accuracy", "size": size, "iou_threshold": 0.001, "area_thresholds": [0.027, 0.06]}
                for size in ("small", "large")
            },
        },
        "metrics": {"iou": {"kind": "box_iou"}},
        "analysis": {"axes": ["small", "large"]},
        "data": {"source": "datasets", "dataset": str(hub["refcoco"]), "prompt": "detect {}",
                 "columns": {"expression": "answer"}},
        "pretrain": {"checkpoint": str(hub["paligemma"])},
        "finetune": finetune,
        "evaluate": {**evaluate, "n_images": 8, "validation_size": 8},
    }  # fmt: skip


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2", *args],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub")
    return {
        "vit-gpt2": tiny.make_vision_encoder_decoder(root / "vit-gpt2"),
        "blip": tiny.make_blip(root / "blip"),
        "paligemma": tiny.make_paligemma(root / "paligemma"),
        "karpathy": tiny.write_karpathy(root / "coco"),
        "vqa": tiny.write_vqa(root / "vqav2"),
        "refcoco": tiny.write_refcoco(root / "refcoco+"),
    }


@pytest.fixture(scope="module", params=["captioning", "vqa", "grounding"])
def run(request, hub, tmp_path_factory):
    kind = request.param
    workdir = tmp_path_factory.mktemp(kind)
    config = {"seed": 0, "tasks": {kind: copy.deepcopy({**COMMON, **task_config(kind, hub)})}}
    if kind == "grounding":
        config["tasks"][kind]["plots"]["samples_in_figure"] = 2
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    return kind, workdir, config["tasks"][kind]


def test_the_whole_dag_runs_from_a_referenced_model(run, hub):
    kind, workdir, task = run
    results = workdir / "results" / kind
    reference = json.loads((results / "pretrain" / "model" / "base_model.json").read_text())
    assert reference["model"] == str(Path(task["pretrain"]["checkpoint"]).resolve())
    assert reference["content_sha256"]
    assert not list((results / "pretrain").rglob("*.safetensors")), "θ0's weights must be referenced, not copied"
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    rewards = list(task["rewards"])
    assert {f"expert-{r}" for r in rewards} <= set(scores["model"])
    assert {"init", "soup", "morl"} <= set(scores["kind"])
    assert {*rewards, *task.get("metrics", {})} <= set(scores["reward"])
    assert (results / "figures").is_dir() and list((results / "figures").rglob("*.png"))
    summary = json.loads((results / "summary.json").read_text())
    assert summary


def test_a_soup_is_the_weighted_sum_of_its_experts(run):
    """The soup at λ = 0.5 (full weights or LoRA adapters) is the weighted sum of the experts' tensors."""
    import torch
    from safetensors.torch import load_file

    kind, workdir, task = run
    results = workdir / "results" / kind
    r0, r1 = list(task["rewards"])
    file = "adapter_model.safetensors" if kind == "vqa" else "model.safetensors"
    a = load_file(results / "experts" / r0 / file)
    b = load_file(results / "experts" / r1 / file)
    soup = load_file(results / "soups" / f"{r0}@0.5+{r1}@0.5" / file)
    assert set(soup) == set(a)
    for name in a:
        torch.testing.assert_close(soup[name], 0.5 * a[name] + 0.5 * b[name], rtol=1e-5, atol=1e-6)
    # The tiny grounding model's sampled boxes seldom overlap a target in two steps: its experts may differ from
    # θ0 by the cross-entropy term alone. The others' experts differ from each other.
    other = load_file(Path(task["pretrain"]["checkpoint"]) / file) if kind == "grounding" else b
    assert any(not torch.equal(a[name], other[name]) for name in a), "fine-tuning changed nothing"


def test_scores_are_the_rewards_of_what_the_models_wrote(run):
    """Recompute one expert's test reward from its saved outputs: it must be the score job's."""
    from rewarded_soups.registry import build_reward
    from rewarded_soups.samples import read

    kind, workdir, task = run
    results = workdir / "results" / kind
    reward = next(iter(task["rewards"]))
    samples = read(results / "samples" / f"expert-{reward}" / "test")
    if kind == "grounding":
        inputs = (samples.column("box"), samples.column("target"))
        assert all(isinstance(r["prediction"], str) for r in samples.records)
    else:
        inputs = (samples.column("caption"), [list(r) for r in samples.column("references")])
    context = {}
    if kind != "grounding":
        context = {"df_references": json.loads((results / "pretrain" / "model" / "train_references.json").read_text())}
    import numpy as np

    values = np.asarray(build_reward(task["rewards"][reward], context=context)(*inputs), dtype=float)
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    row = scores[(scores["model"] == f"expert-{reward}") & (scores["reward"] == reward) & (scores["split"] == "test")]
    assert len(row) == 1
    assert float(row["mean"].iloc[0]) == pytest.approx(float(np.nanmean(values)), abs=1e-9)
