"""Training that survives a kill: checkpoints a job resumes from, exactly, after SIGKILL, preemption or a time limit.

Snakemake deletes a failed job's output, so a job's checkpoints live outside
it: ``<checkpoint.dir>/<rule>/<wildcards>/<key>/``, where ``key`` digests the
job's params (settings, seeds, code digest) and outputs. A changed config or
edited code is another key, so a job never resumes from a stale state; the
other keys of the same job are removed when it starts. The directory is removed
once the job's work is done.

The contract every training loop follows (custom loops through
:class:`LoopState`; trl's Trainer and brax's PPO through their own hooks,
see the task modules):

* a checkpoint holds everything the rest of the run depends on: the trained
  parameters and buffers, the optimiser's and scheduler's state, the step,
  the data order, every random generator (Python's, numpy's, torch's CPU and
  CUDA ones, and the loop's own generators) and the loop's running values;
* it is written every ``checkpoint.every_minutes`` (and/or every
  ``checkpoint.every_steps`` steps), as one safetensors file (tensors, and
  the rest as JSON in its metadata: nothing is unpickled on resume), to a
  temporary name first and renamed: a kill mid-write leaves the previous one;
* taking a checkpoint draws no random number and changes nothing the run
  reads, so where the uninterrupted run is deterministic the resumed one
  ends with the same bytes.

Outside a job (:func:`job` not entered), every call here is a no-op: unit
tests and library users train as before.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

STATE_SUFFIX = ".safetensors"
KEY_FILE = "job.json"  # what the key digests: for a person wondering what a directory belongs to
DEFAULTS = {"dir": "checkpoints", "every_minutes": 10.0, "every_steps": None}


# --- one file per state: tensors in safetensors, the rest as JSON in its metadata --------------------------------


def _encode(value: Any, tensors: dict[str, Any], seen: dict[tuple, str]) -> Any:
    import torch

    if isinstance(value, np.ndarray):
        return {"__numpy__": _encode(torch.from_numpy(np.ascontiguousarray(value)), tensors, seen)}
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        # Tied weights (one storage under two names) are stored once; safetensors refuses shared storage.
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if tensor.numel() and identity in seen:
            return {"__tensor__": seen[identity]}
        name = f"t{len(tensors)}"
        tensors[name] = tensor.cpu().contiguous().clone()
        if tensor.numel():
            seen[identity] = name
        return {"__tensor__": name}
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k, tensors, seen), _encode(v, tensors, seen)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors, seen) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors, seen) for v in value]
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot checkpoint a {type(value).__name__}: give tensors, arrays, numbers, strings or containers")


def _decode(value: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    (tag, inner), *_ = value.items()
    if tag == "__tensor__":
        return tensors[inner]
    if tag == "__numpy__":
        return _decode(inner, tensors).numpy()
    if tag == "__dict__":
        return {_decode(k, tensors): _decode(v, tensors) for k, v in inner}
    if tag == "__tuple__":
        return tuple(_decode(v, tensors) for v in inner)
    if tag == "__bytes__":
        return base64.b64decode(inner)
    raise ValueError(f"unknown entry {tag!r} in a checkpoint")


def save_state(path: Path, state: dict[str, Any]) -> int:
    """Write ``state`` atomically (temporary name, fsync, rename); return the file's size in bytes."""
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    skeleton = json.dumps(_encode(state, tensors, {}), allow_nan=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    save_file(tensors, partial, metadata={"state": skeleton})
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, path)
    return path.stat().st_size


