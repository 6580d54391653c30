"""RL fine-tune from θ0 on a weighted reward (rules expert and morl); writes what it returns as train_metrics.json."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "finetune.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups.registry import load_task
from rewarded_soups.tasks.base import TRAIN_METRICS
from rewarded_soups.workflow import logged, write_json

with logged(snakemake) as log:
    task = load_task(snakemake.params.kind)
    out_dir = Path(snakemake.output[0])
    metrics = task.finetune(
        Path(snakemake.input.base),
        out_dir,
        dict(snakemake.params.rewards),
        dict(snakemake.params.weights),
        snakemake.params.settings,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
    write_json(out_dir / TRAIN_METRICS, metrics)
    log.info("done in %.1f s; metrics: %s", metrics.get("seconds", float("nan")), sorted(metrics))
