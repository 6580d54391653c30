"""Merge the experts' weights for one λ (rules soup, merge_method, wise)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "merge.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups import stages
from rewarded_soups.registry import load_task
from rewarded_soups.workflow import logged

with logged(snakemake) as log:
    experts = [Path(p) for p in snakemake.input.experts]
    fishers = [Path(p) for p in snakemake.input.get("fishers", [])]
    log.info("λ %s over %s", snakemake.params.weights, [p.name for p in experts])
    out = Path(snakemake.output[0])
    # A soup grid job (rule soup_grid) built it with the other soups of these experts: moved, not copied.
    grid = snakemake.input.get("grid") or None
    if grid and stages.take_soup(Path(grid) / out.name, out):
        log.info("taken from the soup grid %s", grid)
    else:
        stages.merge(
            load_task(snakemake.params.kind),
            Path(snakemake.input.base),
            experts,
            list(snakemake.params.weights),
            out,
            snakemake.params.settings,
            fisher_dirs=fishers or None,
        )
