"""Visual grounding (paper Section 3.4, Appendix G): experts on small, medium and large objects.

θ0 is a sequence-to-sequence grounding model in the style of UnIVAL/OFA: the
captioning task's convolutional encoder and GPT-2 decoder with
cross-attention (:mod:`rewarded_soups.tasks.captioning.model`), reading the
referring expression through its prompt encoder and writing the box as four
location tokens (:mod:`.data`), pre-trained with cross-entropy on generated
scenes of two to four shapes of three sizes. Experts and MORL fine-tune it
with the paper's cross-entropy + 5 × REINFORCE loss (:mod:`.training`) on
their reward: accuracy (IoU > 0.5) on targets of one size class
(:mod:`rewarded_soups.rewards.boxes`). Soups interpolate full state dicts.
Samples are the greedy boxes of the test expressions with their targets
(``boxes.json``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rewarded_soups.gpus import torch_threads
from rewarded_soups.registry import register_task

register_task(
    "grounding",
    module=__name__,
    modality="box",
    baselines=("wise",),
    # How many test images the qualitative figure shows: display only, read by that job alone.
    reads={"qualitative": ("plots.samples_in_figure",)},
)

log = logging.getLogger(__name__)

BOXES_FILE = "boxes.json"
VOCAB_FILE = "vocab.json"
IMAGES_FILE = "images.safetensors"  # the first test images, for the qualitative figure
SAVED_IMAGES = 8
BOX_TOKENS = 5  # four location tokens and <eos>


def check_settings(task: dict[str, Any]) -> None:
    from rewarded_soups.tasks.captioning import check_encoder_decoder_settings

    check_encoder_decoder_settings(task, max_len_sections=())


def _splits(data: dict[str, Any], seed: int):
    from rewarded_soups.tasks.grounding.data import make_splits

    return make_splits(data["train_images"], data["valid_images"], data["test_images"], seed, data["image_size"])


def _reward_fn(rewards: dict[str, dict[str, Any]], weights: dict[str, float], bins: int):
    """Σ weights[r]·R_r of predicted token strings; a target outside a reward's size class adds 0."""
    import numpy as np

    from rewarded_soups.registry import build_reward
    from rewarded_soups.rewards import weighted_sum
    from rewarded_soups.tasks.grounding.data import tokens_to_box

    scorers = {name: build_reward(spec) for name, spec in rewards.items()}

    def reward(predictions: list[str], targets) -> list[float]:
        boxes = [tokens_to_box(p, bins) for p in predictions]
        values = {name: np.nan_to_num(np.asarray(s(boxes, targets), dtype=float)) for name, s in scorers.items()}
        return weighted_sum(values, weights).tolist()

    return reward


