"""An expert's diagonal Fisher on its own fine-tuning inputs (rule fisher), for Fisher-weighted merging."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "fisher.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups import stages
from rewarded_soups.registry import load_task
from rewarded_soups.workflow import logged

with logged(snakemake) as log:
    written = stages.fisher(
        load_task(snakemake.params.kind),
        Path(snakemake.input.base),
        Path(snakemake.input.expert),
        Path(snakemake.output[0]),
        dict(snakemake.params.rewards),
        snakemake.params.settings,
        seed=snakemake.params.seed,
        data_seed=snakemake.params.data_seed,
        threads=snakemake.threads,
    )
    log.info("done: %s", written)
