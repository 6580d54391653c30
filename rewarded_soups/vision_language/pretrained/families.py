"""How each family of transformers vision-language models is prompted, sampled and scored token by token.

A family wraps a model and its own processor. It generates with the model's
``generate()`` from the processor's inputs, and gives the log-probability of
given completions by teacher forcing, which is what REINFORCE needs. Families:

* ``vision-encoder-decoder`` (:class:`transformers.VisionEncoderDecoderModel`,
  e.g. ViT + GPT-2): captions, no prompt;
* ``blip`` (:class:`transformers.BlipForConditionalGeneration`): captions after
  an optional prompt ("a picture of"), or answers after a question prompt;
* ``paligemma`` (:class:`transformers.PaliGemmaForConditionalGeneration`): its
  own prompt formats (``caption en``, ``answer en {question}``,
  ``detect {expression}``), boxes as ``<locNNNN>`` tokens.

Prompts of different token lengths are processed in separate groups, so that
no model ever sees padding inside its prompt (BLIP's decoder has no notion of
left padding).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar

import torch


class Family:
    """A model and its processor, with the few model-specific facts generation and training need."""

    model_types: ClassVar[tuple[str, ...]] = ()
    model_class: ClassVar[str] = ""
    prompted: ClassVar[bool] = True  # whether the model reads a text prompt

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor

    @classmethod
    def load_processor(cls, name: str, **kwargs: Any) -> Any:
        """The model's own processor (``AutoProcessor``)."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(name, **kwargs)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # What a family defines -------------------------------------------------------------------------
    def inputs(self, images: Sequence[Any], prompts: Sequence[str] | None) -> dict[str, torch.Tensor]:
        """The processor's tensors for a group of images and prompts of one token length, on the model's device."""
        raise NotImplementedError

    def completions_of(self, generated: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The newly generated tokens of ``generate()``'s output (what follows the prompt)."""
        raise NotImplementedError

    def completion_logits(self, inputs: dict[str, torch.Tensor], completions: torch.Tensor) -> torch.Tensor:
        """Logits predicting each completion token (B × L × V), by teacher forcing; ``completions`` padded."""
        raise NotImplementedError

    # Shared ----------------------------------------------------------------------------------------
    def _groups(self, images: Sequence[Any], prompts: Sequence[str] | None) -> list[list[int]]:
        """Indices grouped by prompt length in tokens (one group when there is no prompt)."""
        if prompts is None:
            return [list(range(len(images)))]
        groups: dict[int, list[int]] = defaultdict(list)
        for i, prompt in enumerate(prompts):
            groups[len(self.tokenizer(prompt)["input_ids"])].append(i)
        return list(groups.values())

    def _trim(self, ids: torch.Tensor) -> torch.Tensor:
        """A completion up to its end-of-sequence token (kept: the model learns to stop); what follows is the
        padding of a batch's longer completions."""
        eos = self.eos_token_ids()
        for position, token in enumerate(ids.tolist()):
            if token in eos:
                return ids[: position + 1]
        return ids

    def eos_token_ids(self) -> set[int]:
        config = self.model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        return set(eos) if isinstance(eos, list) else ({eos} if eos is not None else set())

    @torch.no_grad()
    def generate(
        self, images: Sequence[Any], prompts: Sequence[str] | None, max_new_tokens: int, *, sample: bool
    ) -> list[torch.Tensor]:
        """One completion per image (token ids, end-of-sequence included when reached): greedy, or sampled
        from the model's distribution (temperature 1, no top-k) from torch's global generator."""
        out: list[torch.Tensor | None] = [None] * len(images)
        for group in self._groups(images, prompts):
            inputs = self.inputs([images[i] for i in group], None if prompts is None else [prompts[i] for i in group])
            generated = self.model.generate(**inputs, **self._decoding(max_new_tokens, sample))
            for i, ids in zip(group, self.completions_of(generated, inputs)):
                out[i] = self._trim(ids.cpu())
        return out  # type: ignore[return-value]

    def _decoding(self, max_new_tokens: int, sample: bool) -> dict[str, Any]:
        """generate()'s options: greedy, or the model's own distribution (temperature 1, no top-k or top-p),
        with whatever the checkpoint's generation_config would add neutralised (penalties, banned n-grams, a
        minimum length, suppressed tokens): the log-probabilities REINFORCE follows are those of the plain
        distribution, by teacher forcing."""
        config = copy.deepcopy(self.model.generation_config)
        neutral = {
            "num_beams": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_length": 0,
            "min_new_tokens": None, "suppress_tokens": None, "begin_suppress_tokens": None, "bad_words_ids": None,
            "max_new_tokens": max_new_tokens, "max_length": None,
        }  # fmt: skip
        sampling = {"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": 1.0, "typical_p": 1.0}
        for key, value in {**neutral, **(sampling if sample else {"do_sample": False})}.items():
            setattr(config, key, value)
        return {"generation_config": config}

    def decode(self, completions: Sequence[torch.Tensor]) -> list[str]:
        return [text.strip() for text in self.tokenizer.batch_decode(list(completions), skip_special_tokens=True)]

    def encode_targets(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Target texts as completion token ids, ended by the end-of-sequence token (for cross-entropy)."""
        eos = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.tokenizer.sep_token_id
        return [torch.tensor([*self.tokenizer(t, add_special_tokens=False)["input_ids"], eos]) for t in texts]

    def completion_logprobs(
        self, images: Sequence[Any], prompts: Sequence[str] | None, completions: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ log p of each completion's tokens, its number of tokens), by teacher forcing, with gradients."""
        totals = torch.zeros(len(images), device=self.device)
        lengths = torch.zeros(len(images), device=self.device)
        for group in self._groups(images, prompts):
            inputs = self.inputs([images[i] for i in group], None if prompts is None else [prompts[i] for i in group])
            # An empty completion (nothing generated) is scored on one padding token that counts for nothing.
            ids = [completions[i] if len(completions[i]) else torch.tensor([self._pad_id()]) for i in group]
            padded = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=self._pad_id())
            mask = torch.nn.utils.rnn.pad_sequence(
                [torch.full((len(c),), float(len(completions[i]) > 0)) for c, i in zip(ids, group)],
                batch_first=True,
                padding_value=0.0,
            ).to(self.device)
            padded = padded.to(self.device)
            logits = self.completion_logits(inputs, padded).float()
            token_logprobs = torch.log_softmax(logits, -1).gather(-1, padded.unsqueeze(-1)).squeeze(-1) * mask
            index = torch.tensor(group, device=self.device)
            totals = totals.index_add(0, index, token_logprobs.sum(-1))
            lengths = lengths.index_add(0, index, mask.sum(-1))
        return totals, lengths

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else next(iter(self.eos_token_ids()))


class VisionEncoderDecoder(Family):
    model_types = ("vision-encoder-decoder",)
    model_class = "VisionEncoderDecoderModel"
    prompted = False

    @classmethod
    def load_processor(cls, name: str, **kwargs: Any) -> Any:
        """Its image processor and its decoder's tokenizer (such repositories often save no processor class)."""
        from types import SimpleNamespace

        from transformers import AutoImageProcessor, AutoTokenizer

        return SimpleNamespace(
            image_processor=AutoImageProcessor.from_pretrained(name, **kwargs),
            tokenizer=AutoTokenizer.from_pretrained(name, **kwargs),
        )

    def inputs(self, images, prompts):
        if prompts is not None:
            raise ValueError("a vision-encoder-decoder model reads no prompt; set data.prompt to null")
        pixels = self.processor.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels.to(self.device, self.model.dtype)}

    def completions_of(self, generated, inputs):
        return generated[:, 1:]  # the decoder's start token comes first

    def completion_logits(self, inputs, completions):
        # The model shifts the labels right behind the decoder's start token itself.
        return self.model(pixel_values=inputs["pixel_values"], labels=completions).logits


