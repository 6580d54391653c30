"""Rewards and quality metrics on generated text.

Each reward is a callable ``reward(prompts, completions) -> list[float]``
(higher is better, except metrics flagged ``higher_is_better = False``), the
signature trl's trainers take as a reward function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


class VaderSentiment:
    """Positive sentiment: VADER's compound score in [-1, 1] (lexicon and rules, Hutto & Gilbert 2014)."""

    higher_is_better = True

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyser = SentimentIntensityAnalyzer()

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        return [float(self._analyser.polarity_scores(c)["compound"]) for c in completions]


class Conciseness:
    """1 − characters/max_chars, clipped to [0, 1]; fewer than ``min_chars`` characters score 0.

    Characters, not words: a word count was hacked at once by long runs of
    dots. The floor keeps "say nothing" from being the optimum; RL still games
    it with a few dots and a fake attribution, which the perplexity metric shows.
    """

    higher_is_better = True

    def __init__(self, max_chars: int = 120, min_chars: int = 10) -> None:
        if not 0 <= min_chars <= max_chars or max_chars < 1:
            raise ValueError(
                f"conciseness needs 0 <= min_chars <= max_chars and max_chars >= 1, got {min_chars}, {max_chars}"
            )
        self.max_chars, self.min_chars = max_chars, min_chars

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        out = []
        for c in completions:
            n = len(c.strip())
            out.append(0.0 if n < self.min_chars else 1.0 - min(n, self.max_chars) / self.max_chars)
        return out


class ClassifierReward:
    """A sequence-classification reward model, as in the paper's RLHF experiments.

    ``model`` is a local directory or a hub id (loaded with transformers'
    ``from_pretrained``); the reward is the logit of ``label`` (an index or a
    label name from the model's ``id2label``) on the prompt followed by the
    completion, or the completion alone with ``with_prompt: false``.
    """

    higher_is_better = True

    def __init__(
        self, model: str, label: int | str = 0, with_prompt: bool = True, batch_size: int = 32, max_length: int = 256
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Right padding keeps every text at the positions it would have alone.
        self.tokenizer.padding_side = "right"
        self.model = AutoModelForSequenceClassification.from_pretrained(model).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        if isinstance(label, str):
            names = {v: int(k) for k, v in self.model.config.id2label.items()}
            if label not in names:
                raise ValueError(f"reward model {model} has no label {label!r}; labels: {sorted(names)}")
            label = names[label]
        if not 0 <= label < self.model.config.num_labels:
            raise ValueError(f"label index {label} out of range for {self.model.config.num_labels} labels")
        self.label, self.with_prompt = label, with_prompt
        self.batch_size, self.max_length = batch_size, max_length

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        texts = [p + c for p, c in zip(prompts, completions)] if self.with_prompt else list(completions)
        scores: list[float] = []
        with self._torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    texts[i : i + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                )
                logits = self.model(**enc).logits
                scores.extend(logits[:, self.label].float().tolist())
        return scores


class Perplexity:
    """Perplexity of the completion given the prompt under θ0: do soups stay fluent?"""

    higher_is_better = False

    def __init__(self, base_model: str, batch_size: int = 32) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(base_model)
        self.model = AutoModelForCausalLM.from_pretrained(base_model).eval()
        self.batch_size = batch_size

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        torch = self._torch
        eos = self.tokenizer.eos_token_id
        out: list[float] = []
        with torch.no_grad():
            for p, c in zip(prompts, completions):
                # Condition on the start-of-text token as generation did (GPT-2 style tokenizers).
                bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
                prompt_ids = bos + self.tokenizer(p, add_special_tokens=False)["input_ids"]
                # The completion is scored up to and including its end-of-text token.
                completion_ids = self.tokenizer(c, add_special_tokens=False)["input_ids"] + [eos]
                ids = torch.tensor([prompt_ids + completion_ids])
                logits = self.model(input_ids=ids).logits[0, :-1]
                targets = ids[0, 1:]
                nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
                out.append(math.exp(nll[len(prompt_ids) - 1 :].mean().item()))
        return out


# Reward kind -> class; the registry reads constructor signatures to check config options.
CLASSES = {
    "vader": VaderSentiment,
    "conciseness": Conciseness,
    "classifier": ClassifierReward,
    "perplexity": Perplexity,
}
# Constructor arguments that come from the workflow (context), not from the config.
CONTEXT_ARGUMENTS = {"base_model"}


def build(kind: str, options: dict[str, Any], context: dict[str, Any]) -> Any:
    if kind == "vader":
        return VaderSentiment(**options)
    if kind == "conciseness":
        return Conciseness(**options)
    if kind == "classifier":
        return ClassifierReward(**options)
    if kind == "perplexity":
        if "base_model" not in context:
            raise ValueError("the perplexity metric needs θ0 (context['base_model'])")
        return Perplexity(context["base_model"], **options)
    raise KeyError(f"rewarded_soups.rewards.text has no reward kind {kind!r}")
