"""Checkpoints a killed training job resumes from (rewarded_soups.resume), and what they hold."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rewarded_soups import resume

ROOT = Path(__file__).resolve().parent.parent
CHILD = ROOT / "tests" / "resume_child.py"
EVERY_STEP = {"dir": "unused", "every_minutes": None, "every_steps": 1}


def test_a_state_round_trips_through_one_safetensors_file(tmp_path):
    weight = torch.randn(3, 4)
    state = {
        "step": 7,
        "optimiser": {"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 1e-3, "params": [0]}]},
        "tied": (weight, weight),  # one storage under two names, as GPT-2's embeddings and head
        "numpy": np.arange(5, dtype=np.uint32),
        "pcg": np.random.default_rng(3).bit_generator.state,  # integers beyond 64 bits
        "python": (3, tuple(range(5)), None),
        "bytes": b"\x00\xff",
        "floats": [math.nan, math.inf, 0.1],
        "empty": torch.zeros(0),
    }
    resume.save_state(tmp_path / "s.safetensors", state)
    back = resume.load_state(tmp_path / "s.safetensors")
    assert back["step"] == 7 and back["python"] == (3, tuple(range(5)), None) and back["bytes"] == b"\x00\xff"
    assert torch.equal(back["optimiser"]["state"][0]["exp_avg"], torch.ones(2))
    assert back["optimiser"]["param_groups"] == [{"lr": 1e-3, "params": [0]}]
    assert torch.equal(back["tied"][0], weight) and torch.equal(back["tied"][1], weight)
    assert back["numpy"].dtype == np.uint32 and back["numpy"].tolist() == list(range(5))
    assert back["pcg"] == state["pcg"]
    assert math.isnan(back["floats"][0]) and back["floats"][1:] == [math.inf, 0.1]
    assert back["empty"].shape == (0,)
    with pytest.raises(TypeError, match="cannot checkpoint a object"):
        resume.save_state(tmp_path / "t.safetensors", {"x": object()})


def _toy_training(steps: int, crash_at: int | None = None) -> torch.nn.Module:
    """A loop that draws from every generator the contract covers; raises at ``crash_at`` as a kill would stop it."""
    torch.manual_seed(0)
    np.random.seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    schedule = torch.optim.lr_scheduler.StepLR(optimiser, step_size=2, gamma=0.5)
    order_rng, rng = torch.Generator().manual_seed(1), np.random.default_rng(2)
    state = resume.LoopState("toy", total_steps=steps, model=model, optimiser=optimiser, schedule=schedule,
                             order_rng=order_rng, rng=rng)  # fmt: skip
    first, saved = state.resume({"losses": []})
    losses = saved["losses"]
    for step in range(first, steps):
        if step == crash_at:
            raise KeyboardInterrupt
        x = torch.randn(8, 4, generator=order_rng) + float(rng.normal()) + float(np.random.rand())
        loss = model(x).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        state.step_done(step + 1, {"losses": losses})
    return model


def test_a_loop_interrupted_and_resumed_ends_with_the_same_weights(tmp_path):
    uninterrupted = _toy_training(9)
    job = dict(root=tmp_path, rule="expert", name="toy", params={"lr": 0.01}, outputs=["out"], settings=EVERY_STEP)
    with pytest.raises(KeyboardInterrupt), resume.job(**job):
        _toy_training(9, crash_at=5)
    directory = next((tmp_path / "expert" / "toy").iterdir())
    assert (directory / "toy.safetensors").exists()  # kept: the job did not finish
    with resume.job(**job) as checkpoints:
        resumed = _toy_training(9)
        assert checkpoints.saves  # it went on saving
    for a, b in zip(uninterrupted.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not (tmp_path / "expert").exists()  # removed once the job finished


def test_another_config_never_resumes_from_a_stale_checkpoint(tmp_path, caplog):
    caplog.set_level("INFO", logger="rewarded_soups.resume")
    job = dict(root=tmp_path, rule="expert", name="toy", outputs=["out"], settings=EVERY_STEP)
    with pytest.raises(KeyboardInterrupt), resume.job(params={"lr": 0.01}, **job):
        _toy_training(9, crash_at=5)
    stale = next((tmp_path / "expert" / "toy").iterdir())
    with resume.job(params={"lr": 0.02}, **job) as checkpoints:
        assert not stale.exists()
        assert checkpoints.load("toy") is None
    assert "removing checkpoints of another config" in caplog.text


def test_outside_a_job_and_when_off_nothing_is_written(tmp_path):
    assert not resume.active().enabled
    _toy_training(3)
    off = {"dir": "x", "every_minutes": None, "every_steps": None}
    with resume.job(tmp_path, "expert", "toy", {}, ["out"], off) as checkpoints:
        assert not checkpoints.enabled
        _toy_training(3)
    assert not any(tmp_path.iterdir())


def test_a_kill_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    import safetensors.torch

    path = tmp_path / "s.safetensors"
    resume.save_state(path, {"step": 1})

    def dies_half_way(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 10)  # what the writer had written when the process died
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        resume.save_state(path, {"step": 2, "w": torch.ones(3)})
    assert resume.load_state(path) == {"step": 1}


# --- every task's training stages, killed with SIGKILL and rerun, as a job ---------------------------------------

TASKS = ("text", "locomotion", "image", "captioning", "grounding", "vqa")
# brax's PPO keeps its optimiser, environments and keys inside ppo.train: a resume restores the params only.
APPROXIMATE = {"locomotion"}
# Metrics of the attempt that finished rather than of the whole run.
PER_ATTEMPT = {"seconds", "train_loss"}


def _child(kind, stage, out, checkpoints, *extra, expect_kill=False):
    args = [sys.executable, str(CHILD), kind, stage, str(out), str(checkpoints), *map(str, extra)]
    done = subprocess.run(args, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    if expect_kill:
        assert done.returncode == -9, done.stderr[-3000:]
    else:
        assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Per task: θ0 and an expert trained without checkpoints."""
    root = tmp_path_factory.mktemp("uninterrupted")
    cache = {}

    def get(kind):
        if kind not in cache:
            _child(kind, "pretrain", root / kind / "base", root / "off", "--every-steps", 0)
            base = root / kind / "base"
            _child(kind, "finetune", root / kind / "expert", root / "off", "--base", base, "--every-steps", 0)
            cache[kind] = base, root / kind / "expert"
        return cache[kind]

    return get


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _same_run(expected: Path, got: Path) -> list[str]:
    """The files that differ, metrics aside from those of the last attempt."""
    a, b = _files(expected), _files(got)
    assert a.keys() == b.keys()
    differ = []
    for name in a:
        if name.endswith("metrics.json"):
            ma, mb = json.loads(a[name]), json.loads(b[name])
            if any(ma.get(k) != mb.get(k) for k in ma.keys() | mb.keys() if k not in PER_ATTEMPT):
                differ.append(name)
        elif a[name] != b[name]:
            differ.append(name)
    return differ


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
@pytest.mark.parametrize("kind", TASKS)
def test_a_training_job_killed_mid_run_resumes_and_ends_as_an_uninterrupted_one(kind, stage, uninterrupted, tmp_path):
    base, expert = uninterrupted(kind)
    expected = base if stage == "pretrain" else expert
    out, checkpoints = tmp_path / "out", tmp_path / "checkpoints"
    extra = [] if stage == "pretrain" else ["--base", base]
    _child(kind, stage, out, checkpoints, *extra, "--kill-after-saves", 2, expect_kill=True)
    assert any(checkpoints.rglob("*")), "the killed job left no checkpoint"
    log = _child(kind, stage, out, checkpoints, *extra)
    assert "resum" in log, log[-2000:]
    assert not any(p.is_file() for p in checkpoints.rglob("*")), "checkpoints outlived the finished job"
    differ = _same_run(expected, out)
    if kind in APPROXIMATE:
        assert differ, "PPO resumed bit for bit: move locomotion out of APPROXIMATE"
    else:
        assert not differ, f"resumed run differs from the uninterrupted one in {differ}"


def test_a_time_limit_shorter_than_the_checkpoint_interval_is_named():
    tasks = {"text": {"resources": {"pretrain": {"runtime": 60}, "finetune": {"runtime": 5}}}}
    (warning,) = resume.time_limit_warnings(tasks, {"checkpoint": {"every_minutes": 10}})
    assert warning.startswith("tasks.text.resources.finetune.runtime is 5 minutes")
    assert resume.time_limit_warnings(tasks, {"checkpoint": {"every_minutes": 2}}) == []
    assert resume.time_limit_warnings(tasks, {"checkpoint": {"every_minutes": None, "every_steps": 10}}) == []
