"""The front explorer: one self-contained HTML page per task, built from cached artifacts only.

The page (``results/<task>/explorer.html``) shows the front of each pair of
rewards with every series (θ0, experts, soups by λ, MORL, baselines, merge
methods), a λ slider that highlights a soup on the front and the λ curves, a
preference slider μ̂ with Lemma 1's choice (selected on validation, reported
on test, by :func:`rewarded_soups.selection.select`) next to MORL(μ̂), a
ternary plot of the soups for three rewards, the spider map of the chosen
model for more than two, and the outputs of the chosen model next to θ0's and
each expert's on the same test inputs, with each sample's rewards.

Everything is inlined (plotly.js, the data, the images as PNG data URIs): it
opens from ``file://`` with no network. What a sample shows is read from the
samples' structure, not from the task: fields that every model shares for an
input (a prompt, the references, a target box) are the input; the rest are
the model's output; a list of four numbers in [0, 1] is a box (x0, y0, x1,
y1) drawn on the sample's image; an ``images`` array (n × h × w × 3, uint8)
is each sample's image, the input's when every model has the same.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TEMPLATE = Path(__file__).with_name("page.html")
SAMPLES_SHOWN = 8  # test inputs per model on the page
THUMBNAIL = 160  # largest image side on the page, in pixels
MU_STEPS = 21  # preference slider positions: μ̂ = 0, 0.05, …, 1


def _png(image: np.ndarray) -> str:
    from PIL import Image

    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if max(picture.size) > THUMBNAIL:
        picture.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _is_box(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, int | float) and -0.01 <= v <= 1.01 for v in value)
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def sample_views(samples: Mapping[str, Any], n: int = SAMPLES_SHOWN) -> dict[str, Any]:
    """The first ``n`` test samples: what every model shares (``inputs``) and each model's ``outputs``.

    ``samples``: model -> :class:`~rewarded_soups.samples.Samples` of one split, same inputs in the same order.
    """
    models = list(samples)
    n = min([n, *(len(s) for s in samples.values())])
    first = samples[models[0]]
    inputs: list[dict[str, Any]] = []
    outputs: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    images = {m: s.arrays.get("images") for m, s in samples.items()}
    shared_image = (
        all(
            images[m] is not None and len(images[m]) > i and np.array_equal(images[m][i], images[models[0]][i])
            for m in models
            for i in range(min(n, len(images[models[0]]) if images[models[0]] is not None else 0))
        )
        and images[models[0]] is not None
    )
    # A field is the input's when every model has the same value on every shown input (a prompt, references,
    # a target box); otherwise it is an output, even on an input where all models happen to agree.
    keys = list(first.records[0]) if n else []
    shared = {
        k
        for k in keys
        if all(samples[m].records[i].get(k) == first.records[i].get(k) for m in models for i in range(n))
    }
    for i in range(n):
        record = first.records[i]
        entry: dict[str, Any] = {"fields": {}, "boxes": {}}
        for key in record:
            if key in shared:
                (entry["boxes"] if _is_box(record[key]) else entry["fields"])[key] = _jsonable(record[key])
        if shared_image and i < len(images[models[0]]):
            entry["image"] = _png(images[models[0]][i])
        inputs.append(entry)
        for m in models:
            out: dict[str, Any] = {"fields": {}, "boxes": {}}
            for key, value in samples[m].records[i].items():
                if key not in shared:
                    (out["boxes"] if _is_box(value) else out["fields"])[key] = _jsonable(value)
            if not shared_image and images[m] is not None and i < len(images[m]):
                out["image"] = _png(images[m][i])
            outputs[m].append(out)
    return {"inputs": inputs, "outputs": outputs}


def _per_sample(per_sample: pd.DataFrame, n: int) -> dict[str, dict[str, list[float | None]]]:
    """model -> reward -> the first ``n`` test samples' values (None where a reward does not apply)."""
    test = per_sample[(per_sample["split"] == "test") & (per_sample["sample"] < n)]
    out: dict[str, dict[str, list[float | None]]] = {}
    for (model, reward), group in test.groupby(["model", "reward"], sort=False):
        values = group.sort_values("sample")["value"].to_numpy(float)
        out.setdefault(str(model), {})[str(reward)] = [None if np.isnan(v) else float(v) for v in values]
    return out


