"""On a GPU: soups built on the device equal the CPU's, and the tasks' torch code runs there.

Marked ``gpu``: skipped without CUDA (CI has none); `pytest -m gpu` on a GPU machine, or
tools/gpu-smoke.sh for the whole workflow.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from rewarded_soups.merging.engine import MergeSettings, load_state, merge
from rewarded_soups.merging.spec import MergeSpec

pytestmark = pytest.mark.gpu


def _expert(path, seed):
    generator = torch.Generator().manual_seed(seed)
    path.mkdir()
    tensors = {"w": torch.randn(64, 32, generator=generator, dtype=torch.float32).to(torch.bfloat16)}
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    return path


def test_a_recipe_soup_built_on_the_gpu_equals_the_cpu_soup(tmp_path):
    members = [_expert(tmp_path / "a", 0), _expert(tmp_path / "b", 1)]
    spec = MergeSpec(members=members, weights=[0.3, 0.7], files=["model.safetensors"])
    merge(spec, tmp_path / "full", MergeSettings())
    merge(spec, tmp_path / "recipe", MergeSettings(), store="recipe")
    on_gpu = load_state(tmp_path / "recipe", "model.safetensors", torch.device("cuda"))["w"]
    on_cpu = load_state(tmp_path / "full", "model.safetensors", torch.device("cpu"))["w"]
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=0, atol=torch.finfo(torch.bfloat16).eps)


def test_the_job_device_is_the_gpu():
    from rewarded_soups.gpus import torch_device

    assert torch_device().type == "cuda"
