"""The task's front explorer: one offline HTML page from the cached scores and samples (rule explorer)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "explorer.py")  # in a fork of the warm server, where torch & co. are already imported

import logging

from rewarded_soups.explorer import build
from rewarded_soups.workflow import logged

with logged(snakemake):
    stats = build(
        snakemake.wildcards.task,
        snakemake.params.rewards,
        snakemake.params.metrics,
        snakemake.params.pairs,
        Path(snakemake.input.scores).parent,
        dict(zip(snakemake.params.labels, snakemake.input.samples)),
        Path(snakemake.output[0]),
    )
    logging.getLogger("explorer").info(
        "%s: %d models, %d inputs shown, %.1f MB",
        snakemake.output[0],
        stats["models"],
        stats["samples"],
        stats["bytes"] / 1e6,
    )
