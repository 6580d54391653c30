"""Image captioning (paper Section 3.2, Appendix E): one expert per captioning metric.

θ0 is the small image-to-text model of :mod:`rewarded_soups.vision_language`
(a convolutional encoder and a GPT-2 decoder with cross-attention) trained
from scratch with cross-entropy on generated scenes of shapes and their five
reference captions (:mod:`.data`), then optimised on CIDEr with self-critical
REINFORCE like the paper's initialisation. Experts and MORL run the same
self-critical training from θ0 on their (mixed) reward; soups interpolate
whole state dicts. Samples are the greedy captions of the held-out images
with their references.

Baselines of the paper's captioning experiments, when enabled in the config:
prediction ensembling of two experts (Figure 5c) and interpolation toward θ0
(WiSE, Figure 14e).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rewarded_soups.gpus import torch_threads
from rewarded_soups.pretrained import REFERENCE_FILE
from rewarded_soups.registry import register_task
from rewarded_soups.tasks.base import Run
from rewarded_soups.vision_language.captions import (  # noqa: F401
    REFERENCES_FILE,
    against_references,
    reward_context,
    reward_inputs,
)
from rewarded_soups.vision_language.checkpoint import VOCAB_FILE, merge_spec  # noqa: F401
from rewarded_soups.vision_language.policy import load_ensemble, load_model  # noqa: F401
from rewarded_soups.vision_language.pretrained.tasks import local_inputs, uses_checkpoint  # noqa: F401
from rewarded_soups.vision_language.settings import check_settings  # noqa: F401

register_task(
    "captioning",
    module=__name__,
    modality="caption",
    baselines=("ensemble", "wise"),
    # How LoRA experts of a pretrained θ0 are combined (see schema.yaml).
    reads={"merge": ("merge.lora_mode",)},
)

log = logging.getLogger(__name__)


def _splits(data: dict[str, Any], seed: int):
    from rewarded_soups.tasks.captioning.data import make_splits

    if data.get("source") == "datasets":
        from rewarded_soups.tasks.captioning.data import real_splits

        return real_splits(data, seed)
    return make_splits(
        data["train_images"], data["valid_images"], data["test_images"], seed, data["image_size"], data["captions"]
    )


def pretrain(out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
    """Cross-entropy from scratch, then self-critical training on CIDEr (the paper's initialisation); or a
    reference to ``pretrain.checkpoint``."""
    torch_threads(threads)
    if uses_checkpoint(settings):
        from rewarded_soups.vision_language.pretrained.tasks import reference_theta0

        train = _splits(settings["data"], seed).train
        return reference_theta0(out_dir, settings, [list(c) for c in train.captions])
    from rewarded_soups.rewards import Scalarised
    from rewarded_soups.vision_language.encoder_decoder import save
    from rewarded_soups.vision_language.policy import Policy
    from rewarded_soups.vision_language.training import pretrain_xent, train_scst
    from rewarded_soups.vision_language.vocab import build_vocab, flat_captions

    data, cfg = settings["data"], settings["pretrain"]
    splits = _splits(data, seed)
    vocab = build_vocab(flat_captions(splits.train.captions))
    model, xent = pretrain_xent(
        vocab, splits.train.images, splits.train.captions, settings, steps=cfg["xent_steps"], seed=seed
    )
    references = [list(c) for c in splits.train.captions]
    with Scalarised({"cider": {"kind": "cider"}}, {"cider": 1.0}, {"df_references": references}) as reward:
        valid = splits.valid
        valid_before = sum(reward(Policy(model, vocab).generate(valid.images, model.max_len), valid.captions))
        scst = train_scst(
            model,
            splits.train.images,
            splits.train.captions,
            reward,
            vocab,
            steps=cfg["scst_steps"],
            batch_size=cfg["scst_batch_size"],
            lr=cfg["scst_learning_rate"],
            max_len=cfg["scst_max_len"],
            seed=seed,
        )
        valid_after = sum(reward(Policy(model, vocab).generate(valid.images, model.max_len), valid.captions))
    out_dir = Path(out_dir)
    save(model, out_dir)
    vocab.save(out_dir / VOCAB_FILE)
    (out_dir / REFERENCES_FILE).write_text(json.dumps(references))
    n_valid = len(splits.valid.captions)
    return {
        "xent_final_loss": xent["loss"][-1] if xent["loss"] else None,
        "valid_cider_after_xent": valid_before / n_valid,
        "valid_cider_after_scst": valid_after / n_valid,
        "seconds": xent["seconds"] + scst["seconds"],
    }


def finetune(run: Run) -> dict[str, Any]:
    """Self-critical REINFORCE from θ0 on the training images' captions."""
    from rewarded_soups.vision_language.training import self_critical_finetune

    train = _splits(run.settings["data"], run.data_seed).train
    if (run.base_dir / REFERENCE_FILE).exists():
        from rewarded_soups.rewards import Scalarised
        from rewarded_soups.vision_language.pretrained import tasks as pretrained

        with Scalarised(run.rewards, run.weights, reward_context(run.base_dir)) as scalarised:
            return pretrained.finetune(run, train.images, None, against_references(scalarised, train.captions))
    return self_critical_finetune(run, train.images, train.captions)


def generate(policy: Any, split: str, settings: dict[str, Any], *, seed: int):
    """Greedy captions of a held-out split's images (the paper evaluates greedy/beam decoding), with references."""
    from rewarded_soups.samples import Samples
    from rewarded_soups.vision_language.records import shown_images

    cfg = settings["evaluate"]
    splits = _splits(settings["data"], seed)
    held_out, n = (splits.test, cfg["n_images"]) if split == "test" else (splits.valid, cfg["validation_size"])
    n = len(held_out.images) if n is None else n
    captions = policy.generate(held_out.images[:n], cfg["max_len"])
    records = [{"caption": c, "references": list(r)} for c, r in zip(captions, held_out.captions[:n])]
    return Samples(records, {"images": shown_images(held_out.images, n)})


def fisher(run: Run) -> dict[str, dict[str, Any]]:
    """The diagonal Fisher of the expert in ``run.out_dir`` on its own training images, with captions it samples."""
    torch_threads(run.threads)
    import torch

    from rewarded_soups.gpus import torch_device
    from rewarded_soups.merging.fisher import diagonal_fisher
    from rewarded_soups.vision_language import encoder_decoder as captioner
    from rewarded_soups.vision_language.checkpoint import WEIGHTS_FILE

    settings, seed = run.settings, run.seed
    dev = torch_device()
    pixels = captioner.images_to_tensor(_splits(settings["data"], run.data_seed).train.images)
    n = min(settings["merge"]["fisher"]["samples"], len(pixels))
    chosen = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    model = captioner.load(run.out_dir).to(dev).eval()
    sampler = torch.Generator(device=dev).manual_seed(seed)
    max_len = settings["finetune"]["max_len"]

    def sample_logprob(i: int) -> torch.Tensor:
        return model.sample(pixels[chosen[i] : chosen[i] + 1].to(dev), max_len, generator=sampler)[1].sum()

    return {WEIGHTS_FILE: diagonal_fisher(dict(model.named_parameters()), sample_logprob, n)}


def samples_table(samples: dict[str, Any], n: int) -> str:
    """Markdown: for each of the first ``n`` test images, one reference and every model's caption."""
    first = next(iter(samples.values())).records
    lines = ["Greedy captions of the first test images, model by model (λ: interpolation weights).", ""]
    for i in range(min(n, len(first))):
        lines += [f"### Image {i}", "", f"Reference: *{first[i]['references'][0]}*", "", "| model | caption |"]
        lines.append("| --- | --- |")
        lines += [f"| {label} | {s.records[i]['caption']} |" for label, s in samples.items()]
        lines.append("")
    return "\n".join(lines)
