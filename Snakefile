# Rewarded soups (Ramé et al., NeurIPS 2023) as a Snakemake workflow.
# pretrain -> one RL expert per reward (+ MORL baseline) -> λ-grid soups
# -> generate and score every model -> Pareto analysis and figures.
from snakemake.utils import min_version

min_version("9.0")

import sys

sys.path.insert(0, workflow.basedir)

from snakemake.exceptions import WorkflowError

from rewarded_soups.config import ConfigError, check_yaml_syntax

# Snakemake's message for a config.yaml it cannot parse names no file, line or column.
try:
    check_yaml_syntax("config.yaml")
except ConfigError as err:
    raise WorkflowError(str(err)) from None


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/pretrain.smk"
include: "rules/finetune.smk"
include: "rules/merge.smk"
include: "rules/evaluate.smk"
include: "rules/analyse.smk"


# Warm jobs locally, time-limit warnings on a cluster (rules/common.smk).
onstart:
    configure_jobs()


# The profile's long re-planning timespan (rewarded_soups/scheduling.py) would
# otherwise keep Snakemake alive for up to that long after the last job; helper
# processes that jobs share (rewarded_soups/services.py: METEOR's Java) would
# wait for their idle timeout.
onsuccess:
    cancel_replanning_timers()
    stop_shared_services()


onerror:
    cancel_replanning_timers()
    stop_shared_services()


# Aggregation, figures and tables: seconds each, run where Snakemake runs
# (on a cluster, not submitted as jobs).
localrules:
    all,
    regenerate,
    scores_table,
    summary,
    figures,
    advantage,
    samples_table,
    spider,
    qualitative,
    explorer,


rule all:
    default_target: True
    input:
        all_targets(),


# Rebuild every summary and figure from the cached scores and samples, never
# training or evaluating: `snakemake regenerate` (after deleting
# results/*/figures, or after changing plot settings).
rule regenerate:
    input:
        analysis_targets(),
        seeds_targets(),