def pretrain(out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
    """Cross-entropy on (image, expression) → box tokens, from scratch."""
    torch_threads(threads)
    from rewarded_soups.tasks.captioning import model as seq2seq
    from rewarded_soups.tasks.captioning.scst import train_xent
    from rewarded_soups.tasks.grounding.data import box_to_tokens, build_vocab

    data, cfg = settings["data"], settings["pretrain"]
    splits = _splits(data, seed)
    vocab = build_vocab(splits.train.expressions, data["bins"])
    config = seq2seq.make_config(len(vocab), image_size=data["image_size"], max_len=BOX_TOKENS, **cfg["model"])
    model = seq2seq.build(config, seed)
    log.info("θ0: %d parameters, vocabulary %d tokens", seq2seq.parameter_count(model), len(vocab))
    targets = [[box_to_tokens(b, data["bins"])] for b in splits.train.boxes]
    metrics = train_xent(
        model,
        splits.train.images,
        targets,
        vocab,
        steps=cfg["steps"],
        batch_size=cfg["batch_size"],
        lr=cfg["learning_rate"],
        seed=seed,
        prompts=vocab.encode_batch(splits.train.expressions, model.prompt_len),
    )
    valid = _accuracy_by_size(model, vocab, splits.valid, data["bins"])
    log.info("θ0 validation accuracy (IoU > 0.5) by size: %s", valid)
    out_dir = Path(out_dir)
    seq2seq.save(model, out_dir)
    vocab.save(out_dir / VOCAB_FILE)
    return {
        "xent_final_loss": metrics["loss"][-1] if metrics["loss"] else None,
        "valid_accuracy": valid,
        "seconds": metrics["seconds"],
    }


def _predict(model, vocab, dataset, n: int | None = None) -> list[str]:
    """Greedy location tokens for the first ``n`` expressions of ``dataset`` (all with None)."""
    from rewarded_soups.tasks.captioning.scst import greedy_captions

    n = len(dataset) if n is None else n
    prompts = vocab.encode_batch(dataset.expressions[:n], model.prompt_len)
    return greedy_captions(model, dataset.images[:n], vocab, BOX_TOKENS, prompts=prompts)


def _accuracy_by_size(model, vocab, dataset, bins: int) -> dict[str, float]:
    """The box_accuracy reward (IoU > 0.5) of the greedy boxes, averaged per target size class."""
    from rewarded_soups.rewards.boxes import BoxAccuracy
    from rewarded_soups.tasks.grounding.data import tokens_to_box

    boxes = [tokens_to_box(text, bins) for text in _predict(model, vocab, dataset)]
    hits: dict[str, list[float]] = {}
    for hit, size in zip(BoxAccuracy()(boxes, dataset.boxes), dataset.sizes):
        hits.setdefault(size, []).append(hit)
    return {size: sum(v) / len(v) for size, v in sorted(hits.items())}


def finetune(
    base_dir: Path,
    out_dir: Path,
    rewards: dict[str, dict[str, Any]],
    weights: dict[str, float],
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
) -> dict[str, Any]:
    """Cross-entropy + REINFORCE from θ0 on Σ weights[r]·R_r (an expert when one weight is 1)."""
    torch_threads(threads)
    from rewarded_soups.tasks.captioning import model as seq2seq
    from rewarded_soups.tasks.captioning.data import Vocab
    from rewarded_soups.tasks.grounding.data import box_to_tokens
    from rewarded_soups.tasks.grounding.training import train_xent_reinforce

    base_dir, data, cfg = Path(base_dir), settings["data"], settings["finetune"]
    train = _splits(data, seed).train
    model = seq2seq.load(base_dir)
    vocab = Vocab.load(base_dir / VOCAB_FILE)
    log.info("cross-entropy + REINFORCE on %s", " + ".join(f"{w:g}·{r}" for r, w in weights.items()))
    metrics = train_xent_reinforce(
        model,
        train.images,
        vocab.encode_batch(train.expressions, model.prompt_len),
        vocab.encode_batch([box_to_tokens(b, data["bins"]) for b in train.boxes], BOX_TOKENS),
        train.boxes,
        _reward_fn(rewards, weights, data["bins"]),
        vocab,
        steps=cfg["steps"],
        batch_size=cfg["batch_size"],
        lr=cfg["learning_rate"],
        max_len=BOX_TOKENS,
        seed=seed,
        xent_weight=cfg["xent_weight"],
        reinforce_weight=cfg["reinforce_weight"],
        baseline=cfg["baseline"],
    )
    seq2seq.save(model, Path(out_dir))
    return metrics


def merge(
    base_dir: Path,
    expert_dirs: list[Path],
    weights: list[float],
    out_dir: Path,
    settings: dict[str, Any],
    *,
    fisher_dirs: list[Path] | None = None,
) -> None:
    """Σ λ_i θ_i over full models, as the captioning task merges; a member may be θ0 itself (WiSE)."""
    from rewarded_soups.tasks import captioning

    captioning.merge(base_dir, expert_dirs, weights, out_dir, settings, fisher_dirs=fisher_dirs)


def generate(
    base_dir: Path,
    model_dir: Path | None,
    out_dirs: dict[str, Path],
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
) -> None:
    """Greedy boxes for each held-out split's expressions, with the targets' boxes and size classes."""
    torch_threads(threads)
    import numpy as np
    from safetensors.numpy import save_file

    from rewarded_soups.tasks.captioning import model as seq2seq
    from rewarded_soups.tasks.captioning.data import Vocab
    from rewarded_soups.tasks.grounding.data import tokens_to_box

    base_dir, data, cfg = Path(base_dir), settings["data"], settings["evaluate"]
    splits = _splits(data, seed)
    vocab = Vocab.load(base_dir / VOCAB_FILE)
    model = seq2seq.load(Path(model_dir) if model_dir is not None else base_dir)
    for split, out_dir in out_dirs.items():
        held_out, n = (splits.test, cfg["n_images"]) if split == "test" else (splits.valid, cfg["validation_size"])
        n = len(held_out) if n is None else n
        predictions = _predict(model, vocab, held_out, n)
        records = [
            {
                "expression": expression,
                "prediction": text,
                "box": tokens_to_box(text, data["bins"]),
                "target": [float(v) for v in target],
                "size": size,
            }
            for expression, text, target, size in zip(held_out.expressions, predictions, held_out.boxes, held_out.sizes)
        ]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / BOXES_FILE).write_text(json.dumps(records, indent=1))
        save_file({"images": np.ascontiguousarray(held_out.images[: min(n, SAVED_IMAGES)])}, out_dir / IMAGES_FILE)


