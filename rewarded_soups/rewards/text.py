"""Rewards and quality metrics on generated text.

Each reward is a callable ``reward(prompts, completions) -> list[float]``,
higher is better, the signature trl's trainers take as a reward function.
The perplexity metric, which needs the text task's θ0, lives with the task
(:mod:`rewarded_soups.tasks.text.perplexity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewarded_soups.registry import reward


@reward("vader", modality="text")
class VaderSentiment:
    """Positive sentiment: VADER's compound score in [-1, 1] (lexicon and rules, Hutto & Gilbert 2014)."""

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyser = SentimentIntensityAnalyzer()

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        return [float(self._analyser.polarity_scores(c)["compound"]) for c in completions]


@reward("conciseness", modality="text", bounds={"max_chars": {"minimum": 1}, "min_chars": {"minimum": 0}})
class Conciseness:
    """1 − characters/max_chars, clipped to [0, 1]; fewer than ``min_chars`` characters score 0.

    Characters, not words: a word count was hacked at once by long runs of
    dots. The floor keeps "say nothing" from being the optimum; RL still games
    it with a few dots and a fake attribution, which the perplexity metric shows.
    """

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        low, high = options.get("min_chars", 10), options.get("max_chars", 120)
        if low > high:
            raise ValueError(f"min_chars: {low} is above max_chars ({high}); every completion would score 0")

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


class RewardModelTokenizer:
    """A reward model's tokenizer as trl calls it, adding the model's own special tokens.

    trl tokenises a reward model's input (prompt + completion) with
    ``add_special_tokens=False``, which suits decoder reward models but drops
    the [CLS] that encoder classifiers (DeBERTa, ELECTRA, BART) pool. This
    wrapper adds the special tokens back and truncates from the left, keeping
    the completion, when a text is longer than ``max_length``. Evaluation
    calls it exactly as trl does, so training and evaluation score alike.
    """

    def __init__(self, tokenizer: Any, max_length: int | None) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["add_special_tokens"] = True
        if self.max_length is not None:
            kwargs.update(truncation=True, max_length=self.max_length)
        return self.tokenizer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


@reward(
    "classifier",
    modality="text",
    uses_device=True,
    bounds={
        "dtype": {"enum": ["float32", "bfloat16", "float16"]},
        "batch_size": {"minimum": 1},
        "max_length": {"minimum": 1},
    },
)
class ClassifierReward:
    """A sequence-classification reward model, as in the paper's RLHF experiments.

    ``model`` is a local directory or a hub id (``revision`` pins a commit),
    loaded with ``AutoModelForSequenceClassification`` in ``dtype``. The reward
    is the logit of ``label`` (an index or a name from the model's
    ``id2label``), minus the logit of ``minus_label`` when given (e.g. FAITHFUL
    minus HALLUCINATED), on the prompt followed by the completion. During RL the
    model itself goes to trl (``reward_funcs``), which places it on the
    trainer's device; a forward hook puts the chosen score in logit 0, the one
    trl reads.
    """

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        from rewarded_soups.paths import model_directory_problem

        problem = model_directory_problem(options["model"])
        if problem:
            raise ValueError(f"model: {problem}")
        if options.get("minus_label") is not None and options.get("minus_label") == options.get("label", 0):
            raise ValueError(f"minus_label: equals label ({options['minus_label']!r}); the reward would be 0")

    def __init__(
        self,
        model: str,
        label: int | str = 0,
        minus_label: int | str | None = None,
        revision: str | None = None,
        dtype: str = "float32",
        batch_size: int = 32,
        max_length: int | None = 512,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from rewarded_soups.gpus import torch_device

        self._torch = torch
        kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if revision:
            kwargs["revision"] = revision
        from rewarded_soups.paths import loading

        with loading(model):
            tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.truncation_side = "left"
            self.model = AutoModelForSequenceClassification.from_pretrained(
                model, dtype=getattr(torch, dtype), **kwargs
            ).eval()
        self.model.config.pad_token_id = tokenizer.pad_token_id
        self.tokenizer = RewardModelTokenizer(tokenizer, max_length)
        self.label = self._label_index(model, label)
        self.minus_label = None if minus_label is None else self._label_index(model, minus_label)
        if self.minus_label == self.label:
            raise ValueError(f"reward model {model}: label and minus_label are both {label!r}")
        self.model.register_forward_hook(self._select_logit)
        self.model.to(torch_device())
        self.batch_size = batch_size

    def _label_index(self, model: str, label: int | str) -> int:
        if isinstance(label, str):
            names = {v: int(k) for k, v in self.model.config.id2label.items()}
            if label not in names:
                raise ValueError(f"reward model {model} has no label {label!r}; labels: {sorted(names)}")
            label = names[label]
        if not 0 <= label < self.model.config.num_labels:
            raise ValueError(
                f"label index {label} out of range for reward model {model} with {self.model.config.num_labels} labels"
            )
        return label

    def _select_logit(self, module: Any, args: Any, output: Any) -> Any:
        score = output.logits[:, self.label]
        if self.minus_label is not None:
            score = score - output.logits[:, self.minus_label]
        output.logits = score[:, None]
        return output

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        texts = [p + c for p, c in zip(prompts, completions)]
        scores: list[float] = []
        device = next(self.model.parameters()).device
        with self._torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                # The call trl makes for a reward model (GRPOTrainer._calculate_rewards).
                enc = self.tokenizer(
                    text=texts[i : i + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    padding_side="right",
                    add_special_tokens=False,
                ).to(device)
                scores.extend(self.model(**enc).logits[:, 0].float().tolist())
        return scores
