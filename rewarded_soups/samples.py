"""What a model produced on one held-out split: one record per input, and arrays beside them.

A task's ``generate`` returns :class:`Samples`; the workflow writes them
(:func:`write`: ``samples.jsonl``, one JSON record per line, and
``arrays.safetensors`` for images or trajectories) and reads them back for
scoring, tables and figures (:func:`read`). Records hold JSON values only;
the same input is at the same position for every model of a task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RECORDS_FILE = "samples.jsonl"
ARRAYS_FILE = "arrays.safetensors"


@dataclass
class Samples:
    """``records``: one dict per input (a completion, a caption with its references, a box, an episode);
    ``arrays``: named arrays of the split (images, a trajectory)."""

    records: list[dict[str, Any]]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def column(self, key: str) -> list[Any]:
        """One field of every record, in order."""
        return [record[key] for record in self.records]


def write(samples: Samples, out_dir: Path) -> None:
    """Write ``samples`` into the directory ``out_dir`` (created)."""
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / RECORDS_FILE, "w") as fh:
        for record in samples.records:
            fh.write(json.dumps(record) + "\n")
    if samples.arrays:
        save_file({k: np.ascontiguousarray(v) for k, v in samples.arrays.items()}, str(out_dir / ARRAYS_FILE))


def read(samples_dir: Path) -> Samples:
    """The samples a generate job wrote into ``samples_dir``."""
    samples_dir = Path(samples_dir)
    with open(samples_dir / RECORDS_FILE) as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    arrays: dict[str, np.ndarray] = {}
    if (samples_dir / ARRAYS_FILE).exists():
        from safetensors.numpy import load_file

        arrays = load_file(str(samples_dir / ARRAYS_FILE))
    return Samples(records, arrays)
