"""Every seed's front of one pair, thin, and their mean (rule seeds_figure)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "seeds_figure.py")  # in a fork of the warm server, where torch & co. are already imported

import pandas as pd

from rewarded_soups.seeds import caption, plot_seed_fronts
from rewarded_soups.workflow import logged, read_json

with logged(snakemake):
    scores = {
        seed: pd.read_csv(path, keep_default_na=False)
        for seed, path in zip(snakemake.params.seeds, snakemake.input.scores)
    }
    plot_seed_fronts(
        scores,
        snakemake.params.rewards,
        snakemake.params.pair,
        snakemake.output[0],
        title=snakemake.wildcards.task,
        caption=caption(read_json(snakemake.input.seeds)),
        dpi=snakemake.params.dpi,
    )
