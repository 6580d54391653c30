"""The captioning task's core: data, model, metrics and SCST (fast, CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rewarded_soups.rewards import caption_metrics as metrics
from rewarded_soups.tasks.captioning import data
from rewarded_soups.vision_language import encoder_decoder as cap
from rewarded_soups.vision_language import training as scst
from rewarded_soups.vision_language import vocab as words

TINY = {"image_size": 16, "channels": 8, "d_model": 32, "layers": 1, "heads": 2, "max_len": 12}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run far faster on one thread, and many times slower when two threads share a busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def splits():
    return data.make_splits(24, 4, 4, seed=3, image_size=16)


@pytest.fixture(scope="module")
def vocab(splits) -> words.Vocab:
    return words.build_vocab(words.flat_captions(splits.train.captions))


# --- data ---------------------------------------------------------------------------------------------------------


def test_splits_are_seeded_and_distinct(splits):
    again = data.make_splits(24, 4, 4, seed=3, image_size=16)
    assert np.array_equal(again.train.images, splits.train.images) and again.test.captions == splits.test.captions
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (24, 4, 4)
    assert splits.train.images.shape == (24, 16, 16, 3)
    assert splits.train.captions[:4] != splits.valid.captions and splits.valid.captions != splits.test.captions
    assert data.make_splits(24, 4, 4, seed=4, image_size=16).train.captions != splits.train.captions


def test_vocab_roundtrip(vocab, tmp_path):
    assert vocab.itos[:4] == ("<pad>", "<bos>", "<eos>", "<unk>")
    assert (words.PAD_ID, words.BOS_ID, words.EOS_ID, words.UNK_ID) == (0, 1, 2, 3)
    ids = vocab.encode("A red  circle")
    assert ids[-1] == words.EOS_ID and vocab.decode(ids) == "a red circle"
    assert vocab.encode("a zebra")[1] == words.UNK_ID
    batch = vocab.encode_batch(["a red circle", "a"], max_len=5)
    assert batch.shape == (2, 5) and batch.dtype == np.int64
    assert batch[1].tolist() == [vocab.stoi["a"], words.EOS_ID, 0, 0, 0]
    assert vocab.decode_batch(batch) == ["a red circle", "a"]
    assert vocab.decode([words.BOS_ID, vocab.stoi["red"], words.EOS_ID, vocab.stoi["blue"]]) == "red"
    vocab.save(tmp_path / "vocab.json")
    assert words.Vocab.load(tmp_path / "vocab.json") == vocab


# --- SCST loss ----------------------------------------------------------------------------------------------------


def _one_step(sample_reward: float, baseline: float) -> tuple[float, float, torch.Tensor]:
    """log p(token 2) before and after one SGD step on the SCST loss, and the gradient."""
    logits = torch.zeros(5, requires_grad=True)
    logp = torch.log_softmax(logits, dim=0)[2].unsqueeze(0)
    loss = scst.scst_loss(logp, torch.tensor([sample_reward]), torch.tensor([baseline]))
    loss.backward()
    grad = logits.grad.clone()
    with torch.no_grad():
        logits -= 0.5 * logits.grad
        after = torch.log_softmax(logits, dim=0)[2].item()
    return logp.item(), after, grad


def test_scst_loss_reinforces_samples_that_beat_the_baseline():
    before, after, _ = _one_step(sample_reward=1.0, baseline=0.4)
    assert after > before
    before, after, _ = _one_step(sample_reward=0.2, baseline=0.4)
    assert after < before
    _, _, grad = _one_step(sample_reward=0.4, baseline=0.4)
    assert torch.count_nonzero(grad) == 0


def test_scst_loss_value_and_detached_advantage():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    rewards = torch.tensor([1.0, 0.0], requires_grad=True)
    baseline = torch.tensor([0.5, 0.5], requires_grad=True)
    loss = scst.scst_loss(logp, rewards, baseline)
    assert loss.item() == pytest.approx(-((0.5 * -1.0) + (-0.5 * -2.0)) / 2)
    loss.backward()
    assert rewards.grad is None and baseline.grad is None
    assert torch.allclose(logp.grad, torch.tensor([-0.25, 0.25]))


# --- metrics ------------------------------------------------------------------------------------------------------


def test_bleu_by_hand():
    refs = [["a red circle on the left", "a big red circle on the left side now"]]
    assert metrics.score("bleu1", ["a red circle on the left"], refs)[0] == pytest.approx(1.0)
    # 4 words, clipped matches "a" (once) and "circle": p1 = 2/4; closest reference length 6.
    assert metrics.score("bleu1", ["a a a circle"], refs)[0] == pytest.approx(0.5 * math.exp(1 - 6 / 4))
    # A candidate longer than the closest reference has no brevity penalty.
    assert metrics.score("bleu1", ["a red circle on the left x"], refs[:1])[0] == pytest.approx(6 / 7)
    exact, partial = metrics.score("bleu4", ["a red circle on the left", "a red circle at the top"], refs * 2)
    assert exact == pytest.approx(1.0) and 0 < partial < 0.5


def test_rouge_l_by_hand():
    candidate = "a red circle at the top"  # 6 words
    refs = ["a big red circle on the left", "a red circle"]
    # LCS 4 ("a red circle the") with the first: P = 4/6; LCS 3 with the second: R = 3/3.
    # pycocoevalcap takes the best P and the best R over references, separately; β = 1.2.
    p, r, b2 = 4 / 6, 1.0, 1.2**2
    assert metrics.score("rouge", [candidate], [refs])[0] == pytest.approx((1 + b2) * p * r / (r + b2 * p))
    assert metrics.score("rouge", ["blue square"], [refs])[0] == 0.0


def test_cider_orders_captions_and_fixed_df():
    refs = [
        ["a red circle on the left", "a red circle at the left"],
        ["a blue square at the top", "a blue box at the top"],
        ["a green triangle in the middle", "one green wedge"],
    ]
    good = metrics.score("cider", ["a red circle on the left", "a blue square at the top", "one green wedge"], refs)
    bad = metrics.score("cider", ["a blue square at the top", "a red circle on the left", "purple"], refs)
    assert all(g > b for g, b in zip(good, bad))
    assert bad[2] == 0.0
    # With its own references as the df corpus, the fixed-df scorer is pycocoevalcap's CIDEr-D exactly.
    fixed = metrics.CiderD(df_references=refs)
    assert fixed(["a red circle on the left", "purple", "a blue box"], refs) == pytest.approx(
        metrics.score("cider", ["a red circle on the left", "purple", "a blue box"], refs)
    )
    # The IDF then no longer depends on the batch: scoring one image alone gives the same value.
    assert fixed(["a blue box"], refs[1:2]) == pytest.approx(fixed(["a red", "a blue box", "x"], refs)[1:2])
    other = metrics.CiderD(df_references=[*refs, ["a red thing"], ["a red disc"]])
    assert other(["a red circle on the left"], refs[:1]) != pytest.approx(fixed(["a red circle on the left"], refs[:1]))


def test_unknown_metric_and_mismatched_inputs():
    with pytest.raises(ValueError, match="unknown captioning metric"):
        metrics.score("spice", ["a"], [["a"]])
    with pytest.raises(ValueError, match="reference sets"):
        metrics.score("bleu1", ["a", "b"], [["a"]])
    assert set(metrics.METRICS) == {"bleu1", "bleu4", "rouge", "meteor", "cider"}


# --- model --------------------------------------------------------------------------------------------------------


@pytest.fixture
def model(vocab) -> cap.Captioner:
    return cap.build(cap.make_config(len(vocab), **TINY), seed=0).eval()


def test_state_dict_is_named_floats(model):
    state = model.state_dict()
    assert all(v.is_floating_point() for v in state.values())
    assert "decoder.transformer.h.0.crossattention.c_attn.weight" in state and "decoder.lm_head.weight" in state
    assert state["decoder.lm_head.weight"].data_ptr() != state["decoder.transformer.wte.weight"].data_ptr()


def test_xent_decreases(model, splits, vocab):
    images, captions = splits.train.images[:4], splits.train.captions[:4]
    result = scst.train_xent(model, images, captions, vocab, steps=30, batch_size=10, lr=3e-3, seed=0, log_every=10)
    assert len(result["loss"]) == 3 and result["loss"][-1] < 0.7 * result["loss"][0]


def test_greedy_shape_and_padding(model, splits):
    ids = model.greedy(cap.images_to_tensor(splits.test.images), max_len=7)
    assert ids.shape == (4, 7) and ids.dtype == torch.long
    assert torch.all(ids[cap.until_eos_mask(ids) == 0] == words.PAD_ID)
    with pytest.raises(ValueError, match="positions"):
        model.greedy(cap.images_to_tensor(splits.test.images), max_len=13)


def test_sample_logprobs_match_forward(model, splits):
    x = cap.images_to_tensor(splits.test.images)
    ids, logp = model.sample(x, max_len=10, generator=torch.Generator().manual_seed(0))
    assert logp.requires_grad and logp.shape == (4,)
    # By hand: the decoder's input is <bos> + ids[:-1]; sum up to the first <eos>, inclusive.
    inputs = torch.cat([torch.full((4, 1), words.BOS_ID), ids[:, :-1]], dim=1)
    with torch.no_grad():
        token_logp = torch.log_softmax(model(x, inputs), dim=-1).gather(2, ids.unsqueeze(2)).squeeze(2)
    expected = []
    for row, lp in zip(ids.tolist(), token_logp):
        end = row.index(words.EOS_ID) + 1 if words.EOS_ID in row else len(row)
        expected.append(lp[:end].sum())
    assert torch.allclose(logp.detach(), torch.stack(expected), atol=1e-5)
    # ...and they equal the per-step log-probs of the cached decoding loop that drew the samples.
    same_ids, steps = model.decode(x, 10, sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same_ids, ids)
    assert torch.allclose(steps.sum(dim=1), logp.detach(), atol=1e-5)


def test_save_load_roundtrip(model, splits, tmp_path):
    cap.save(model, tmp_path / "m")
    loaded = cap.load(tmp_path / "m")
    x = cap.images_to_tensor(splits.test.images)
    ids = torch.ones((4, 5), dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(model(x, ids), loaded(x, ids))
    assert loaded.config == model.config


# --- determinism --------------------------------------------------------------------------------------------------


def _weights(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_training_is_deterministic(splits, vocab):
    config = cap.make_config(len(vocab), **TINY)
    images, captions = splits.train.images[:8], splits.train.captions[:8]
    runs = []
    for _ in range(2):
        m = cap.build(config, seed=1)
        scst.train_xent(m, images, captions, vocab, steps=5, batch_size=8, lr=1e-3, seed=7)
        history = scst.train_scst(
            m,
            images,
            captions,
            metrics.scorer("bleu1"),
            vocab,
            steps=3,
            batch_size=4,
            lr=1e-3,
            max_len=10,
            seed=7,
            log_every=1,
        )
        runs.append((_weights(m), history["sample_reward"], history["greedy_reward"]))
    (a, ra, ga), (b, rb, gb) = runs
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ra == rb and ga == gb and len(ra) == 3
