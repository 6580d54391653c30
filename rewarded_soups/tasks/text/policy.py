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

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rewarded_soups import fingerprint

log = logging.getLogger(__name__)

REFERENCE_FILE = "base_model.json"
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class BaseModel:
    """Where θ0's weights and tokenizer come from."""

    model: str  # a local directory or a hub id
    revision: str | None = None  # hub commit (resolved at pretraining when the hub answered)
    adapter: str | None = None  # a LoRA adapter merged into θ0 at load time (e.g. Alpaca-LoRA)
    adapter_revision: str | None = None
    trust_remote_code: bool = False
    # Local directories: {relative path: [size, mtime_ns]} and a sha256 over their contents.
    files: dict[str, list[int]] = field(default_factory=dict)
    content_sha256: str | None = None


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a hub revision points at now, so that later jobs load exactly it (None when offline)."""
    try:
        from huggingface_hub import model_info

        return model_info(repo_id, revision=revision).sha
    except Exception as err:  # offline, gated or private: keep the revision as given
        log.warning("could not resolve %s@%s to a commit on the hub (%s); keeping it as given", repo_id, revision, err)
        return revision


def reference(settings: dict[str, Any]) -> BaseModel:
    """The reference to write for ``pretrain.model`` (and ``pretrain.adapter``)."""
    name, revision = settings["model"], settings.get("revision")
    trust = bool(settings.get("trust_remote_code", False))
    local = Path(name).expanduser()
    if local.is_dir():
        files = fingerprint.listing(local)
        ref = BaseModel(
            model=str(local.resolve()),
            files=files,
            content_sha256=fingerprint.content_hash(local, files),
            trust_remote_code=trust,
        )
    elif name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"pretrain.model {name!r} is not a directory; give a local model directory or a hub id")
    else:
        ref = BaseModel(model=name, revision=_hub_commit(name, revision), trust_remote_code=trust)
    adapter = settings.get("adapter")
    if adapter:
        local_adapter = Path(adapter).expanduser()
        if local_adapter.is_dir():
            ref = BaseModel(**{**asdict(ref), "adapter": str(local_adapter.resolve())})
        else:
            commit = _hub_commit(adapter, settings.get("adapter_revision"))
            ref = BaseModel(**{**asdict(ref), "adapter": adapter, "adapter_revision": commit})
    return ref


def write_reference(out_dir: Path, ref: BaseModel) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REFERENCE_FILE).write_text(json.dumps(asdict(ref), indent=2) + "\n")


def base_model(base_dir: Path) -> BaseModel:
    """θ0 of a pretrain directory; checks that a referenced local directory is unchanged."""
    base_dir = Path(base_dir)
    ref_file = base_dir / REFERENCE_FILE
    if not ref_file.exists():
        return BaseModel(model=str(base_dir))
    ref = BaseModel(**json.loads(ref_file.read_text()))
    if ref.content_sha256 is not None:
        local = Path(ref.model)
        if not local.is_dir():
            raise FileNotFoundError(
                f"θ0 was the local directory {local}, which is gone; "
                "restore it or rerun `snakemake --forcerun pretrain`"
            )
        if not fingerprint.unchanged(local, ref.files, ref.content_sha256):
            raise RuntimeError(
                f"θ0's directory {local} changed since pretraining (its content hash differs from {ref_file}); "
                "results would mix two θ0s. Restore it, or rerun everything from θ0 with "
                "`snakemake --forcerun pretrain`"
            )
    return ref


def from_pretrained_kwargs(ref: BaseModel) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": ref.trust_remote_code}
    if ref.revision:
        kwargs["revision"] = ref.revision
    return kwargs


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
