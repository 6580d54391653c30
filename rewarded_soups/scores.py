"""The scores table: one row per (model, reward, split), as in the artifact contract."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rewarded_soups.grid import parse_mix

COLUMNS = ["model", "kind", "weights", "reward", "split", "mean", "std", "n"]
MODEL_KINDS = ("init", "expert", "soup", "morl", "ensemble", "wise")
# The split that figures and summaries report; "validation" is the one λ is selected on.
REPORTED_SPLIT = "test"


def read_score_files(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Gather the JSON files written by the score rule (a list of (model, reward) records each), one row per split."""
    rows = []
    for path in paths:
        with open(path) as fh:
            records = json.load(fh)
        for record in records if isinstance(records, list) else [records]:
            missing = [c for c in ("model", "kind", "weights", "reward", "splits") if c not in record]
            if missing:
                raise ValueError(f"{path}: score file lacks {missing}")
            for split, values in record["splits"].items():
                rows.append(
                    {c: record[c] for c in COLUMNS[:4]} | {"split": split} | {c: values[c] for c in COLUMNS[5:]}
                )
    df = pd.DataFrame(rows, columns=COLUMNS)
    order = {k: i for i, k in enumerate(MODEL_KINDS)}
    df["_order"] = df["kind"].map(order).fillna(len(order))
    df["_split"] = df["split"] != REPORTED_SPLIT
    return (
        df.sort_values(["_order", "model", "reward", "_split"])
        .drop(columns=["_order", "_split"])
        .reset_index(drop=True)
    )


PER_SAMPLE_COLUMNS = ["model", "reward", "split", "sample", "value"]


def read_per_sample(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Every per-sample value of the score files, long: (model, reward, split, sample, value); sample i is
    input i of the split for every model. Files of scorers that kept none give no rows."""
    frames = []
    for path in paths:
        with open(path) as fh:
            records = json.load(fh)
        for record in records if isinstance(records, list) else [records]:
            for split, values in record["splits"].items():
                if "values" not in values:
                    continue
                column = np.array([np.nan if v is None else v for v in values["values"]], dtype=float)
                frames.append(
                    pd.DataFrame(
                        {
                            "model": record["model"],
                            "reward": record["reward"],
                            "split": split,
                            "sample": np.arange(len(column)),
                            "value": column,
                        }
                    )
                )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PER_SAMPLE_COLUMNS)


def per_sample_matrix(
    per_sample: pd.DataFrame, models: Sequence[str], rewards: Sequence[str], split: str
) -> np.ndarray:
    """models × samples × rewards values of one split (NaN where a reward does not apply)."""
    table = per_sample[per_sample["split"] == split].pivot_table(
        index=["model", "sample"], columns="reward", values="value", dropna=False
    )
    missing = [m for m in models if m not in table.index.get_level_values(0)]
    if missing:
        raise ValueError(f"no per-sample scores for models {missing} (split {split}); rerun their score jobs")
    return np.stack([table.loc[m][list(rewards)].to_numpy(float) for m in models])


def of_split(scores: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows of one split; a table written before splits existed holds test rows only."""
    if "split" not in scores.columns:
        if split != REPORTED_SPLIT:
            raise ValueError(f"these scores have no split column, so no {split} rows: rerun the workflow")
        return scores
    rows = scores[scores["split"] == split]
    if rows.empty:
        raise ValueError(f"no {split} rows in the scores (splits present: {sorted(set(scores['split']))})")
    return rows


def wide(scores: pd.DataFrame, split: str = REPORTED_SPLIT) -> pd.DataFrame:
    """One row per model, one column per reward (mean on ``split``), plus kind and weights."""
    scores = of_split(scores, split)
    table = scores.pivot_table(index="model", columns="reward", values="mean", aggfunc="first")
    meta = scores.drop_duplicates("model").set_index("model")[["kind", "weights"]]
    return meta.join(table)


def standard_errors(scores: pd.DataFrame, split: str = REPORTED_SPLIT) -> pd.DataFrame:
    """Standard error of each mean (std/√n) on ``split``, one row per model, one column per reward."""
    scores = of_split(scores, split)
    sem = scores.assign(sem=scores["std"] / scores["n"].clip(lower=1) ** 0.5)
    return sem.pivot_table(index="model", columns="reward", values="sem", aggfunc="first")


def weight_matrix(table: pd.DataFrame, rewards: Sequence[str]) -> np.ndarray:
    """Weight vector of every row, in ``rewards`` order (missing rewards weigh 0; θ0 has none)."""
    mixes = [parse_mix(w) if w else {} for w in table["weights"]]
    return np.array([[m.get(r, 0.0) for r in rewards] for m in mixes], dtype=float).reshape(len(mixes), len(rewards))


def on_simplex(table: pd.DataFrame, rewards: Sequence[str]) -> np.ndarray:
    """Rows whose weights lie in [0, 1] (extrapolated task-arithmetic points do not)."""
    w = weight_matrix(table, rewards)
    return np.all((w >= -1e-9) & (w <= 1 + 1e-9), axis=1)


def rs_table(table: pd.DataFrame, rewards: Sequence[str], kind: str = "soup") -> pd.DataFrame:
    """Experts and the soups of one merge method on the simplex: the models that make its front."""
    rows = table[table["kind"].isin(["expert", kind])]
    return rows[on_simplex(rows, rewards)]
