"""The paper's Figure 8 for one pair, from summary.json (rule advantage)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "advantage.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups.plots import plot_advantage
from rewarded_soups.workflow import logged, read_json

with logged(snakemake) as log:
    pair = snakemake.wildcards.pair.split("-")
    summary = read_json(snakemake.input.summary)
    (entry,) = [a for a in summary["advantage"] if a["rewards"] == pair]
    drawn = plot_advantage(entry, snakemake.output[0], title=snakemake.wildcards.task, dpi=snakemake.params.dpi)
    log.info("expected advantage of RS over MORL with M runs: %s", drawn)
