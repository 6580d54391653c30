"""Helpers for the thin Snakemake scripts: logging into the rule's log file, JSON output."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def logged(smk: Any) -> Iterator[logging.Logger]:
    """Send stdout, stderr and logging of the job to its ``log:`` file (the first one)."""
    log_path = Path(smk.log[0]) if smk.log else None
    if log_path is None:
        yield logging.getLogger("rewarded_soups")
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with open(log_path, "a", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logger = logging.getLogger("rewarded_soups")
        logger.info("rule %s, wildcards %s, threads %s", smk.rule, dict(smk.wildcards), smk.threads)
        try:
            yield logger
        except Exception:
            logger.exception("job failed")
            raise
        finally:
            root.removeHandler(handler)


def write_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=float) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
