"""Train θ0, or copy the task's shipped θ0 or (a seed replicate) its task's θ0 (rule pretrain)."""

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "pretrain.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups import resume, stages, theta0
from rewarded_soups.registry import load_task
from rewarded_soups.workflow import logged, read_json, write_json

with logged(snakemake) as log:
    if snakemake.params.replicate_of:
        # A replicate with another training seed starts from its task's θ0, byte for byte.
        base_model, base_metrics = snakemake.input.replicated
        shutil.copytree(base_model, snakemake.output.model)
        metrics = read_json(base_metrics) | {"copied_from": str(Path(base_model).parent)}
        write_json(snakemake.output.metrics, metrics)
        log.info("θ0 copied from task %s", snakemake.params.replicate_of)
    elif snakemake.params.theta0:
        # The workflow's directory: relative theta0 paths are relative to it.
        shipped = theta0.resolve(snakemake.params.theta0, Path(snakemake.scriptdir).parent)
        metrics = theta0.install(shipped, Path(snakemake.output.model), snakemake.output.metrics)
        log.info("θ0 copied from %s (trained in %.0f s when it was made)", shipped, metrics["trained_seconds"] or 0)
    else:
        # Checkpoints outside the output (config checkpoint.*): a rerun after a kill resumes where this job was.
        with resume.from_snakemake(snakemake):
            metrics = stages.pretrain(
                load_task(snakemake.params.kind),
                Path(snakemake.output.model),
                snakemake.params.settings,
                seed=snakemake.params.seed,
                threads=snakemake.threads,
            )
        write_json(snakemake.output.metrics, metrics)
