"""Tiny models of the paper's real architectures, saved to local directories as a user's would be.

The paper's text experiments use a LLaMA policy and reward models of other
architectures (DeBERTa-v3, ELECTRA). Nothing can be downloaded here, so the
tests build few-layer versions of the same transformers classes, with real
tokenizer classes of each family, and save them with ``save_pretrained``:
the workflow then loads them through exactly the path a hub id takes.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from transformers import (
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DebertaV2TokenizerFast,
    ElectraConfig,
    ElectraForSequenceClassification,
    ElectraTokenizerFast,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaTokenizerFast,
)

CHARS = string.ascii_letters + string.digits + string.punctuation
# A LLaMA-2-style chat template (BOS first), to check that BOS is not doubled.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)

QUESTIONS = [
    "How do I sort a list in place?",
    "What is a good name for a cat?",
    "Why is the sky blue during the day?",
    "How long should I boil an egg?",
    "What makes a summary clear and short?",
    "Which plants grow well on a balcony?",
    "How do trains stay on their tracks?",
    "What is the best way to learn a language?",
    "Why do cats purr when they are happy?",
    "How can I keep bread fresh longer?",
    "What should I pack for a day hike?",
    "How do bees make honey from flowers?",
    "Why does ice float on water?",
    "What is a quick healthy breakfast?",
    "How do I write a polite email?",
    "Why do leaves change colour in autumn?",
    "How can I sleep better at night?",
    "What is the difference between weather and climate?",
    "How do I start running as a beginner?",
    "Why do we see lightning before thunder?",
]


def llama_tokenizer(chat_template: bool = True) -> LlamaTokenizerFast:
    """A character-level LLaMA tokenizer (metaspace BPE, ``<s>`` added in front)."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3}
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault("▁" + c, len(vocab))
    tokenizer = LlamaTokenizerFast(vocab=vocab, merges=[], add_bos_token=True)
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def llama_policy(path: Path, *, chat_template: bool = True, seed: int = 0) -> Path:
    """A 2-layer LLaMA causal LM with grouped-query attention (random weights)."""
    tokenizer = llama_tokenizer(chat_template)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def deberta_reward_model(path: Path, *, seed: int = 1) -> Path:
    """A DeBERTa-v2 sequence classifier with one logit (like OpenAssistant's reward models)."""
    pieces = [("[PAD]", 0.0), ("[UNK]", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[MASK]", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in CHARS] + [("▁" + c, -3.0) for c in CHARS]
    tokenizer = DebertaV2TokenizerFast(vocab=pieces)
    torch.manual_seed(seed)
    config = DebertaV2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=512,
        pooler_hidden_size=32,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.5,  # scores that differ visibly between texts
    )
    DebertaV2ForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def electra_reward_model(path: Path, *, seed: int = 2) -> Path:
    """An ELECTRA discriminator classifier with two labels, ``bad`` and ``good`` (WordPiece tokenizer)."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.ascii_lowercase, *string.digits]
    words += list(string.punctuation) + ["##" + c for c in string.ascii_lowercase + string.digits]
    tokenizer = ElectraTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    torch.manual_seed(seed)
    config = ElectraConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=512,
        num_labels=2,
        id2label={0: "bad", 1: "good"},
        label2id={"bad": 0, "good": 1},
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.5,
    )
    ElectraForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def questions_jsonl(path: Path, repeat: int = 2) -> Path:
    """A small local prompt set, one JSON object per line (``question`` and ``id``)."""
    with open(path, "w") as fh:
        for i in range(repeat):
            for j, q in enumerate(QUESTIONS):
                question = q if i == 0 else f"{q} Explain."
                fh.write(json.dumps({"id": i * len(QUESTIONS) + j, "question": question}) + "\n")
    return path
