"""The GPU smoke configs (tools/gpu-smoke.sh) stay valid on machines without a GPU: dry runs of each
accelerator config merged with its minute-scale override, planning GPU jobs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("task", ["text", "locomotion", "image", "captioning"])
def test_smoke_config_plans_gpu_jobs(task, tmp_path):
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    if task == "text":
        import tiny_models

        hub = tmp_path / "hub"
        tiny_models.llama_policy(hub / "tiny-llama")
        tiny_models.deberta_reward_model(hub / "rm-deberta")
        tiny_models.electra_reward_model(hub / "rm-electra")
        tiny_models.questions_jsonl(hub / "questions.jsonl", repeat=8)
    base = ROOT / "config" / f"shapes-{task}.yaml"
    base = base if base.exists() else ROOT / "config" / f"paper-{task}.yaml"  # as tools/gpu-smoke.sh chooses
    configs = [str(base), str(ROOT / "tools" / "gpu-smoke" / f"{task}.yaml")]
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "4"]
    result = subprocess.run(
        [*snakemake, "--dry-run", "--resources", "gpu=1", "--directory", str(tmp_path), "--configfile", *configs],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "warning:" not in out  # the paper configs switch the other tasks off
    pretrain = out[out.index("rule pretrain:") :].split("\n\n")[0]
    assert re.search(r"resources: .*gpu=1", pretrain), pretrain