def _means(scores: pd.DataFrame) -> dict[str, dict[str, dict[str, float | None]]]:
    """split -> model -> reward -> mean."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for row in scores.itertuples():
        value = float(row.mean) if pd.notna(row.mean) else None
        out.setdefault(row.split, {}).setdefault(row.model, {})[row.reward] = value
    return out


def _selections(scores: pd.DataFrame, rewards: list[str], pairs: Sequence[Sequence[str]]) -> dict[str, list[Any]]:
    """Lemma 1 along each pair: ``select`` at μ̂ = 0, 0.05, …, 1 (μ̂ is the first reward's weight)."""
    from rewarded_soups.selection import select

    out: dict[str, list[Any]] = {}
    for a, b in pairs:
        entries = []
        for mu in np.linspace(0, 1, MU_STEPS):
            chosen = select(scores, {a: float(mu), b: float(1 - mu)}, rewards)
            entries.append({"mu": round(float(mu), 4), "selected": chosen["selected"]["model"]})
        out[f"{a}-{b}"] = entries
    return out


def display_name(name: str, kind: str, weights: Mapping[str, float]) -> str:
    """How the page names a model: θ0, "expert R", "soup R1 0.3 · R2 0.7", "MORL …", "wise …"."""
    mix = " · ".join(f"{r} {w:g}" for r, w in weights.items() if w)
    if kind == "init":
        return "θ0"
    if kind == "expert":
        return f"expert {max(weights, key=weights.__getitem__)}" if weights else name
    # A kind beyond these is a merge method other than the first (merge.methods).
    prefix = {"soup": "soup", "morl": "MORL", "wise": "WiSE", "ensemble": "ensemble"}.get(kind, kind)
    return f"{prefix} {mix}" if mix else name


def page_data(
    task_name: str,
    rewards: Sequence[str],
    metrics: Sequence[str],
    pairs: Sequence[Sequence[str]],
    scores: pd.DataFrame,
    per_sample: pd.DataFrame,
    summary: dict[str, Any],
    samples: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data."""
    from rewarded_soups.grid import parse_mix

    rewards, metrics, pairs = list(rewards), list(metrics), [list(p) for p in pairs]
    models = []
    for model, group in scores.groupby("model", sort=False):
        row = group.iloc[0]
        weights = parse_mix(row["weights"]) if isinstance(row["weights"], str) and row["weights"] else {}
        models.append(
            {
                "name": str(model),
                "kind": str(row["kind"]),
                "label": display_name(str(model), str(row["kind"]), weights),
                "mix": {r: float(weights.get(r, 0.0)) for r in rewards} if weights else None,
            }
        )
    paired = {
        f"{p['rewards'][0]}-{p['rewards'][1]}": p.get("paired", {}) for p in summary.get("pairs", []) if "rewards" in p
    }
    shown = sample_views(samples)
    return {
        "task": task_name,
        "rewards": rewards,
        "metrics": metrics,
        "pairs": pairs,
        "models": models,
        "scores": _means(scores),
        "per_sample": _per_sample(per_sample, SAMPLES_SHOWN),
        "selections": _selections(scores, rewards, pairs),
        "paired": {"experts": summary.get("paired", {}).get("experts", []), "pairs": paired},
        "samples": shown,
    }


def render(data: dict[str, Any]) -> str:
    """The page: the template with plotly.js and the data inlined."""
    from plotly.offline import get_plotlyjs

    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    page = TEMPLATE.read_text()
    return (
        page.replace("/*PLOTLY*/", get_plotlyjs())
        .replace("/*DATA*/null", payload)
        .replace("<!--TITLE-->", html.escape(f"Rewarded soups explorer: {data['task']}"))
    )


def build(
    task_name: str,
    rewards: Sequence[str],
    metrics: Sequence[str],
    pairs: Sequence[Sequence[str]],
    results: Path,
    sample_dirs: Mapping[str, Path],
    out: Path,
) -> dict[str, Any]:
    """Write ``out`` (the task's explorer) from ``results`` (scores, per-sample scores, summary) and the samples.

    ``pairs``: the pairs of rewards whose fronts the page offers (the task's front pairs); ``metrics``: the
    quality metrics shown next to the rewards.
    """
    from rewarded_soups.samples import read
    from rewarded_soups.tasks.base import split_samples

    results = Path(results)
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False, na_values=[""])
    per_sample = pd.read_csv(results / "scores_per_sample.csv.gz")
    summary = json.loads((results / "summary.json").read_text())
    samples = {m: read(split_samples(Path(d))) for m, d in sample_dirs.items()}
    data = page_data(task_name, rewards, metrics, pairs, scores, per_sample, summary, samples)
    page = render(data)
    Path(out).write_text(page)
    return {"bytes": len(page.encode()), "models": len(data["models"]), "samples": len(data["samples"]["inputs"])}
