"""Soups of peft LoRA adapters: the files an adapter directory holds and how the engine combines them."""

from __future__ import annotations

import json
from pathlib import Path

from rewarded_soups.merging.spec import MergeSpec

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(model_dir: Path) -> bool:
    """Whether a fine-tuned model directory holds a peft adapter (rather than full weights)."""
    return (Path(model_dir) / ADAPTER_CONFIG).exists()


def adapter_merge_spec(member_dirs: list[Path], weights: list[float], mode: str) -> MergeSpec:
    """The members' LoRA adapters, combined as ``mode`` says (docs/merging.md: Combining LoRA adapters).

    ``paper`` averages A and B separately (the paper's choice); ``exact``
    concatenates the ranks so that B A = Σ λ_i B_i A_i.
    """
    configs = [json.loads((Path(d) / ADAPTER_CONFIG).read_text()) for d in member_dirs]
    for key in ("r", "lora_alpha", "target_modules"):
        # peft saves target_modules from a set, in no fixed order.
        values = {json.dumps(sorted(v) if isinstance(v := c.get(key), list) else v) for c in configs}
        if len(values) > 1:
            raise ValueError(f"experts' adapters differ in {key}: {sorted(values)}; they cannot be merged")
    updates = {}
    if mode == "exact":
        # Rank grows to Σ r_i; scale alpha with it so that alpha/r (peft's scaling) is unchanged.
        kept = sum(1 for w in weights if w != 0)
        updates = {ADAPTER_CONFIG: {"r": configs[0]["r"] * kept, "lora_alpha": configs[0]["lora_alpha"] * kept}}
    return MergeSpec(
        members=list(member_dirs),
        weights=list(weights),
        files=[ADAPTER_WEIGHTS],
        copy=[ADAPTER_CONFIG],
        lora=mode,
        json_updates=updates,
    )
