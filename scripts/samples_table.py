"""Qualitative samples per model as markdown (rule samples_table)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "samples_table.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups import stages
from rewarded_soups.registry import load_task
from rewarded_soups.tasks.base import split_samples
from rewarded_soups.workflow import logged

with logged(snakemake):
    samples = dict(zip(snakemake.params.labels, (split_samples(p) for p in snakemake.input)))
    body = stages.samples_table(load_task(snakemake.params.kind), samples, snakemake.params.n)
    Path(snakemake.output[0]).write_text(f"# Samples of {snakemake.wildcards.task} per model\n\n{body}\n")
