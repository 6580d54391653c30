"""RL fine-tune from θ0 on a weighted reward (rules expert and morl); its metrics go to train_metrics.json."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "finetune.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups import resume, stages
from rewarded_soups.registry import load_task
from rewarded_soups.workflow import logged

# Checkpoints outside the output (config checkpoint.*): a rerun after a kill resumes where this job was.
with logged(snakemake) as log, resume.from_snakemake(snakemake):
    metrics = stages.finetune(
        load_task(snakemake.params.kind),
        Path(snakemake.input.base),
        Path(snakemake.output[0]),
        dict(snakemake.params.rewards),
        dict(snakemake.params.weights),
        snakemake.params.settings,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        data_seed=snakemake.params.data_seed,
    )
    log.info("done in %.1f s; metrics: %s", metrics.get("seconds", float("nan")), sorted(metrics))
