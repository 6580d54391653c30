"""REINFORCE from a referenced θ0, as the paper trains its vision-language experts.

One loop serves the three tasks: self-critical sequence training (the
model's greedy output is the baseline, Rennie et al.) for captioning and VQA,
and cross-entropy + REINFORCE for grounding (``xent_weight`` > 0 with target
texts). A step samples one completion per example from the model, scores it
and the greedy one with the task's reward, and follows
``-(r - b) · Σ log p`` (+ ``xent_weight`` · cross-entropy of the targets) over
``gradient_accumulation_steps`` batches. LoRA through peft (``finetune.lora``)
or every weight; bf16 autocast and activation checkpointing as configured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# finetune.lora's keys left out (the schema cannot fill in defaults below a nullable key)
LORA_DEFAULTS = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}
# reward(texts, example indices) -> one value per text
Reward = Callable[[list[str], list[int]], list[float]]


def _trainable(model: Any, lora: dict[str, Any] | None):
    if not lora:
        return model
    from peft import LoraConfig, get_peft_model

    lora = {**LORA_DEFAULTS, **lora}
    config = LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=lora["target_modules"]
    )
    return get_peft_model(model, config)


def reinforce(
    base_dir: Path,
    out_dir: Path,
    images: Sequence[Any],
    prompts: Sequence[str] | None,
    reward: Reward,
    cfg: dict[str, Any],
    *,
    seed: int,
    texts_of: Callable[[Any, list[Any]], list[str]] | None = None,
    targets: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train from θ0 in ``base_dir`` on ``reward`` and save the expert (adapter or full weights) in ``out_dir``.

    ``cfg`` is the task's ``finetune`` section; ``texts_of(family, completions)``
    turns completions into what ``reward`` reads (decoded text by default);
    ``targets``: one target text per example, for the cross-entropy term.
    """
    import torch

    from rewarded_soups.gpus import torch_device
    from rewarded_soups.resume import LoopState
    from rewarded_soups.vision_language.pretrained.model import load_base, save

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = torch_device()
    family = load_base(base_dir, dtype="float32", device=device)
    texts_of = texts_of or (lambda fam, completions: fam.decode(completions))
    if cfg["activation_checkpointing"] and hasattr(family.model, "gradient_checkpointing_enable"):
        family.model.gradient_checkpointing_enable()
    family.model = _trainable(family.model, cfg.get("lora"))
    params = [p for p in family.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg["learning_rate"], weight_decay=0.0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(cfg["bf16"]))
    xent_weight = cfg.get("xent_weight", 0.0) if targets is not None else 0.0
    n, batch = len(images), min(cfg["batch_size"], len(images))
    start = time.perf_counter()
    state = LoopState("finetune", total_steps=cfg["steps"], model=family.model, optimiser=optimizer, rng=rng)
    first, saved = state.resume({"history": {"reward": [], "baseline": [], "loss": []}})
    history: dict[str, list[float]] = saved["history"]
    for step in range(first, cfg["steps"]):
        optimizer.zero_grad()
        for _ in range(cfg["gradient_accumulation_steps"]):
            chosen = rng.choice(n, size=batch, replace=False).tolist()
            batch_images = [images[i] for i in chosen]
            batch_prompts = None if prompts is None else [prompts[i] for i in chosen]
            family.model.eval()
            with autocast:
                sampled = family.generate(batch_images, batch_prompts, cfg["max_len"], sample=True)
                greedy = (
                    family.generate(batch_images, batch_prompts, cfg["max_len"], sample=False)
                    if (cfg.get("baseline", "greedy") == "greedy")
                    else sampled
                )
            r = np.asarray(reward(texts_of(family, sampled), chosen), dtype=np.float64)
            # The self-critical baseline (the greedy output's reward), or none (grounding's paper setting).
            b = (
                np.asarray(reward(texts_of(family, greedy), chosen), dtype=np.float64)
                if cfg.get("baseline", "greedy") == "greedy"
                else np.zeros_like(r)
            )
            family.model.train()
            with autocast:
                logprobs, _ = family.completion_logprobs(batch_images, batch_prompts, sampled)
                advantage = torch.tensor(r - b, dtype=torch.float32, device=device)
                loss = -(advantage * logprobs).mean() * cfg.get("reinforce_weight", 1.0)
                if xent_weight:
                    target_ids = family.encode_targets([targets[i] for i in chosen])
                    target_logprobs, lengths = family.completion_logprobs(batch_images, batch_prompts, target_ids)
                    loss = loss + xent_weight * (-(target_logprobs / lengths.clamp(min=1))).mean()
            (loss / cfg["gradient_accumulation_steps"]).backward()
            history["reward"].append(float(r.mean()))
            history["baseline"].append(float(b.mean()))
            history["loss"].append(float(loss.detach()))
        optimizer.step()
        if (step + 1) % max(1, cfg["steps"] // 5) == 0 or step + 1 == cfg["steps"]:
            recent = slice(-cfg["gradient_accumulation_steps"], None)
            log.info(
                "step %d/%d: sampled reward %.4f, greedy %.4f",
                step + 1,
                cfg["steps"],
                np.mean(history["reward"][recent]),
                np.mean(history["baseline"][recent]),
            )
        state.step_done(step + 1, {"history": history})
    save(family.model, Path(out_dir))
    return {**history, "trainable_parameters": sum(p.numel() for p in params), "seconds": time.perf_counter() - start}
