"""A task's seeds together: seeds.json from every seed's summary (rule seeds)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "seeds.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups.seeds import aggregate
from rewarded_soups.workflow import logged, read_json, write_json

with logged(snakemake) as log:
    summaries = {seed: read_json(path) for seed, path in zip(snakemake.params.seeds, snakemake.input.summaries)}
    aggregated = {"task": snakemake.wildcards.task, **aggregate(summaries)}
    write_json(snakemake.output[0], aggregated)
    log.info("across seeds: %s", aggregated["across_seeds"])