class PrefixLM(Family):
    """Models whose text decoder continues a prefix (the prompt, after the image): logits at t predict t + 1."""

    def prefix(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The token prefix ``generate()`` continues (input_ids, attention_mask and the model's extras)."""
        return {k: v for k, v in inputs.items() if k != "pixel_values"}

    def prefix_length(self, inputs: dict[str, torch.Tensor]) -> int:
        return self.prefix(inputs)["input_ids"].shape[1]

    def completions_of(self, generated, inputs):
        return generated[:, self.prefix_length(inputs) :]

    def completion_logits(self, inputs, completions):
        prefix = self.prefix(inputs)
        ids = torch.cat([prefix["input_ids"], completions], dim=1)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if "token_type_ids" in prefix:  # PaliGemma: 0 on the prefix (full attention), 1 on the suffix
            batch["token_type_ids"] = torch.cat([prefix["token_type_ids"], torch.ones_like(completions)], dim=1)
        logits = self.model(pixel_values=inputs["pixel_values"], **batch).logits
        start = prefix["input_ids"].shape[1] - 1
        return logits[:, start : start + completions.shape[1]]


class Blip(PrefixLM):
    model_types = ("blip",)
    model_class = "BlipForConditionalGeneration"

    def inputs(self, images, prompts):
        batch = self.processor(
            images=list(images), text=None if prompts is None else list(prompts), return_tensors="pt"
        )
        return {
            k: (v.to(self.device, self.model.dtype) if k == "pixel_values" else v.to(self.device))
            for k, v in batch.items()
        }

    def prefix(self, inputs):
        # As BLIP's generate() does: the processor's closing [SEP] goes, the decoder's BOS replaces [CLS].
        bos = self.model.config.text_config.bos_token_id
        if "input_ids" not in inputs:
            ids = torch.full((inputs["pixel_values"].shape[0], 1), bos, device=self.device)
        else:
            ids = inputs["input_ids"][:, :-1].clone()
            ids[:, 0] = bos
        return {"input_ids": ids}

    def completion_logits(self, inputs, completions):
        ids = torch.cat([self.prefix(inputs)["input_ids"], completions], dim=1)
        logits = self.model(
            pixel_values=inputs["pixel_values"], input_ids=ids, attention_mask=torch.ones_like(ids)
        ).logits
        start = ids.shape[1] - completions.shape[1] - 1
        return logits[:, start : start + completions.shape[1]]

    def eos_token_ids(self) -> set[int]:
        return {self.model.config.text_config.sep_token_id}


class PaliGemma(PrefixLM):
    model_types = ("paligemma",)
    model_class = "PaliGemmaForConditionalGeneration"

    def inputs(self, images, prompts):
        if prompts is None:
            raise ValueError("a PaliGemma model needs a prompt (data.prompt, e.g. 'caption en')")
        # One <image> token in front of each prompt, as PaliGemma's processor expects (it expands it).
        texts = [f"{self.processor.image_token}{p}" for p in prompts]
        batch = self.processor(images=list(images), text=texts, return_tensors="pt")
        batch.pop("labels", None)
        return {
            k: (v.to(self.device, self.model.dtype) if k == "pixel_values" else v.to(self.device))
            for k, v in batch.items()
        }


FAMILIES: dict[str, type[Family]] = {t: f for f in (VisionEncoderDecoder, Blip, PaliGemma) for t in f.model_types}


def family_of(model_type: str) -> type[Family]:
    """The family of a transformers ``config.model_type``; a clear error for the others."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise ValueError(
            f"pretrain.checkpoint is a {model_type!r} model; the vision-language tasks support "
            f"{sorted(FAMILIES)} (rewarded_soups/vision_language/pretrained/families.py adds one)"
        ) from None
