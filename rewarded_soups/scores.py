"""The scores table: one row per (model, reward), as in the artifact contract."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

COLUMNS = ["model", "kind", "weights", "reward", "mean", "std", "n"]
MODEL_KINDS = ("init", "expert", "soup", "morl", "ensemble", "wise")


def read_score_files(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Gather the per-(model, reward) JSON files written by the score rule."""
    rows = []
    for path in paths:
        with open(path) as fh:
            row = json.load(fh)
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise ValueError(f"{path}: score file lacks {missing}")
        rows.append({c: row[c] for c in COLUMNS})
    df = pd.DataFrame(rows, columns=COLUMNS)
    order = {k: i for i, k in enumerate(MODEL_KINDS)}
    df["_order"] = df["kind"].map(order).fillna(len(order))
    return df.sort_values(["_order", "model", "reward"]).drop(columns="_order").reset_index(drop=True)


def wide(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per model, one column per reward (mean), plus kind and weights."""
    table = scores.pivot_table(index="model", columns="reward", values="mean", aggfunc="first")
    meta = scores.drop_duplicates("model").set_index("model")[["kind", "weights"]]
    return meta.join(table)


def standard_errors(scores: pd.DataFrame) -> pd.DataFrame:
    """Standard error of each mean (std/√n), one row per model, one column per reward."""
    sem = scores.assign(sem=scores["std"] / scores["n"].clip(lower=1) ** 0.5)
    return sem.pivot_table(index="model", columns="reward", values="sem", aggfunc="first")
