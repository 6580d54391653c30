import pytest

from rewarded_soups.registry import build_reward, rewards


def test_conciseness_by_hand():
    reward = build_reward({"kind": "conciseness", "max_chars": 10, "min_chars": 0})
    assert reward(["p"] * 4, ["", " abcde ", "abcdefghij", "abcdefghijklmn"]) == [1.0, 0.5, 0.0, 0.0]
    floored = build_reward({"kind": "conciseness", "max_chars": 10, "min_chars": 2})
    assert floored(["p"] * 3, ["", "a", "abcde"]) == [0.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="min_chars"):
        build_reward({"kind": "conciseness", "max_chars": 4, "min_chars": 5})


def test_vader_orders_positive_above_negative():
    reward = build_reward({"kind": "vader"})
    good, neutral, bad = reward(["p"] * 3, ["what a wonderful, lovely day", "the table", "awful, hateful and sad"])
    assert good > 0.5 and bad < -0.5 and neutral == 0.0


def test_unknown_kind_lists_the_registered_ones():
    with pytest.raises(KeyError, match="vader"):
        build_reward({"kind": "nope"})


def test_every_registered_reward_is_documented():
    assert all(spec.doc for spec in rewards().values())


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    """A tiny sequence-classification reward model saved to a local directory, as a user would."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from rewarded_soups.tasks.text.model import train_tokenizer

    tokenizer = train_tokenizer(["good great fine", "bad awful poor", "the cat sat on the mat"] * 20, 300)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=16,
        n_layer=1,
        n_head=2,
        num_labels=2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    model = GPT2ForSequenceClassification(config).eval()
    path = tmp_path_factory.mktemp("reward_model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, model, tokenizer


def test_classifier_reward_loads_a_local_directory(reward_model_dir):
    import torch

    path, model, tokenizer = reward_model_dir
    reward = build_reward({"kind": "classifier", "model": str(path), "label": "positive"})
    prompts, completions = ["", "the "], ["good great", "bad awful poor cat"]
    scores = reward(prompts, completions)
    with torch.no_grad():
        expected = [
            model(**tokenizer(p + c, return_tensors="pt")).logits[0, 1].item() for p, c in zip(prompts, completions)
        ]
    assert scores == pytest.approx(expected, abs=1e-5)
    # A difference of two logits (e.g. FAITHFUL minus HALLUCINATED).
    margin = build_reward({"kind": "classifier", "model": str(path), "label": 1, "minus_label": "negative"})
    with torch.no_grad():
        logits = [model(**tokenizer(p + c, return_tensors="pt")).logits[0] for p, c in zip(prompts, completions)]
    assert margin(prompts, completions) == pytest.approx([(x[1] - x[0]).item() for x in logits], abs=1e-5)


def test_classifier_reward_names_a_missing_label(reward_model_dir):
    path, _, _ = reward_model_dir
    with pytest.raises(ValueError, match="no label 'helpful'"):
        build_reward({"kind": "classifier", "model": str(path), "label": "helpful"})
