"""A prediction ensemble of experts for one λ (rule ensemble): its members and weights."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "ensemble.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups import stages
from rewarded_soups.workflow import logged

with logged(snakemake) as log:
    experts = [Path(p) for p in snakemake.input.experts]
    log.info("λ %s over %s", snakemake.params.weights, [p.name for p in experts])
    stages.ensemble(experts, list(snakemake.params.weights), Path(snakemake.output[0]))
