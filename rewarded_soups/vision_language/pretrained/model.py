"""θ0 (a referenced transformers model), its experts and soups, as every job loads them, and how they are saved.

θ0 is named by ``pretrain.checkpoint`` (a hub id or a local directory); the
pretrain job writes only a reference to it (:mod:`rewarded_soups.pretrained`).
An expert is either a peft LoRA adapter (``finetune.lora``) or full weights
saved with ``save_pretrained`` (safetensors, sharded when large); a soup is
either, stored whole or as a recipe. Loading always starts from θ0 and lays
the expert's (or the soup's) tensors over it, so a recipe soup is built in
memory on the job's device straight from the experts' files.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from rewarded_soups.merging.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from rewarded_soups.pretrained import REFERENCE_FILE, base_model, from_pretrained_kwargs

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"  # or its shard index: the merge engine reads both
COPIED_FILES = ("config.json", "generation_config.json")


def is_pretrained(base_dir: Path) -> bool:
    """Whether θ0 in ``base_dir`` is a referenced transformers model (rather than the small encoder-decoder)."""
    return (Path(base_dir) / REFERENCE_FILE).exists()


def _model_and_processor(base_dir: Path, weights_dir: Path | None, dtype: str, device: Any):
    """θ0's family wrapper, with its weights from ``weights_dir`` (full weights saved by ``save_pretrained``)."""
    import torch
    import transformers

    from rewarded_soups.paths import loading
    from rewarded_soups.vision_language.pretrained.families import family_of

    ref = base_model(Path(base_dir))
    kwargs = from_pretrained_kwargs(ref)
    with loading(ref.model):
        config = transformers.AutoConfig.from_pretrained(ref.model, **kwargs)
        family = family_of(config.model_type)
        processor = family.load_processor(ref.model, **kwargs)
        source, extra = (ref.model, kwargs) if weights_dir is None else (str(weights_dir), {})
        # transformers' own loader: it maps the names a checkpoint was saved with to the model's own.
        model = getattr(transformers, family.model_class).from_pretrained(source, dtype=getattr(torch, dtype), **extra)
    return family(model.to(device).eval(), processor)


def load_base(base_dir: Path, *, dtype: str = "float32", device: Any = "cpu"):
    """θ0's family wrapper (model and processor) in ``dtype`` on ``device``, in eval mode."""
    return _model_and_processor(base_dir, None, dtype, device)


def load(base_dir: Path, model_dir: Path | None, *, dtype: str = "float32", device: Any = "cpu"):
    """θ0, or the expert, soup (full or recipe) or MORL run of ``model_dir``: full weights loaded by transformers
    (a recipe soup is first written whole to a temporary folder), an adapter merged into θ0."""
    import tempfile

    from rewarded_soups.merging.engine import is_recipe, materialize

    if model_dir is None:
        return load_base(base_dir, dtype=dtype, device=device)
    model_dir = Path(model_dir)
    merged = materialize(model_dir, device) if is_recipe(model_dir) else None
    configs = _copied(model_dir, merged)
    if ADAPTER_CONFIG in configs:
        family = load_base(base_dir, dtype=dtype, device=device)
        family.model = _merge_adapter(family.model, model_dir, merged, device).eval()
        return family
    if merged is None:
        return _model_and_processor(base_dir, model_dir, dtype, device)
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="soup-") as tmp:
        for name in configs:
            (Path(tmp) / name).write_bytes((merged.template / name).read_bytes())
        save_file({k: v.contiguous().cpu() for k, v in merged.tensors[WEIGHTS_FILE].items()}, Path(tmp) / WEIGHTS_FILE)
        return _model_and_processor(base_dir, Path(tmp), dtype, device)


def _copied(model_dir: Path, merged: Any) -> list[str]:
    """The configuration files of a model directory (or of a recipe's first member)."""
    folder = merged.template if merged is not None else model_dir
    return [f for f in (ADAPTER_CONFIG, *COPIED_FILES) if (folder / f).exists()]


def _merge_adapter(model: Any, model_dir: Path, merged: Any, device: Any):
    """``model`` with the LoRA adapter of ``model_dir`` (or of a recipe built in memory) merged in."""
    from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict

    if merged is None:
        return PeftModel.from_pretrained(model, model_dir).merge_and_unload()
    settable = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
    config = {k: v for k, v in merged.config(ADAPTER_CONFIG).items() if k in settable}
    peft_model = get_peft_model(model, LoraConfig(**config))
    set_peft_model_state_dict(peft_model, merged.tensors[ADAPTER_WEIGHTS])
    return peft_model.merge_and_unload()


def save(model: Any, out_dir: Path) -> None:
    """An expert's weights: a peft adapter (adapter_model.safetensors) or full safetensors, sharded when large."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)


def merge_spec(base_dir: Path, member_dirs: list[Path], weights: list[float], lora_mode: str):
    """How the engine combines experts of a referenced θ0: their adapters, or their full weights."""
    from rewarded_soups.merging.adapters import adapter_merge_spec, is_adapter
    from rewarded_soups.merging.spec import MergeSpec

    if any(Path(d) == Path(base_dir) for d in member_dirs):
        raise ValueError("θ0 is a referenced model with no weights in its directory: the WiSE baseline needs weights")
    if is_adapter(member_dirs[0]):
        return adapter_merge_spec(member_dirs, weights, lora_mode)
    ref = base_model(Path(base_dir))
    local_base = Path(ref.model) if ref.content_sha256 else None  # task vectors need θ0's files on disk
    copy = [f for f in COPIED_FILES if (Path(member_dirs[0]) / f).exists()]
    return MergeSpec(members=list(member_dirs), weights=list(weights), files=[WEIGHTS_FILE], copy=copy, base=local_base)
