"""Helpers for the thin Snakemake scripts: logging into the rule's log file, JSON output."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rewarded_soups import gpus, manifest


@contextlib.contextmanager
def _file_descriptors_to(fh: Any) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``fh``: output of C/C++ libraries (XLA, absl) lands there too."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


# Libraries whose import costs a job seconds of CPU; the timing line names those a job loaded.
HEAVY_MODULES = ("torch", "transformers", "peft", "trl", "diffusers", "jax", "brax", "pandas", "matplotlib")
TIMING_PREFIX = "job timing: "


def timing(startup_cpu: float) -> dict[str, Any]:
    """Where this process's CPU went: before the job's work, in it, and in its child processes (Java).

    In a fork of the warm job server (:mod:`rewarded_soups.jobserver`) the
    clock starts at the fork, and the libraries the server had imported are
    not the job's imports (``warm``: those it got for free).
    """
    from rewarded_soups import jobserver

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    warm = jobserver.preloaded()
    return {
        "startup_cpu": round(startup_cpu, 3),
        "work_cpu": round(time.process_time() - startup_cpu, 3),
        "children_cpu": round(children.ru_utime + children.ru_stime, 3),
        # The job's own peak memory (a warm fork's includes the pages it shares with the server).
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "heavy_modules": [m for m in HEAVY_MODULES if m in sys.modules and m not in warm],
        "warm": [m for m in HEAVY_MODULES if m in warm],
    }


def _directories(files: Any) -> list[Path]:
    return [Path(f) for f in files if Path(f).is_dir()]


@contextlib.contextmanager
def checked_artifacts(smk: Any, manifests: bool = True) -> Iterator[None]:
    """Verify the directories the job reads against their manifests; write its output directories' manifests last
    (``manifests`` False: none, for an intermediate whose parts other jobs move away, a soup grid)."""
    for directory in _directories(smk.input):
        manifest.verify(directory)
    yield
    if manifests:
        for directory in _directories(smk.output):
            manifest.write(directory, smk.rule)


@contextlib.contextmanager
def logged(smk: Any, manifests: bool = True) -> Iterator[logging.Logger]:
    """Send stdout, stderr and logging of the job to its ``log:`` file (the first one), fresh for each attempt.

    Around the job's work: its input directories are verified against their
    manifests, and its output directories get theirs (:mod:`rewarded_soups.manifest`; see
    :func:`checked_artifacts` for ``manifests``).
    """
    log_path = Path(smk.log[0]) if smk.log else None
    if log_path is None:
        with checked_artifacts(smk, manifests):
            yield logging.getLogger("rewarded_soups")
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with (
        # "w": a failed job's log, which Snakemake prints, holds this attempt only.
        open(log_path, "w", buffering=1) as fh,
        _file_descriptors_to(fh),
        contextlib.redirect_stdout(fh),
        contextlib.redirect_stderr(fh),
    ):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logger = logging.getLogger("rewarded_soups")
        # CPU so far: the interpreter, Snakemake's script preamble and the script's imports.
        startup_cpu = time.process_time()
        logger.info("rule %s, wildcards %s, threads %s", smk.rule, dict(smk.wildcards), smk.threads)
        # Before the task imports torch or jax, which read CUDA_VISIBLE_DEVICES once.
        gpus.assign(int(getattr(getattr(smk, "resources", None), "gpu", 0) or 0))
        try:
            with checked_artifacts(smk, manifests):
                yield logger
        except Exception:
            logger.exception("job failed")
            raise
        else:
            # Read by tools/profile-run.py.
            logger.info("%s%s", TIMING_PREFIX, json.dumps(timing(startup_cpu)))
        finally:
            gpus.release()
            root.removeHandler(handler)


def write_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=float) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
