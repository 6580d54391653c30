from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from rewarded_soups.config import validate_config

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny.yaml"


@pytest.fixture(scope="session", autouse=True)
def shared_jax_compilation_cache(tmp_path_factory):
    """One jax compilation cache (``RS_JAX_CACHE``) for every workflow the tests run.

    The locomotion task caches compiled programs in its working directory; the
    determinism and shipped-θ0 tests rerun the same programs in other
    directories, and compiling them again was most of their time. XLA's
    compilation is deterministic, so loading a program changes no number.
    """
    previous = os.environ.get("RS_JAX_CACHE")
    os.environ["RS_JAX_CACHE"] = str(tmp_path_factory.mktemp("jax-cache"))
    yield
    if previous is None:
        os.environ.pop("RS_JAX_CACHE", None)
    else:
        os.environ["RS_JAX_CACHE"] = previous


@pytest.fixture
def default_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


@pytest.fixture
def tiny_config() -> dict:
    return yaml.safe_load(TINY.read_text())


@pytest.fixture(scope="session")
def tiny_text_task(tmp_path_factory) -> tuple[dict, Path]:
    """A validated tiny text task and its pretrained θ0 (a few seconds on CPU)."""
    from rewarded_soups.tasks import text

    config = validate_config(yaml.safe_load(TINY.read_text()))
    task = copy.deepcopy(config["tasks"]["text"])
    base = tmp_path_factory.mktemp("text") / "pretrain"
    text.pretrain(base, task, seed=0, threads=1)
    return task, base


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skipped, with the reason, on machines without it (CI, laptops)."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
