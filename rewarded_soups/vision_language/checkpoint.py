"""The small encoder-decoder's files in a model directory, and how soups combine them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"  # θ0's vocabulary; experts and soups share it


def merge_spec(base_dir: Path, member_dirs: list[Path], weights: list[float], settings: dict[str, Any]):
    """Σ λ_i θ_i over whole state dicts, streamed; a member may be θ0 itself (WiSE); θ0 for task vectors.

    Experts of a transformers θ0 (``pretrain.checkpoint``) are adapters or full weights of their own layout.
    """
    from rewarded_soups.merging.spec import MergeSpec
    from rewarded_soups.vision_language.pretrained import model as pretrained

    if pretrained.is_pretrained(base_dir):
        return pretrained.merge_spec(
            base_dir, member_dirs, weights, settings.get("merge", {}).get("lora_mode", "paper")
        )

    return MergeSpec(
        members=list(member_dirs), weights=list(weights), files=[WEIGHTS_FILE], copy=[CONFIG_FILE], base=Path(base_dir)
    )
