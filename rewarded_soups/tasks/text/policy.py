"""θ0 as every text job loads it, and the prompts as the policy reads them.

θ0 is either trained here (its weights and tokenizer are in the pretrain
directory) or an existing causal LM named by ``pretrain.model``: a hub id or a
local directory. An existing model is *referenced*, never copied: the pretrain
directory holds ``base_model.json`` with the hub id and the commit it resolved
to, or the local path with a content hash of its files. Every later job loads
the model from there, and a local directory that changed since pretraining is
refused instead of silently mixing two θ0s in one front.
"""

from __future__ import annotations

import logging
from typing import Any

from rewarded_soups.pretrained import (  # noqa: F401 (re-exported: the text task's θ0 reference)
    REFERENCE_FILE,
    BaseModel,
    base_model,
    from_pretrained_kwargs,
    reference,
    write_reference,
)

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")


def load_tokenizer(ref: BaseModel):
    """θ0's tokenizer, left-padded for generation, with a pad token (the end-of-text one when it has none)."""
    from transformers import AutoTokenizer

    from rewarded_soups.paths import loading

    with loading(ref.model):
        tokenizer = AutoTokenizer.from_pretrained(ref.model, **from_pretrained_kwargs(ref))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def model_init_kwargs(ref: BaseModel, dtype: str, attn_implementation: str | None) -> dict[str, Any]:
    """``from_pretrained`` keywords for the policy (trl's ``model_init_kwargs``)."""
    kwargs = {**from_pretrained_kwargs(ref), "dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    return kwargs


def load_policy(ref: BaseModel, *, dtype: str = "float32", attn_implementation: str | None = None):
    """θ0 as a causal LM, with ``ref.adapter`` merged in when there is one."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = model_init_kwargs(ref, dtype, attn_implementation)
    from rewarded_soups.paths import loading

    kwargs["dtype"] = getattr(torch, dtype)
    with loading(ref.model):
        model = AutoModelForCausalLM.from_pretrained(ref.model, **kwargs)
    if ref.adapter:
        from peft import PeftModel

        extra = {"revision": ref.adapter_revision} if ref.adapter_revision else {}
        with loading(ref.adapter):
            model = PeftModel.from_pretrained(model, ref.adapter, **extra).merge_and_unload()
    return model


def uses_chat_template(tokenizer, setting: str | bool) -> bool:
    """``data.chat_template``: ``auto`` uses the tokenizer's chat template when it has one."""
    has_one = bool(getattr(tokenizer, "chat_template", None))
    if setting == "auto":
        return has_one
    if setting and not has_one:
        raise ValueError("data.chat_template is true but θ0's tokenizer has no chat template; set it to false or auto")
    return bool(setting)


def policy_prompts(prompts: list[str], tokenizer, chat_template: str | bool) -> list[str]:
    """The text the policy is given for each prompt.

    With a chat template, the prompt becomes the user's message and the
    template's generation prompt follows; a leading BOS that the tokenizer
    adds by itself is dropped from the rendered text so that it is not doubled.
    """
    if not uses_chat_template(tokenizer, chat_template):
        return list(prompts)
    rendered = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    bos = tokenizer.bos_token
    if bos and adds_bos(tokenizer):
        rendered = [r[len(bos) :] if r.startswith(bos) else r for r in rendered]
    return rendered


def adds_bos(tokenizer) -> bool:
    """Whether tokenising a text puts the BOS token in front by itself (LLaMA-style tokenizers)."""
    if tokenizer.bos_token_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id
