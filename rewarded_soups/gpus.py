"""Give each local job that holds ``gpu=k`` its own k devices (CUDA_VISIBLE_DEVICES).

Snakemake's local executor counts a ``gpu`` resource against ``--resources
gpu=N`` but never says *which* devices a job may use (snakemake#281), so two
one-GPU jobs would both land on device 0. A job here claims k device ids by
holding exclusive ``flock`` locks on one file per device for its lifetime; the
kernel releases them when the process ends, even if it crashes. Under a
scheduler that already assigns devices (SLURM sets CUDA_VISIBLE_DEVICES and
SLURM_JOB_ID) nothing is changed.

The machine's devices: ``RS_GPUS`` (e.g. ``0,1``) if set, else those
``nvidia-smi -L`` lists. Locks live in ``RS_GPU_LOCK_DIR`` (default: a
per-user directory under the system temp dir), so every workflow on the
machine shares them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_held: list[IO[str]] = []  # open lock files: closing one frees its device


def machine_devices() -> list[str]:
    listed = os.environ.get("RS_GPUS")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def lock_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"rewarded-soups-gpus-{os.getuid()}"
    path = Path(os.environ.get("RS_GPU_LOCK_DIR", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _try_claim(device: str) -> IO[str] | None:
    fh = open(lock_dir() / f"gpu-{device}.lock", "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def claim(count: int, *, poll_seconds: float = 2.0, timeout: float | None = None) -> list[str]:
    """Claim ``count`` free devices for this process, waiting while others hold them."""
    devices = machine_devices()
    if count > len(devices):
        raise RuntimeError(
            f"this job needs {count} GPU(s) but this machine has {len(devices)} "
            f"({'RS_GPUS=' + os.environ['RS_GPUS'] if 'RS_GPUS' in os.environ else 'from nvidia-smi'}); "
            "set resources.<stage>.gpu to 0 in the config, or run on a cluster (profiles/slurm)"
        )
    start = time.monotonic()
    waited = False
    while True:
        got: list[tuple[str, IO[str]]] = []
        for device in devices:
            if len(got) == count:
                break
            fh = _try_claim(device)
            if fh is not None:
                got.append((device, fh))
        if len(got) == count:
            _held.extend(fh for _, fh in got)
            return [d for d, _ in got]
        for _, fh in got:  # all or nothing: never sit on a partial claim
            fh.close()
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"no {count} free GPU(s) among {devices} after {timeout} s")
        if not waited:
            log.info("waiting for %d free GPU(s) among %s", count, devices)
            waited = True
        time.sleep(poll_seconds)


def release() -> None:
    while _held:
        _held.pop().close()


def assign(count: int) -> str | None:
    """Set CUDA_VISIBLE_DEVICES for a job holding ``count`` GPUs; return the value set (None: untouched)."""
    if count <= 0:
        # A CPU job must not grab a GPU by accident: hide them all.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return ""
    if "SLURM_JOB_ID" in os.environ and "CUDA_VISIBLE_DEVICES" in os.environ:
        return None  # the scheduler chose the devices
    ids = ",".join(claim(count))
    os.environ["CUDA_VISIBLE_DEVICES"] = ids
    log.info("GPU(s) %s assigned to this job", ids)
    return ids


def torch_device():
    """The device a job's torch code runs on: its GPU when it was given one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_threads(threads: int) -> None:
    """Give torch the job's threads (Snakemake's ``threads:``), at least one."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