def read_boxes(samples_dir: Path) -> list[dict[str, Any]]:
    return json.loads((Path(samples_dir) / BOXES_FILE).read_text())


def score(
    samples_dirs: dict[str, Path], reward: dict[str, Any], *, base_dir: Path, threads: int
) -> dict[str, list[float]]:
    """One value per expression; NaN where the target is outside the reward's size class."""
    from rewarded_soups.registry import build_reward

    scorer = build_reward(reward)
    values = {}
    for split, samples_dir in samples_dirs.items():
        records = read_boxes(samples_dir)
        values[split] = scorer([r["box"] for r in records], [r["target"] for r in records])
    return values


def samples_table(samples: dict[str, Path], n: int) -> str:
    """Markdown: for each of the first ``n`` test expressions, the target and every model's box with its IoU."""
    from rewarded_soups.rewards.boxes import box_iou

    def fmt(box) -> str:
        return "no box" if box is None else "(" + ", ".join(f"{v:.2f}" for v in box) + ")"

    columns = {label: read_boxes(Path(path)) for label, path in samples.items()}
    first = next(iter(columns.values()))
    lines = ["Greedy boxes (x0, y0, x1, y1, fractions of the image) of the first test expressions, model by model.", ""]
    for i in range(min(n, len(first))):
        record = first[i]
        lines += [
            f"### {i}: *{record['expression']}* ({record['size']} target {fmt(record['target'])})",
            "",
            "| model | box | IoU |",
            "| --- | --- | --- |",
        ]
        for label, records in columns.items():
            box = records[i]["box"]
            lines.append(f"| {label} | {fmt(box)} | {box_iou(box, record['target']):.2f} |")
        lines.append("")
    return "\n".join(lines)


def qualitative(samples: dict[str, Path], out_dir: Path, settings: dict[str, Any]) -> None:
    """Test images with the target box (green) and each model's box (paper Figure 18), one row per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from safetensors.numpy import load_file

    from rewarded_soups.tasks.image import column_title  # the image grid's labels: θ0, expert, λ

    data = settings["data"]
    images = load_file(Path(next(iter(samples.values()))) / IMAGES_FILE)["images"]
    columns = {label: read_boxes(Path(path)) for label, path in samples.items()}
    n = min(settings["plots"]["samples_in_figure"], len(images))
    fig, axes = plt.subplots(len(columns), n, figsize=(1.9 * n, 2.1 * len(columns)), squeeze=False)
    side = data["image_size"]
    for row, (label, records) in enumerate(columns.items()):
        for col in range(n):
            ax = axes[row][col]
            ax.imshow(images[col], extent=(0, side, side, 0))
            for box, colour in ((records[col]["target"], "lime"), (records[col]["box"], "magenta")):
                if box is not None:
                    x0, y0, x1, y1 = (v * side for v in box)
                    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(records[col]["expression"], fontsize=6, wrap=True)
            if col == 0:
                ax.set_ylabel(column_title(label), fontsize=7)
    fig.suptitle("Target boxes (green) and predictions (magenta)", fontsize=9)
    fig.tight_layout()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / "boxes.png", dpi=120)
    plt.close(fig)
