"""Visual question answering (paper Section 3.5, Appendix H): experts on BLEU1 and METEOR.

θ0 answers a question about an image token by token, like OFA: the small
encoder-decoder of :mod:`rewarded_soups.vision_language` with its prompt
encoder reading the question, pre-trained with cross-entropy on generated
grid scenes, each question with ten reference answers in varied wording
(:mod:`.data`; every reference is its own training pair, as VQA models learn
from the annotators' answer distribution). Experts and MORL fine-tune it, on
questions θ0 never saw (the paper's held-out RL set), with self-critical
REINFORCE on the captioning metrics averaged over the ten answers
(``reference_mode: mean``, the paper's reward). Samples hold the answer as
the caption and the ten answers as references, so every caption metric and
the VQA accuracy (:mod:`rewarded_soups.rewards.vqa`) score them.
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
from rewarded_soups.vision_language.policy import load_model  # noqa: F401
from rewarded_soups.vision_language.pretrained.tasks import local_inputs, uses_checkpoint  # noqa: F401
from rewarded_soups.vision_language.settings import check_settings  # noqa: F401

register_task(
    "vqa",
    module=__name__,
    modality="caption",
    baselines=("wise",),
    # How LoRA experts of a pretrained θ0 are combined (see schema.yaml).
    reads={"merge": ("merge.lora_mode",)},
)

log = logging.getLogger(__name__)


def _splits(data: dict[str, Any], seed: int):
    from rewarded_soups.tasks.vqa.data import make_splits

    if data.get("source") == "datasets":
        from rewarded_soups.tasks.vqa.data import real_splits

        return real_splits(data, seed)
    return make_splits(
        data["train_images"], data["valid_images"], data["test_images"], seed, data["image_size"], data["answers"]
    )


def _rl_questions(data: dict[str, Any], n: int, seed: int):
    """The RL stage's ``n`` questions: a set that θ0 never saw, as in the paper's Appendix H (``finetune.questions``);
    with ``n = 0``, the pre-training questions again. Real data (``data.source: datasets``): the configured
    training split (``finetune.questions`` does not apply; ``data.max_examples.train`` cuts it)."""
    from rewarded_soups.data.splits import held_out_seed
    from rewarded_soups.tasks.vqa.data import make_set

    if not n or data.get("source") == "datasets":  # real data: the configured training split
        return _splits(data, seed).train
    return make_set(n, held_out_seed(seed), data["image_size"], data["answers"])


def pretrain(out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
    """Cross-entropy from scratch on (image, question) → each of the ten reference answers; or a reference
    to ``pretrain.checkpoint``."""
    torch_threads(threads)
    if uses_checkpoint(settings):
        from rewarded_soups.vision_language.pretrained.tasks import reference_theta0

        train = _splits(settings["data"], seed).train
        return reference_theta0(out_dir, settings, [list(a) for a in train.answers])
    from rewarded_soups.rewards.vqa import VQAAccuracy
    from rewarded_soups.vision_language.encoder_decoder import save
    from rewarded_soups.vision_language.policy import Policy
    from rewarded_soups.vision_language.training import pretrain_xent
    from rewarded_soups.vision_language.vocab import build_vocab, flat_captions

    data, cfg = settings["data"], settings["pretrain"]
    splits = _splits(data, seed)
    vocab = build_vocab([*splits.train.questions, *flat_captions(splits.train.answers)])
    train = splits.train
    model, metrics = pretrain_xent(
        vocab, train.images, train.answers, settings, steps=cfg["steps"], seed=seed, prompts=train.questions
    )
    valid = splits.valid
    answers = Policy(model, vocab).generate(valid.images, model.max_len, valid.questions)
    accuracy = sum(VQAAccuracy()(answers, valid.answers)) / max(len(answers), 1)
    log.info("θ0 validation VQA accuracy %.3f", accuracy)
    out_dir = Path(out_dir)
    save(model, out_dir)
    vocab.save(out_dir / VOCAB_FILE)
    (out_dir / REFERENCES_FILE).write_text(json.dumps([list(a) for a in splits.train.answers]))
    return {
        "xent_final_loss": metrics["loss"][-1] if metrics["loss"] else None,
        "valid_vqa_accuracy": accuracy,
        "seconds": metrics["seconds"],
    }


def finetune(run: Run) -> dict[str, Any]:
    """Self-critical REINFORCE from θ0 on questions θ0 never saw (``finetune.questions``), against their answers."""
    from rewarded_soups.vision_language.training import self_critical_finetune

    train = _rl_questions(run.settings["data"], run.settings["finetune"]["questions"], run.data_seed)
    if (run.base_dir / REFERENCE_FILE).exists():
        from rewarded_soups.rewards import Scalarised
        from rewarded_soups.vision_language.pretrained import tasks as pretrained

        with Scalarised(run.rewards, run.weights, reward_context(run.base_dir)) as scalarised:
            reward = against_references(scalarised, train.answers)
            return pretrained.finetune(run, train.images, train.questions, reward)
    return self_critical_finetune(run, train.images, train.answers, train.questions)


def generate(policy: Any, split: str, settings: dict[str, Any], *, seed: int):
    """Greedy answers to a held-out split's questions, with the ten reference answers."""
    from rewarded_soups.samples import Samples
    from rewarded_soups.vision_language.records import shown_images

    cfg = settings["evaluate"]
    splits = _splits(settings["data"], seed)
    held_out, n = (splits.test, cfg["n_images"]) if split == "test" else (splits.valid, cfg["validation_size"])
    n = len(held_out) if n is None else n
    questions = held_out.questions[:n]
    answers = policy.generate(held_out.images[:n], cfg["max_len"], questions)
    records = [
        {"question": q, "kind": k, "caption": a, "references": list(r)}
        for q, k, a, r in zip(questions, held_out.kinds, answers, held_out.answers)
    ]
    return Samples(records, {"images": shown_images(held_out.images, n)})


def samples_table(samples: dict[str, Any], n: int) -> str:
    """Markdown: for each of the first ``n`` test questions, its answers and every model's answer."""
    first = next(iter(samples.values())).records
    lines = ["Greedy answers to the first test questions, model by model (λ: interpolation weights).", ""]
    for i in range(min(n, len(first))):
        refs = ", ".join(sorted(set(first[i]["references"])))
        lines += [f"### {i}: *{first[i]['question']}*", "", f"Reference answers: {refs}", "", "| model | answer |"]
        lines.append("| --- | --- |")
        lines += [f"| {label} | {s.records[i]['caption']} |" for label, s in samples.items()]
        lines.append("")
    return "\n".join(lines)
