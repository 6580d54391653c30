"""Visual question answering (paper Section 3.5, Appendix H): experts on BLEU1 and METEOR.

θ0 answers a question about an image token by token, like OFA: the
captioning task's encoder and GPT-2 decoder with cross-attention
(:mod:`rewarded_soups.tasks.captioning.model`) with its prompt encoder
reading the question, pre-trained with cross-entropy on generated grid
scenes, each question with ten reference answers in varied wording
(:mod:`.data`; every reference is its own training pair, as VQA models learn
from the annotators' answer distribution). Experts and MORL fine-tune it, on
questions θ0 never saw (the paper's held-out RL set), with REINFORCE (the
captioning task's self-critical loop) on the captioning metrics averaged
over the ten answers (``reference_mode: mean``, the paper's reward). Samples
have the captioning task's format (``captions.json``: the answer as the
caption, the ten answers as references), so every captioning metric and the
VQA accuracy (:mod:`rewarded_soups.rewards.vqa`) score them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rewarded_soups.gpus import torch_threads
from rewarded_soups.registry import register_task

# The captioning task's sample files, merge (full state dicts) and scoring (caption metrics,
# CIDEr's document frequencies from θ0's training references) serve answers unchanged.
from rewarded_soups.tasks.captioning import CAPTIONS_FILE, REFERENCES_FILE, VOCAB_FILE, read_captions

register_task("vqa", module=__name__, modality="caption", baselines=("wise",))

log = logging.getLogger(__name__)


def check_settings(task: dict[str, Any]) -> None:
    from rewarded_soups.tasks.captioning import check_encoder_decoder_settings

    check_encoder_decoder_settings(task)


def _splits(data: dict[str, Any], seed: int):
    from rewarded_soups.tasks.vqa.data import make_splits

    return make_splits(
        data["train_images"], data["valid_images"], data["test_images"], seed, data["image_size"], data["answers"]
    )


def _rl_questions(data: dict[str, Any], n: int, seed: int):
    """The RL stage's ``n`` questions: a set that θ0 never saw, as in the paper's Appendix H (``finetune.questions``);
    with ``n = 0``, the pre-training questions again."""
    from rewarded_soups.data.splits import held_out_seed
    from rewarded_soups.tasks.vqa.data import make_set

    if not n:
        return _splits(data, seed).train
    return make_set(n, held_out_seed(seed), data["image_size"], data["answers"])


def pretrain(out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
    """Cross-entropy from scratch on (image, question) → each of the ten reference answers."""
    torch_threads(threads)
    from rewarded_soups.rewards.vqa import VQAAccuracy
    from rewarded_soups.tasks.captioning import model as seq2seq
    from rewarded_soups.tasks.captioning.data import build_vocab, flat_captions
    from rewarded_soups.tasks.captioning.scst import greedy_captions, train_xent

    data, cfg = settings["data"], settings["pretrain"]
    splits = _splits(data, seed)
    vocab = build_vocab([*splits.train.questions, *flat_captions(splits.train.answers)])
    model = seq2seq.build(seq2seq.make_config(len(vocab), image_size=data["image_size"], **cfg["model"]), seed)
    log.info("θ0: %d parameters, vocabulary %d words", seq2seq.parameter_count(model), len(vocab))
    prompts = vocab.encode_batch(splits.train.questions, model.prompt_len)
    metrics = train_xent(
        model,
        splits.train.images,
        splits.train.answers,
        vocab,
        steps=cfg["steps"],
        batch_size=cfg["batch_size"],
        lr=cfg["learning_rate"],
        seed=seed,
        prompts=prompts,
    )
    valid = splits.valid
    answers = greedy_captions(
        model, valid.images, vocab, model.max_len, prompts=vocab.encode_batch(valid.questions, model.prompt_len)
    )
    accuracy = sum(VQAAccuracy()(answers, valid.answers)) / max(len(answers), 1)
    log.info("θ0 validation VQA accuracy %.3f", accuracy)
    out_dir = Path(out_dir)
    seq2seq.save(model, out_dir)
    vocab.save(out_dir / VOCAB_FILE)
    (out_dir / REFERENCES_FILE).write_text(json.dumps([list(a) for a in splits.train.answers]))
    return {
        "xent_final_loss": metrics["loss"][-1] if metrics["loss"] else None,
        "valid_vqa_accuracy": accuracy,
        "seconds": metrics["seconds"],
    }


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
    """Self-critical REINFORCE from θ0 on Σ weights[r]·R_r (an expert when one weight is 1)."""
    torch_threads(threads)
    from rewarded_soups.tasks.captioning import _close, _reward_fn
    from rewarded_soups.tasks.captioning import model as seq2seq
    from rewarded_soups.tasks.captioning.data import Vocab
    from rewarded_soups.tasks.captioning.scst import train_scst

    base_dir, cfg = Path(base_dir), settings["finetune"]
    train = _rl_questions(settings["data"], cfg["questions"], seed)
    model = seq2seq.load(base_dir)
    vocab = Vocab.load(base_dir / VOCAB_FILE)
    reward, scorers = _reward_fn(rewards, weights, json.loads((base_dir / REFERENCES_FILE).read_text()))
    log.info("self-critical REINFORCE on %s", " + ".join(f"{w:g}·{r}" for r, w in weights.items()))
    try:
        metrics = train_scst(
            model,
            train.images,
            train.answers,
            reward,
            vocab,
            steps=cfg["steps"],
            batch_size=cfg["batch_size"],
            lr=cfg["learning_rate"],
            max_len=cfg["max_len"],
            seed=seed,
            prompts=vocab.encode_batch(train.questions, model.prompt_len),
        )
    finally:
        _close(scorers)
    seq2seq.save(model, Path(out_dir))
    return metrics


def generate(
    base_dir: Path,
    model_dir: Path | None,
    out_dirs: dict[str, Path],
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
) -> None:
    """Greedy answers to each held-out split's questions, with the ten reference answers."""
    torch_threads(threads)
    from rewarded_soups.tasks.captioning import model as seq2seq
    from rewarded_soups.tasks.captioning.data import Vocab
    from rewarded_soups.tasks.captioning.scst import greedy_captions

    base_dir, cfg = Path(base_dir), settings["evaluate"]
    splits = _splits(settings["data"], seed)
    vocab = Vocab.load(base_dir / VOCAB_FILE)
    model = seq2seq.load(Path(model_dir) if model_dir is not None else base_dir)
    for split, out_dir in out_dirs.items():
        held_out, n = (splits.test, cfg["n_images"]) if split == "test" else (splits.valid, cfg["validation_size"])
        n = len(held_out) if n is None else n
        questions = held_out.questions[:n]
        prompts = vocab.encode_batch(questions, model.prompt_len)
        answers = greedy_captions(model, held_out.images[:n], vocab, cfg["max_len"], prompts=prompts)
        records = [
            {"question": q, "kind": k, "caption": a, "references": list(r)}
            for q, k, a, r in zip(questions, held_out.kinds, answers, held_out.answers)
        ]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / CAPTIONS_FILE).write_text(json.dumps(records, indent=1))


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


def score(
    samples_dirs: dict[str, Path], reward: dict[str, Any], *, base_dir: Path, threads: int
) -> dict[str, list[float]]:
    """Caption metrics of the answers against the reference answers, as the captioning task scores captions."""
    from rewarded_soups.tasks import captioning

    return captioning.score(samples_dirs, reward, base_dir=base_dir, threads=threads)


def samples_table(samples: dict[str, Path], n: int) -> str:
    """Markdown: for each of the first ``n`` test questions, its answers and every model's answer."""
    columns = {label: read_captions(Path(path)) for label, path in samples.items()}
    first = next(iter(columns.values()))
    lines = ["Greedy answers to the first test questions, model by model (λ: interpolation weights).", ""]
    for i in range(min(n, len(first))):
        refs = ", ".join(sorted(set(first[i]["references"])))
        lines += [f"### {i}: *{first[i]['question']}*", "", f"Reference answers: {refs}", "", "| model | answer |"]
        lines.append("| --- | --- |")
        lines += [f"| {label} | {records[i]['caption']} |" for label, records in columns.items()]
        lines.append("")
    return "\n".join(lines)
