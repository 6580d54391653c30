"""Combine experts for one λ: merge weights (rules soup, merge_method, wise) or ensemble predictions (rule ensemble)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.registry import load_task
from rewarded_soups.workflow import logged

with logged(snakemake) as log:
    task = load_task(snakemake.params.kind)
    experts = [Path(p) for p in snakemake.input.experts]
    log.info("λ %s over %s", snakemake.params.weights, [p.name for p in experts])
    args = (Path(snakemake.input.base), experts, list(snakemake.params.weights), Path(snakemake.output[0]))
    if snakemake.params.get("method") == "ensemble":
        task.ensemble(*args, snakemake.params.settings)
    else:
        fishers = [Path(p) for p in snakemake.input.get("fishers", [])]
        task.merge(*args, snakemake.params.settings, fisher_dirs=fishers or None)
