"""A score group's rewards and metrics on one model's samples of every held-out split (rule score).

The group is one scorer that runs a model, or every rule-based scorer of the task
(rewarded_soups.plan.score_groups); the file holds one row per scorer.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "score.py")  # in a fork of the warm server, where torch & co. are already imported

import numpy as np

from rewarded_soups import stages
from rewarded_soups.registry import load_task
from rewarded_soups.tasks.base import EVALUATION_SPLITS, split_samples
from rewarded_soups.workflow import logged, write_json

with logged(snakemake) as log:
    task = load_task(snakemake.params.kind)
    samples = {split: split_samples(snakemake.input.samples, split) for split in EVALUATION_SPLITS}
    rows = []
    for name, reward in snakemake.params.rewards.items():
        per_split = stages.score(task, samples, reward, base_dir=Path(snakemake.input.base), threads=snakemake.threads)
        splits = {}
        for split in EVALUATION_SPLITS:
            every = np.asarray(per_split[split], dtype=float)
            # NaN: the reward does not apply to that sample (grounding accuracy on small objects, for a
            # large target); the mean, spread and count are over the samples it applies to.
            values = every[~np.isnan(every)]
            if not len(values):
                raise ValueError(
                    f"reward {name!r} applies to none of the {len(per_split[split])} {split} samples of model "
                    f"{snakemake.wildcards.model} (every value is NaN): evaluate more inputs, or check its options"
                )
            splits[split] = {
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "n": len(values),
                # Sample i is input i of the split for every model (paired statistics); null where NaN.
                "values": [None if np.isnan(v) else float(v) for v in every],
            }
        row = {
            "model": snakemake.wildcards.model,
            "kind": snakemake.params.model_kind,
            "weights": snakemake.params.weights,
            "reward": name,
            "splits": splits,
        }
        log.info("%s", row)
        rows.append(row)
    write_json(snakemake.output[0], rows)
