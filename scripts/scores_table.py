"""Gather every (model, reward) score into scores.csv (rule scores_table)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "scores_table.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups.scores import read_score_files
from rewarded_soups.workflow import logged

with logged(snakemake):
    read_score_files(snakemake.input).to_csv(snakemake.output[0], index=False, float_format="%.6g")
