"""The VQA task's functions at tiny size: θ0 learns to answer, REINFORCE runs on the paper's rewards, soups merge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rewarded_soups import stages
from rewarded_soups.registry import build_reward
from rewarded_soups.samples import read as read_samples

TINY = {
    "data": {
        "image_size": 16,
        "train_images": 96,
        "valid_images": 8,
        "test_images": 8,
        "answers": 4,
    },
    "pretrain": {
        "model": {"channels": 8, "d_model": 32, "layers": 1, "heads": 2, "prompt_len": 12, "max_len": 6},
        "steps": 60,
        "batch_size": 16,
        "learning_rate": 0.003,
    },
    "finetune": {"questions": 16, "steps": 3, "batch_size": 4, "learning_rate": 0.0003, "max_len": 6},
    "evaluate": {"n_images": 8, "validation_size": 4, "max_len": 6},
}
REWARDS = {"bleu1": {"kind": "bleu", "n": 1, "reference_mode": "mean"}, "rouge": {"kind": "rouge"}}


def test_the_task_trains_merges_generates_and_scores(tmp_path: Path):
    from rewarded_soups.tasks import vqa
    from rewarded_soups.vision_language.encoder_decoder import load

    metrics = vqa.pretrain(tmp_path / "theta0", TINY, seed=0, threads=1)
    assert 0 <= metrics["valid_vqa_accuracy"] <= 1 and metrics["xent_final_loss"] > 0
    for name, reward in REWARDS.items():
        fine = stages.finetune(
            vqa, tmp_path / "theta0", tmp_path / name, {name: reward}, {name: 1.0}, TINY, seed=0, threads=1
        )
        assert len(fine["sample_reward"]) == 3
    stages.merge(
        vqa, tmp_path / "theta0", [tmp_path / "bleu1", tmp_path / "rouge"], [0.25, 0.75], tmp_path / "soup", {}
    )
    soup, a, b = (load(tmp_path / d).state_dict() for d in ("soup", "bleu1", "rouge"))
    assert all(np.allclose(soup[k].numpy(), 0.25 * a[k].numpy() + 0.75 * b[k].numpy(), atol=1e-6) for k in soup)
    out = {"test": tmp_path / "samples" / "test", "validation": tmp_path / "samples" / "validation"}
    stages.generate(vqa, tmp_path / "theta0", tmp_path / "soup", out, TINY, seed=0, threads=1)
    records = read_samples(out["test"]).records
    assert len(records) == 8 and all(len(r["references"]) == 4 and r["question"] for r in records)
    for reward in (REWARDS["bleu1"], {"kind": "vqa_accuracy"}):
        values = stages.score(vqa, out, reward, base_dir=tmp_path / "theta0", threads=1)
        assert len(values["test"]) == 8 and len(values["validation"]) == 4
        assert all(0 <= v <= 1 for v in values["test"])
    table = stages.samples_table(vqa, {"init": out["test"]}, 2)
    assert records[0]["question"] in table and "Reference answers:" in table


def test_pretraining_learns_to_answer():
    """Cross-entropy on every reference answer: training questions come to be answered right (VQA accuracy)."""
    from rewarded_soups.tasks.vqa.data import make_set
    from rewarded_soups.vision_language import encoder_decoder as seq2seq
    from rewarded_soups.vision_language.encoder_decoder import greedy_captions
    from rewarded_soups.vision_language.training import train_xent
    from rewarded_soups.vision_language.vocab import build_vocab, flat_captions

    train = make_set(256, seed=0, image_size=16, n_answers=4)
    vocab = build_vocab([*train.questions, *flat_captions(train.answers)])
    config = seq2seq.make_config(
        len(vocab), image_size=16, max_len=6, channels=8, d_model=32, layers=1, heads=2, prompt_len=12
    )
    model = seq2seq.build(config, seed=0)
    prompts = vocab.encode_batch(train.questions, 12)
    accuracy = build_reward({"kind": "vqa_accuracy"})

    def mean_accuracy() -> float:
        answers = greedy_captions(model, train.images[:96], vocab, 6, prompts=prompts[:96])
        return float(np.mean(accuracy(answers, train.answers[:96])))

    before = mean_accuracy()
    metrics = train_xent(
        model, train.images, train.answers, vocab, steps=300, batch_size=32, lr=0.003, seed=0, prompts=prompts
    )
    after = mean_accuracy()
    assert metrics["loss"][-1] < 0.5 * metrics["loss"][0], metrics["loss"]
    # Yes/no, counts and the answer kinds that the question's words decide give a floor far above θ's start.
    assert after > before + 0.25 and after > 0.3, (before, after)


def test_a_model_that_reads_no_prompt_refuses_one_and_one_that_does_needs_it():
    import torch

    from rewarded_soups.vision_language import encoder_decoder as seq2seq

    images = torch.zeros(2, 3, 16, 16)
    plain = seq2seq.build(seq2seq.make_config(10, image_size=16, d_model=16, heads=2, layers=1, channels=4), seed=0)
    assert "prompt_len" not in plain.config  # a captioner's config (and state dict) is as before
    with pytest.raises(ValueError, match="reads no prompt"):
        plain.greedy(images, 3, prompts=torch.ones(2, 4, dtype=torch.long))
    prompted = seq2seq.build(
        seq2seq.make_config(10, image_size=16, d_model=16, heads=2, layers=1, channels=4, prompt_len=4), seed=0
    )
    with pytest.raises(ValueError, match="at most 4 tokens, got none"):
        prompted.greedy(images, 3)
    # The prompt's padding is masked: padding a prompt further changes nothing.
    short = torch.tensor([[5, 6, 2, 0], [7, 2, 0, 0]])
    logits = prompted(images, torch.ones(2, 3, dtype=torch.long), short)
    prompted.config["prompt_len"] = 6
    prompted.prompt.position = torch.nn.Parameter(torch.cat([prompted.prompt.position, torch.zeros(1, 2, 16)], 1))
    padded = torch.cat([short, torch.zeros(2, 2, dtype=torch.long)], 1)
    assert torch.allclose(prompted(images, torch.ones(2, 3, dtype=torch.long), padded), logits, atol=1e-5)


def test_rl_questions_are_a_set_of_their_own():
    """The paper's RL stage uses questions θ0 was not trained on: a fourth seed, not the training split."""
    from rewarded_soups.data.splits import held_out_seed, split_seeds
    from rewarded_soups.tasks import vqa

    data = TINY["data"]
    rl = vqa._rl_questions(data, 32, seed=0)
    train = vqa._splits(data, seed=0).train
    assert len(rl) == 32 and rl.questions != train.questions[:32]
    assert held_out_seed(0) not in split_seeds(0) and held_out_seed(0) != held_out_seed(1)
    assert len(vqa._rl_questions(data, 0, seed=0)) == len(train)
    assert vqa._rl_questions(data, 32, seed=0).questions == rl.questions  # deterministic
