"""Gather every (model, reward) score into scores.csv, and every per-sample value (rule scores_table)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # the package, also outside an install

from rewarded_soups.jobserver import run_warm

run_warm(snakemake, "scores_table.py")  # in a fork of the warm server, where torch & co. are already imported

from rewarded_soups.scores import read_per_sample, read_score_files
from rewarded_soups.workflow import logged

with logged(snakemake):
    read_score_files(snakemake.input).to_csv(snakemake.output.scores, index=False, float_format="%.6g")
    # Every model's value on every input: what paired statistics resample (compact, gzip).
    per_sample = read_per_sample(snakemake.input)
    # mtime 0: the same values give the same bytes (gzip would stamp the time).
    compression = {"method": "gzip", "mtime": 0}
    per_sample.to_csv(snakemake.output.per_sample, index=False, float_format="%.6g", compression=compression)
