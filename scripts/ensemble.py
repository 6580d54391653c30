"""A prediction ensemble of experts for one λ (rule ensemble): the task's `ensemble`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "ensemble.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups.registry import load_task
from rewarded_soups.workflow import logged

with logged(snakemake) as log:
    task = load_task(snakemake.params.kind)
    experts = [Path(p) for p in snakemake.input.experts]
    log.info("λ %s over %s", snakemake.params.weights, [p.name for p in experts])
    task.ensemble(
        Path(snakemake.input.base),
        experts,
        list(snakemake.params.weights),
        Path(snakemake.output[0]),
        snakemake.params.settings,
    )
