"""Train θ0 (rule pretrain)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.registry import load_task
from rewarded_soups.workflow import logged, write_json

with logged(snakemake):
    task = load_task(snakemake.params.kind)
    metrics = task.pretrain(
        Path(snakemake.output.model), snakemake.params.settings, seed=snakemake.params.seed, threads=snakemake.threads
    )
    write_json(snakemake.output.metrics, metrics)