def load_state(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt") as handle:
        skeleton = json.loads(handle.metadata()["state"])
        for name in handle.keys():
            tensors[name] = handle.get_tensor(name)
    return _decode(skeleton, tensors)


# --- random generators --------------------------------------------------------------------------------------------


def global_rng_state() -> dict[str, Any]:
    """Python's, numpy's global and torch's (CPU and every CUDA device) generators."""
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _object_state(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Generator):
        return obj.get_state()
    if isinstance(obj, np.random.Generator):
        return obj.bit_generator.state
    if isinstance(obj, torch.nn.Module):
        # Frozen parameters come back from θ0 as they were: only what trains, and the buffers, are saved.
        trained = {name for name, p in obj.named_parameters() if p.requires_grad}
        buffers = {name for name, _ in obj.named_buffers()}
        return {k: v for k, v in obj.state_dict(keep_vars=True).items() if k in trained or k in buffers}
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def _restore_object(obj: Any, state: Any) -> None:
    import torch

    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    elif isinstance(obj, np.random.Generator):
        obj.bit_generator.state = state
    elif isinstance(obj, torch.nn.Module):
        missing = set(state) - set(obj.state_dict())
        if missing:
            raise ValueError(f"checkpoint holds tensors the model lacks: {sorted(missing)[:5]}")
        with torch.no_grad():
            current = obj.state_dict(keep_vars=True)
            for name, value in state.items():
                current[name].copy_(value)
    else:
        obj.load_state_dict(state)


# --- the job's checkpoints -----------------------------------------------------------------------------------------


@dataclass
class Checkpoints:
    """Where one job's checkpoints go and how often; ``directory`` None: checkpointing is off."""

    directory: Path | None = None
    every_minutes: float | None = None
    every_steps: int | None = None
    last_save: float = field(default_factory=time.monotonic)
    last_step: int = 0  # the step of the last checkpoint (or the one resumed from)
    saves: list[dict[str, float]] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def path(self, name: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{name}{STATE_SUFFIX}"

    def due(self, step: int) -> bool:
        if not self.enabled:
            return False
        # Steps since the last checkpoint, not multiples: PPO's steps are environment steps counted per epoch.
        if self.every_steps and step - self.last_step >= self.every_steps:
            return True
        return self.every_minutes is not None and time.monotonic() - self.last_save >= 60 * self.every_minutes

    def saved_now(self, step: int, seconds: float, size: int) -> None:
        """A library saved its own checkpoint at ``step``: the next is ``every_minutes`` or ``every_steps`` away."""
        self.last_save, self.last_step = time.monotonic(), step
        self.saves.append({"seconds": seconds, "bytes": size})

    def resumed_at(self, step: int) -> None:
        self.last_save, self.last_step = time.monotonic(), step

    def save(self, name: str, state: dict[str, Any]) -> None:
        if not self.enabled:
            return
        start = time.perf_counter()
        size = save_state(self.path(name), state)
        seconds = time.perf_counter() - start
        self.last_save, self.last_step = time.monotonic(), int(state.get("step", self.last_step))
        self.saves.append({"seconds": seconds, "bytes": size})
        log.info("checkpoint %s at step %s: %.1f MB in %.2f s", name, state.get("step"), size / 1e6, seconds)

    def load(self, name: str) -> dict[str, Any] | None:
        if not self.enabled or not self.path(name).exists():
            return None
        return load_state(self.path(name))

    def scratch(self, name: str) -> Path | None:
        """A directory for a library's own checkpoints (trl's ``output_dir``), inside this job's; None when off."""
        if not self.enabled:
            return None
        assert self.directory is not None
        (self.directory / name).mkdir(parents=True, exist_ok=True)
        return self.directory / name


_active = Checkpoints()


def active() -> Checkpoints:
    """The running job's checkpoints (off outside :func:`job`)."""
    return _active


def settings_of(config: dict[str, Any] | None) -> dict[str, Any]:
    return DEFAULTS | dict((config or {}).get("checkpoint") or {})


def time_limit_warnings(tasks: dict[str, dict[str, Any]], config: dict[str, Any] | None) -> list[str]:
    """For a cluster run: the training stages whose time limit (``resources.<stage>.runtime``, minutes) would
    stop them before their first checkpoint (``checkpoint.every_minutes``), so a resubmission has nothing to
    resume from."""
    every = settings_of(config)["every_minutes"]
    if not every:
        return []
    found = []
    for name, task in tasks.items():
        for stage in ("pretrain", "finetune"):
            runtime = task.get("resources", {}).get(stage, {}).get("runtime")
            if runtime and runtime <= every:
                found.append(
                    f"tasks.{name}.resources.{stage}.runtime is {runtime} minutes but checkpoint.every_minutes is "
                    f"{every:g}: a job stopped at its time limit will not have saved a checkpoint to resume from; "
                    "lower checkpoint.every_minutes"
                )
    return found


def job_key(rule: str, params: dict[str, Any], outputs: list[str]) -> str:
    text = json.dumps({"rule": rule, "params": params, "outputs": outputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def job(
    root: Path, rule: str, name: str, params: dict[str, Any], outputs: list[str], settings: dict[str, Any]
) -> Iterator[Checkpoints]:
    """Checkpoints for one job: ``root/rule/name/key``; removed when the body returns, kept when it raises or dies.

    ``name`` tells the job apart from the rule's others (its wildcards); ``params`` and ``outputs`` make
    the key. ``settings``: :data:`DEFAULTS`' keys; ``every_minutes`` and ``every_steps`` both None: off.
    """
    global _active
    if settings.get("every_minutes") is None and not settings.get("every_steps"):
        yield _active
        return
    key = job_key(rule, params, outputs)
    parent = Path(root) / rule / name
    directory = parent / key
    if parent.is_dir():
        for stale in parent.iterdir():
            if stale.name != key:
                log.info("removing checkpoints of another config or code: %s", stale)
                shutil.rmtree(stale, ignore_errors=True)
    resumed = directory.is_dir() and any(directory.iterdir())
    directory.mkdir(parents=True, exist_ok=True)
    (directory / KEY_FILE).write_text(json.dumps({"rule": rule, "outputs": outputs, "params": params}, default=str))
    if resumed:
        log.info("resuming from the checkpoints in %s", directory)
    previous = _active
    _active = Checkpoints(directory, settings.get("every_minutes"), settings.get("every_steps"))
    try:
        yield _active
    finally:
        _active = previous
    # Only reached when the body returned: the job's output is complete.
    shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):
        parent.rmdir()
        parent.parent.rmdir()


def from_snakemake(smk: Any, root: Path | None = None) -> contextlib.AbstractContextManager[Checkpoints]:
    """:func:`job` for a Snakemake job: its rule, wildcards, params and outputs; settings from ``config.checkpoint``."""
    settings = settings_of(smk.config)
    wildcards = "/".join(str(v) for v in smk.wildcards) or "job"
    params = {k: v for k, v in smk.params.items()}
    return job(Path(root or settings["dir"]), smk.rule, wildcards, params, [str(o) for o in smk.output], settings)


# --- a custom training loop ----------------------------------------------------------------------------------------


class LoopState:
    """A custom loop's resumable state: its objects (models, optimisers, schedulers, generators) and its values.

    ::

        state = LoopState("xent", model=model, optimiser=optimiser, order_rng=rng)
        first, values = state.resume({"order": order, "cursor": 0, "history": []})
        for step in range(first, steps):
            ...
            state.step_done(step + 1, {"order": order, "cursor": cursor, "history": history})

    :meth:`resume` returns ``(0, initial)`` when there is nothing to resume;
    otherwise it restores the objects and the global generators and returns
    the saved step and values. ``save_at_end``: the loop's last step is always
    saved, for a job that runs another loop after this one.
    """

    def __init__(self, name: str, *, total_steps: int, save_at_end: bool = False, **objects: Any) -> None:
        self.name, self.total_steps, self.save_at_end, self.objects = name, total_steps, save_at_end, objects
        self.checkpoints = active()

    def resume(self, initial: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        saved = self.checkpoints.load(self.name)
        if saved is None:
            return 0, initial
        for name, obj in self.objects.items():
            _restore_object(obj, saved["objects"][name])
        set_global_rng_state(saved["rng"])
        self.checkpoints.resumed_at(int(saved["step"]))
        log.info("%s: resumed at step %d of %d", self.name, saved["step"], self.total_steps)
        return int(saved["step"]), saved["values"]

    def step_done(self, step: int, values: dict[str, Any]) -> None:
        """After step ``step`` (1-based): save the objects, the generators and ``values`` if a checkpoint is due."""
        if not self.checkpoints.enabled:
            return
        # The last step is saved only for a job that runs another loop after this one.
        if not (self.save_at_end if step == self.total_steps else self.checkpoints.due(step)):
            return
        state = {
            "step": step,
            "objects": {name: _object_state(obj) for name, obj in self.objects.items()},
            "rng": global_rng_state(),
            "values": values,
        }
        self.checkpoints.save(self.name, state)
