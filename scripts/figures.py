"""The front and the reward-vs-λ figures of one pair of rewards, from scores.csv (rule figures)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "figures.py")  # in a fork of the warm server, where torch & co. are already imported

import pandas as pd

from rewarded_soups.plots import figure_intervals, plot_front, plot_lambda_curves
from rewarded_soups.workflow import logged

with logged(snakemake):
    scores = pd.read_csv(snakemake.input.scores, keep_default_na=False)
    per_sample = pd.read_csv(snakemake.input.per_sample)
    title = snakemake.wildcards.task
    pair = list(snakemake.params.pair)
    # The pair's paired intervals once, for both figures.
    intervals = figure_intervals(scores, per_sample, snakemake.params.rewards, pair, snakemake.params.seed)
    common = {"title": title, "dpi": snakemake.params.dpi, "intervals": intervals}
    plot_front(scores, snakemake.params.rewards, pair, snakemake.output.front, **common)
    plot_lambda_curves(
        scores, snakemake.params.rewards, snakemake.params.metrics, snakemake.output.curves, pair=pair, **common
    )
