"""Spider maps of all rewards, for tasks with N > 2 (rule spider)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "spider.py")  # in a fork of the warm server, where torch & co. are already imported

import pandas as pd

from rewarded_soups.plots import plot_spider
from rewarded_soups.workflow import logged

with logged(snakemake):
    plot_spider(
        pd.read_csv(snakemake.input.scores, keep_default_na=False),
        snakemake.params.rewards,
        snakemake.output[0],
        starts=snakemake.params.starts,
        title=snakemake.wildcards.task,
        dpi=snakemake.params.dpi,
    )
