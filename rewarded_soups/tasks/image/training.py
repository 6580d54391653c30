"""Training loops of the text-to-image task: denoising pre-training and reward-weighted fine-tuning.

The fine-tuning recipe is the paper's (Appendix F, after Lee et al. 2023):
generate images from θ0 for training prompts, keep the best half by the
reward, rescale the kept rewards to minimum 0 and mean 1, and minimise the
reward-weighted denoising loss, training only the UNet's cross-attention
layers and its bias and normalisation parameters (about 10% of the weights).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rewarded_soups.resume import LoopState
from rewarded_soups.tasks.image.model import Pipeline, denoising_losses, to_tensor

log = logging.getLogger(__name__)


def reward_weights(rewards: Sequence[float], keep_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the best ``keep_fraction`` of the samples and their loss weights.

    Weights are the kept rewards shifted so that the smallest kept one is 0
    and scaled so that they average 1 (the loss keeps the pre-training scale).
    When every kept reward is equal there is nothing to prefer: all weights are 1.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or len(r) == 0:
        raise ValueError(f"expected a non-empty list of rewards, got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("rewards contain NaN or infinity")
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    n_keep = max(1, math.ceil(keep_fraction * len(r)))
    # Stable sort: ties keep their order, so the selection is deterministic.
    kept = np.argsort(-r, kind="stable")[:n_keep]
    shifted = r[kept] - r[kept].min()
    mean = shifted.mean()
    weights = shifted / mean if mean > 0 else np.ones_like(shifted)
    return kept, weights


def is_trainable(name: str, module: nn.Module) -> bool:
    """Cross-attention (``attn2``), every bias, and every normalisation layer's parameters."""
    if ".attn2." in f".{name}.":
        return True
    return isinstance(module, nn.GroupNorm | nn.LayerNorm)


def select_trainable(unet: nn.Module) -> tuple[int, int]:
    """Freeze the UNet but the fine-tuned subset; return (trainable, total) parameter counts."""
    trainable = total = 0
    for module_name, module in unet.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            chosen = is_trainable(module_name, module) or param_name == "bias"
            param.requires_grad_(chosen)
            trainable += param.numel() if chosen else 0
            total += param.numel()
    return trainable, total


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", mininterval=5)


def pretrain(
    pipe: Pipeline, images: np.ndarray, captions: Sequence[Sequence[str]], settings: dict[str, Any], *, seed: int
) -> dict[str, Any]:
    """Denoising training of the UNet and the text encoder together, from scratch.

    Each step draws a batch of images and one of each image's captions;
    ``caption_dropout`` of them get the empty prompt, which classifier-free
    guidance needs at sampling time.
    """
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = to_tensor(images)
    params = list(pipe.unet.parameters()) + list(pipe.text_encoder.parameters())
    optimiser = torch.optim.AdamW(params, lr=settings["learning_rate"], weight_decay=0.0)
    warmup = max(1, settings["steps"] // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / warmup))
    pipe.unet.train()
    pipe.text_encoder.train()
    start = time.perf_counter()
    state = LoopState(
        "pretrain",
        total_steps=settings["steps"],
        unet=pipe.unet,
        text_encoder=pipe.text_encoder,
        optimiser=optimiser,
        schedule=schedule,
        generator=generator,
        rng=rng,
    )
    first, saved = state.resume({"losses": []})
    losses = saved["losses"]
    with _progress(settings["steps"], "pretrain") as bar:
        bar.update(first)
        for step in range(first, settings["steps"]):
            idx = rng.integers(0, len(data), settings["batch_size"])
            prompts = [
                "" if rng.random() < settings["caption_dropout"] else captions[i][rng.integers(len(captions[i]))]
                for i in idx
            ]
            loss = denoising_losses(pipe, data[idx], prompts, generator).mean()
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
            bar.update()
            if (step + 1) % max(1, settings["steps"] // 10) == 0:
                log.info("step %d: denoising loss %.4f", step + 1, float(np.mean(losses[-50:])))
            state.step_done(step + 1, {"losses": losses})
    pipe.unet.eval()
    pipe.text_encoder.eval()
    return {"final_loss": float(np.mean(losses[-50:])), "seconds": time.perf_counter() - start}


def reward_weighted_finetune(
    pipe: Pipeline,
    images: np.ndarray,
    prompts: Sequence[str],
    weights: np.ndarray,
    settings: dict[str, Any],
    *,
    seed: int,
    anchor: tuple[np.ndarray, Sequence[Sequence[str]]] | None = None,
) -> dict[str, Any]:
    """Minimise Σ w_i · denoising loss_i over the kept samples, training the selected UNet subset only.

    With ``anchor`` (the pre-training images and captions), the pre-training
    denoising loss on a batch of them is added with weight
    ``pretrain_loss_weight`` (β in Lee et al. 2023): training on its own
    samples alone drifts the model toward blurrier images than it was trained on.
    """
    trainable, total = select_trainable(pipe.unet)
    pipe.text_encoder.requires_grad_(False)
    log.info("training %d of %d UNet parameters (%.1f%%)", trainable, total, 100 * trainable / total)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    data, w = to_tensor(images), torch.as_tensor(weights, dtype=torch.float32)
    params = [p for p in pipe.unet.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=settings["learning_rate"], weight_decay=0.0)
    pipe.unet.train()
    start = time.perf_counter()
    state = LoopState(
        "finetune", total_steps=settings["steps"], unet=pipe.unet, optimiser=optimiser, generator=generator, rng=rng
    )
    first, saved = state.resume({"losses": []})
    losses = saved["losses"]
    with _progress(settings["steps"], "reward-weighted fine-tuning") as bar:
        bar.update(first)
        for step in range(first, settings["steps"]):
            idx = rng.integers(0, len(data), settings["batch_size"])
            # As in pre-training, some prompts are dropped: the unconditional branch that
            # classifier-free guidance subtracts then moves with the conditional one.
            batch_prompts = ["" if rng.random() < settings["caption_dropout"] else prompts[i] for i in idx]
            per_image = denoising_losses(pipe, data[idx], batch_prompts, generator)
            loss = (w[idx].to(per_image.device) * per_image).mean()
            if anchor is not None:
                real = rng.integers(0, len(anchor[0]), settings["batch_size"])
                real_prompts = [anchor[1][i][rng.integers(len(anchor[1][i]))] for i in real]
                real_loss = denoising_losses(pipe, to_tensor(anchor[0][real]), real_prompts, generator).mean()
                loss = loss + settings["pretrain_loss_weight"] * real_loss
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            losses.append(loss.item())
            bar.update()
            if (step + 1) % max(1, settings["steps"] // 5) == 0:
                log.info("step %d: weighted loss %.4f", step + 1, float(np.mean(losses[-20:])))
            state.step_done(step + 1, {"losses": losses})
    pipe.unet.eval()
    return {
        "final_loss": float(np.mean(losses[-20:])) if losses else float("nan"),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "seconds": time.perf_counter() - start,
    }
