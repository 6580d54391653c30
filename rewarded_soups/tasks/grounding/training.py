"""The paper's visual grounding RL loss: cross-entropy plus a weighted REINFORCE term (Appendix G, Table 5).

For the expert on small objects the paper minimises
``−(log p(ŷ) + 5 · 1{area(ŷ) is small} · 1{IoU(y, ŷ) > 0.5} · log p(y))``
with ŷ the ground-truth box and y a sampled prediction: cross-entropy keeps
the model grounding every object, and the sampled boxes that hit a target of
the expert's size are reinforced. The reward is the expert's (or MORL's
mixed) reward function, 0 for targets outside its size class. Without a
baseline (the paper's) the term only ever pushes hits up; with
``baseline="greedy"`` it is self-critical (the greedy box's reward subtracted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from rewarded_soups.gpus import torch_device
from rewarded_soups.resume import LoopState
from rewarded_soups.vision_language.encoder_decoder import Captioner, images_to_tensor
from rewarded_soups.vision_language.training import scst_loss
from rewarded_soups.vision_language.vocab import Vocab

log = logging.getLogger(__name__)

# Rewards of predicted token strings against the targets' boxes, one per sample (0: nothing to reinforce).
BoxRewardFn = Callable[[list[str], Sequence[Sequence[float]]], list[float]]


def train_xent_reinforce(
    model: Captioner,
    images: np.ndarray,
    prompts: np.ndarray,
    target_ids: np.ndarray,
    target_boxes: np.ndarray,
    reward_fn: BoxRewardFn,
    vocab: Vocab,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    max_len: int,
    seed: int,
    xent_weight: float = 1.0,
    reinforce_weight: float = 5.0,
    baseline: Literal["none", "greedy"] = "none",
    clip: float = 1.0,
) -> dict[str, Any]:
    """``xent_weight``·CE(ground truth) + ``reinforce_weight``·REINFORCE(one sampled box per image).

    Images are drawn in shuffled epochs; the result holds, per logging
    interval, the loss and the mean reward of the samples and of the greedy
    boxes (what evaluation sees).
    """
    start = time.time()
    if not len(images) == len(prompts) == len(target_ids) == len(target_boxes):
        raise ValueError("images, prompts, target ids and boxes must have one row per sample")
    pixels = images_to_tensor(images)
    prompt_ids, gt_ids = torch.from_numpy(np.asarray(prompts)), torch.from_numpy(np.asarray(target_ids))
    dev = torch_device()
    torch.manual_seed(seed)
    order_rng = torch.Generator().manual_seed(seed)
    sampler = torch.Generator(device=dev).manual_seed(seed)
    model.to(dev).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    interval = max(1, steps // 20)
    keys = ("loss", "sample_reward", "greedy_reward")
    state = LoopState(
        "reinforce", total_steps=steps, model=model, optimiser=optimiser, order_rng=order_rng, sampler=sampler
    )
    first, saved = state.resume(
        {
            "history": {k: [] for k in keys},
            "window": {k: [] for k in keys},
            "order": torch.randperm(len(images), generator=order_rng),
            "cursor": 0,
        }
    )
    history: dict[str, list[float]] = saved["history"]
    window: dict[str, list[float]] = saved["window"]
    order, cursor = saved["order"], saved["cursor"]
    bar = tqdm(
        range(first, steps),
        desc="xent+reinforce",
        initial=first,
        total=steps,
        mininterval=10,
        miniters=max(1, steps // 50),
    )
    for step in bar:
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(images), generator=order_rng), 0
        batch = order[cursor : cursor + batch_size]
        cursor += batch_size
        x, p = pixels[batch].to(dev), prompt_ids[batch].to(dev)
        boxes = [target_boxes[i] for i in batch.tolist()]

        model.eval()
        greedy_rewards = reward_fn(vocab.decode_batch(model.greedy(x, max_len, prompts=p).tolist()), boxes)
        model.train()
        sample_ids, sample_logprobs = model.sample(x, max_len, generator=sampler, prompts=p)
        sample_rewards = reward_fn(vocab.decode_batch(sample_ids.tolist()), boxes)
        rewards = torch.tensor(sample_rewards, dtype=torch.float32, device=dev)
        base = torch.tensor(greedy_rewards if baseline == "greedy" else [0.0] * len(boxes), device=dev)
        loss = xent_weight * model.xent_loss(x, gt_ids[batch].to(dev), p)
        loss = loss + reinforce_weight * scst_loss(sample_logprobs, rewards, base)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimiser.step()

        window["loss"].append(loss.item())
        window["sample_reward"].extend(sample_rewards)
        window["greedy_reward"].extend(greedy_rewards)
        if (step + 1) % interval == 0 or step + 1 == steps:
            for key in history:
                history[key].append(float(np.mean(window[key])))
                window[key] = []
            log.info(
                "step %d/%d: loss %.3f, sample reward %.4f, greedy reward %.4f",
                step + 1,
                steps,
                history["loss"][-1],
                history["sample_reward"][-1],
                history["greedy_reward"][-1],
            )
        state.step_done(step + 1, {"history": history, "window": window, "order": order, "cursor": cursor})
    model.cpu().eval()
    return {**history, "log_every": interval, "steps": steps, "seconds": time.time() - start}
