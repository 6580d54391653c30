"""LMC and hypervolume of a task's scores (rule summary)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "summary.py")  # in a fork of the warm server, where torch & co. are already imported

import pandas as pd

from rewarded_soups.analysis import summarise
from rewarded_soups.tasks.base import TRAIN_METRICS
from rewarded_soups.workflow import logged, read_json, write_json

with logged(snakemake) as log:
    timings = {"pretrain": read_json(snakemake.input.pretrain).get("seconds")}
    for run in snakemake.input.runs:
        metrics = Path(run) / TRAIN_METRICS
        if metrics.exists():
            timings[f"{Path(run).parent.name}/{Path(run).name}"] = read_json(metrics).get("seconds")
    summary = summarise(
        pd.read_csv(snakemake.input.scores, keep_default_na=False),
        snakemake.params.rewards,
        reference=snakemake.params.reference,
        timings=timings,
        pairs=snakemake.params.pairs,
        preferences=snakemake.params.preferences,
        per_sample=pd.read_csv(snakemake.input.per_sample),
        seed=snakemake.params.seed,
    )
    summary = {"task": snakemake.wildcards.task, **summary, "metrics": list(snakemake.params.metrics)}
    summary["pretrain"] = read_json(snakemake.input.pretrain)
    log.info("LMC %s, hypervolume %s", summary["lmc"], summary["hypervolume"])
    if summary["paired"]:
        paired = summary["paired"]
        log.info("LMC classes from paired intervals %s (unpaired %s)", paired["lmc"]["classes"],
                 paired["lmc"]["classes_unpaired"])  # fmt: skip
        for expert in paired["experts"]:
            if not expert["learned"]:
                gain = expert["gain"][expert["reward"]]
                log.warning(
                    "expert %s did not learn: gain on %s %+.4g [%+.4g, %+.4g] (paired 95%%)",
                    expert["expert"], expert["reward"], gain["estimate"], gain["low"], gain["high"],
                )  # fmt: skip
    write_json(snakemake.output[0], summary)
