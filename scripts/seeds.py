"""A task's seeds together: seeds.json from every seed's summary (rule seeds)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "seeds.py")  # in a fork of the warm server, where torch & co. are already imported

import pandas as pd

from rewarded_soups.seeds import aggregate
from rewarded_soups.workflow import logged, read_json, write_json

with logged(snakemake) as log:
    seeds = snakemake.params.seeds
    summaries = {seed: read_json(path) for seed, path in zip(seeds, snakemake.input.summaries)}
    scores = {seed: pd.read_csv(path, keep_default_na=False) for seed, path in zip(seeds, snakemake.input.scores)}
    aggregated = {"task": snakemake.wildcards.task, **aggregate(summaries, scores)}
    write_json(snakemake.output[0], aggregated)
    log.info("across seeds: %s", aggregated["across_seeds"])
