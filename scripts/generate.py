"""Outputs of one model on every held-out split (rule generate): samples/{model}/{split}."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "generate.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups import stages
from rewarded_soups.registry import load_task
from rewarded_soups.tasks.base import EVALUATION_SPLITS, split_samples
from rewarded_soups.workflow import logged

with logged(snakemake):
    stages.generate(
        load_task(snakemake.params.kind),
        Path(snakemake.input.base),
        Path(snakemake.input.model) if snakemake.input.model else None,
        {split: split_samples(snakemake.output[0], split) for split in EVALUATION_SPLITS},
        snakemake.params.settings,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
