"""Visual grounding (paper Section 3.4, Appendix G): experts on small, medium and large objects.

θ0 is a sequence-to-sequence grounding model in the style of UnIVAL/OFA: the
small encoder-decoder of :mod:`rewarded_soups.vision_language`, reading the
referring expression through its prompt encoder and writing the box as four
location tokens (:mod:`.data`), pre-trained with cross-entropy on generated
scenes of two to four shapes of three sizes. Experts and MORL fine-tune it
with the paper's cross-entropy + 5 × REINFORCE loss (:mod:`.training`) on
their reward: accuracy (IoU > 0.5) on targets of one size class
(:mod:`rewarded_soups.rewards.boxes`). Soups interpolate whole state dicts.
Samples are the greedy boxes of the held-out expressions with their targets,
and the first test images (for the qualitative figure).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rewarded_soups.gpus import torch_threads
from rewarded_soups.pretrained import REFERENCE_FILE
from rewarded_soups.registry import register_task
from rewarded_soups.tasks.base import Run
from rewarded_soups.vision_language.checkpoint import VOCAB_FILE, merge_spec  # noqa: F401
from rewarded_soups.vision_language.policy import load_model
from rewarded_soups.vision_language.pretrained.tasks import local_inputs  # noqa: F401

register_task(
    "grounding",
    module=__name__,
    modality="box",
    baselines=("wise",),
    # How many test images the qualitative figure shows: display only, read by that job alone.
    reads={"qualitative": ("plots.samples_in_figure",), "merge": ("merge.lora_mode",)},
)

log = logging.getLogger(__name__)

SAVED_IMAGES = 8  # test images kept with the samples, for the qualitative figure
BOX_TOKENS = 5  # four location tokens and <eos>


def check_settings(task: dict[str, Any]) -> None:
    from rewarded_soups.vision_language.settings import check_settings as check_model

    check_model(task, max_len_sections=())


def _splits(data: dict[str, Any], seed: int):
    from rewarded_soups.tasks.grounding.data import make_splits

    if data.get("source") == "datasets":
        from rewarded_soups.tasks.grounding.data import real_splits

        return real_splits(data, seed)
    return make_splits(data["train_images"], data["valid_images"], data["test_images"], seed, data["image_size"])


def pretrain(out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
    """Cross-entropy on (image, expression) → box tokens, from scratch; or a reference to ``pretrain.checkpoint``."""
    torch_threads(threads)
    if settings["pretrain"].get("checkpoint"):
        from rewarded_soups.vision_language.pretrained.tasks import reference_theta0

        return reference_theta0(out_dir, settings)
    from rewarded_soups.tasks.grounding.data import box_to_tokens, build_vocab
    from rewarded_soups.vision_language.encoder_decoder import save
    from rewarded_soups.vision_language.policy import Policy
    from rewarded_soups.vision_language.training import pretrain_xent

    data, cfg = settings["data"], settings["pretrain"]
    splits = _splits(data, seed)
    vocab = build_vocab(splits.train.expressions, data["bins"])
    targets = [[box_to_tokens(b, data["bins"])] for b in splits.train.boxes]
    model, metrics = pretrain_xent(
        vocab,
        splits.train.images,
        targets,
        settings,
        steps=cfg["steps"],
        seed=seed,
        prompts=splits.train.expressions,
        max_len=BOX_TOKENS,
    )
    valid = _accuracy_by_size(Policy(model, vocab), splits.valid, data["bins"])
    log.info("θ0 validation accuracy (IoU > 0.5) by size: %s", valid)
    out_dir = Path(out_dir)
    save(model, out_dir)
    vocab.save(out_dir / VOCAB_FILE)
    return {
        "xent_final_loss": metrics["loss"][-1] if metrics["loss"] else None,
        "valid_accuracy": valid,
        "seconds": metrics["seconds"],
    }


def _predict(policy, dataset, n: int | None = None) -> list[str]:
    """Greedy location tokens for the first ``n`` expressions of ``dataset`` (all with None)."""
    n = len(dataset) if n is None else n
    return policy.generate(dataset.images[:n], BOX_TOKENS, dataset.expressions[:n])


def _accuracy_by_size(policy, dataset, bins: int) -> dict[str, float]:
    """The box_accuracy reward (IoU > 0.5) of the greedy boxes, averaged per target size class."""
    from rewarded_soups.rewards.boxes import BoxAccuracy
    from rewarded_soups.tasks.grounding.data import tokens_to_box

    boxes = [tokens_to_box(text, bins) for text in _predict(policy, dataset)]
    hits: dict[str, list[float]] = {}
    for hit, size in zip(BoxAccuracy()(boxes, dataset.boxes), dataset.sizes):
        hits.setdefault(size, []).append(hit)
    return {size: sum(v) / len(v) for size, v in sorted(hits.items())}


def finetune(run: Run) -> dict[str, Any]:
    """Cross-entropy + REINFORCE from θ0 on Σ weights[r]·R_r (an expert when one weight is 1)."""
    from rewarded_soups.rewards import Scalarised
    from rewarded_soups.tasks.grounding.data import box_to_tokens, tokens_to_box
    from rewarded_soups.tasks.grounding.training import train_xent_reinforce
    from rewarded_soups.vision_language.encoder_decoder import save

    data, cfg = run.settings["data"], run.settings["finetune"]
    train = _splits(data, run.data_seed).train
    if (run.base_dir / REFERENCE_FILE).exists():
        return _finetune_pretrained(run, train)
    policy = load_model(run.base_dir, None, run.settings, threads=run.threads)
    model, vocab = policy.model, policy.vocab
    # A target outside a reward's size class scores NaN: it adds 0 (nothing to reinforce).
    with Scalarised(run.rewards, run.weights, missing=0.0) as scalarised:

        def reward(predictions: list[str], targets) -> list[float]:
            return scalarised([tokens_to_box(p, data["bins"]) for p in predictions], targets)

        metrics = train_xent_reinforce(
            model,
            train.images,
            vocab.encode_batch(train.expressions, model.prompt_len),
            vocab.encode_batch([box_to_tokens(b, data["bins"]) for b in train.boxes], BOX_TOKENS),
            train.boxes,
            reward,
            vocab,
            steps=cfg["steps"],
            batch_size=cfg["batch_size"],
            lr=cfg["learning_rate"],
            max_len=BOX_TOKENS,
            seed=run.seed,
            xent_weight=cfg["xent_weight"],
            reinforce_weight=cfg["reinforce_weight"],
            baseline=cfg["baseline"],
        )
    save(model, run.out_dir)
    return metrics


def _finetune_pretrained(run: Run, train: Any) -> dict[str, Any]:
    """Cross-entropy on the target's location tokens + REINFORCE, for a transformers θ0 (PaliGemma's boxes)."""
    from rewarded_soups.rewards import Scalarised
    from rewarded_soups.vision_language.pretrained import tasks as pretrained
    from rewarded_soups.vision_language.pretrained.boxes import box_to_text, text_to_box

    with Scalarised(run.rewards, run.weights, missing=0.0) as scalarised:

        def reward(texts: list[str], indices: list[int]) -> list[float]:
            return list(scalarised([text_to_box(t) for t in texts], [train.boxes[i] for i in indices]))

        return pretrained.finetune(
            run,
            train.images,
            train.expressions,
            reward,
            targets=[box_to_text(b) for b in train.boxes],
            max_len=BOX_TOKENS,
        )


def _box_reader(policy: Any, bins: int):
    """How a model's text becomes a box: location tokens of the small vocabulary, or PaliGemma's."""
    from rewarded_soups.tasks.grounding.data import tokens_to_box
    from rewarded_soups.vision_language.pretrained.tasks import PretrainedPolicy

    if isinstance(policy, PretrainedPolicy):
        from rewarded_soups.vision_language.pretrained.boxes import text_to_box

        return text_to_box
    return lambda text: tokens_to_box(text, bins)


def generate(policy: Any, split: str, settings: dict[str, Any], *, seed: int):
    """Greedy boxes for a held-out split's expressions, with the targets' boxes and size classes."""
    import numpy as np

    from rewarded_soups.samples import Samples

    data, cfg = settings["data"], settings["evaluate"]
    splits = _splits(data, seed)
    held_out, n = (splits.test, cfg["n_images"]) if split == "test" else (splits.valid, cfg["validation_size"])
    n = min(len(held_out), n or len(held_out))
    read_box = _box_reader(policy, data["bins"])
    records = [
        {
            "expression": expression,
            "prediction": text,
            "box": read_box(text),
            "target": [float(v) for v in target],
            "size": size,
        }
        for expression, text, target, size in zip(
            held_out.expressions, _predict(policy, held_out, n), held_out.boxes, held_out.sizes
        )
    ]
    images = held_out.images
    shown = (
        images[: min(n, SAVED_IMAGES)]
        if isinstance(images, np.ndarray)
        else images.thumbnails(min(n, SAVED_IMAGES), 128)
    )
    return Samples(records, {"images": np.ascontiguousarray(shown)})


def reward_inputs(samples: Any) -> tuple[list[Any], list[Any]]:
    """(predicted boxes, target boxes); a reward scores NaN where the target is outside its size class."""
    return samples.column("box"), samples.column("target")


def samples_table(samples: dict[str, Any], n: int) -> str:
    """Markdown: for each of the first ``n`` test expressions, the target and every model's box with its IoU."""
    from rewarded_soups.rewards.boxes import box_iou

    def fmt(box) -> str:
        return "no box" if box is None else "(" + ", ".join(f"{v:.2f}" for v in box) + ")"

    first = next(iter(samples.values())).records
    lines = ["Greedy boxes (x0, y0, x1, y1, fractions of the image) of the first test expressions, model by model.", ""]
    for i in range(min(n, len(first))):
        record = first[i]
        lines += [
            f"### {i}: *{record['expression']}* ({record['size']} target {fmt(record['target'])})",
            "",
            "| model | box | IoU |",
            "| --- | --- | --- |",
        ]
        for label, s in samples.items():
            box = s.records[i]["box"]
            lines.append(f"| {label} | {fmt(box)} | {box_iou(box, record['target']):.2f} |")
        lines.append("")
    return "\n".join(lines)


def qualitative(samples: dict[str, Path], out_dir: Path, settings: dict[str, Any]) -> None:
    """Test images with the target box (green) and each model's box (paper Figure 18), one row per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from rewarded_soups.plan import model_label

    images = next(iter(samples.values())).arrays["images"]
    columns = {label: s.records for label, s in samples.items()}
    n = min(settings["plots"]["samples_in_figure"], len(images))
    fig, axes = plt.subplots(len(columns), n, figsize=(1.9 * n, 2.1 * len(columns)), squeeze=False)
    side = images.shape[1]
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
                ax.set_ylabel(model_label(label), fontsize=7)
    fig.suptitle("Target boxes (green) and predictions (magenta)", fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "boxes.png", dpi=120)
    plt.close(fig)
