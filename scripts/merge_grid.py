"""Every soup of the same experts in one pass over them (rule soup_grid); the soup jobs take them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "merge_grid.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups import stages
from rewarded_soups.registry import load_task
from rewarded_soups.workflow import logged

with logged(snakemake, manifests=False) as log:
    out = Path(snakemake.output[0])
    soups_dir = out.parent.parent / "soups"
    experts = [Path(p) for p in snakemake.input.experts]
    inputs = [Path(snakemake.input.base), *experts]
    grid = dict(snakemake.params.soups)
    wanted = stages.soups_to_build(grid, soups_dir, inputs, snakemake.params.settings["merge"])
    log.info("%d of %d soups to build (the others are up to date): %s", len(wanted), len(grid), sorted(wanted))
    if wanted:
        stages.merge_grid(
            load_task(snakemake.params.kind),
            Path(snakemake.input.base),
            experts,
            wanted,
            out,
            snakemake.params.settings,
        )
    out.mkdir(parents=True, exist_ok=True)
