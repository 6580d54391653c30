"""Training loops: cross-entropy pretraining (θ0) and self-critical sequence training.

SCST (Rennie et al. 2017) is REINFORCE with the reward of the model's own
greedy caption as the baseline: a sample is reinforced only by how much it
beats what the model would say at test time. It needs no value network and
no extra samples, which is why the paper's captioning experiments use it.

Both loops run on the CPU (or the GPU when there is one), are deterministic
given ``seed`` on the CPU, and return plain dicts of metrics for JSON.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from rewarded_soups.gpus import torch_device
from rewarded_soups.resume import LoopState
from rewarded_soups.vision_language.encoder_decoder import Captioner, images_to_tensor
from rewarded_soups.vision_language.vocab import Vocab

log = logging.getLogger(__name__)

RewardFn = Callable[[list[str], list[list[str]]], list[float]]


def scst_loss(
    sample_logprobs: torch.Tensor, sample_rewards: torch.Tensor, baseline_rewards: torch.Tensor
) -> torch.Tensor:
    """−mean((r_sample − r_baseline) · log p(sample)); the advantage is a constant.

    Detaching matters when rewards are tensors that depend on the model (a
    learned reward): the policy gradient must not flow into them.
    """
    advantage = (sample_rewards - baseline_rewards).detach().to(sample_logprobs.dtype)
    return -(advantage * sample_logprobs).mean()


def _interval(steps: int, log_every: int | None) -> int:
    return max(1, log_every or steps // 20 or 1)


def train_xent(
    model: Captioner,
    images: np.ndarray,
    captions: Sequence[Sequence[str]],
    vocab: Vocab,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    max_len: int | None = None,
    clip: float = 1.0,
    log_every: int | None = None,
    prompts: np.ndarray | None = None,
) -> dict[str, Any]:
    """Teacher-forced cross-entropy on (image, caption) pairs, every reference its own pair.

    Pairs are drawn in shuffled epochs (a permutation per epoch from
    ``seed``), so every caption is seen before any is repeated. ``prompts``:
    for a model that reads one, the prompt ids of each image (``n × prompt_len``).
    """
    start = time.time()
    max_len = max_len or model.max_len
    pairs = [(i, c) for i, refs in enumerate(captions) for c in refs]
    if not pairs:
        raise ValueError("no (image, caption) pairs to train on")
    ids = torch.from_numpy(vocab.encode_batch([c for _, c in pairs], max_len))
    owner = torch.tensor([i for i, _ in pairs])
    pixels = images_to_tensor(images)
    prompt_ids = None if prompts is None else torch.from_numpy(np.asarray(prompts))
    dev = torch_device()
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    model.to(dev).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    interval = _interval(steps, log_every)
    # Saved at its end too: captioning's θ0 runs SCST after it, and a kill there need not redo this loop.
    state = LoopState("xent", total_steps=steps, save_at_end=True, model=model, optimiser=optimiser, order_rng=rng)
    first, saved = state.resume(
        {"history": [], "order": torch.randperm(len(pairs), generator=rng), "cursor": 0, "window": []}
    )
    history, order, cursor, window = saved["history"], saved["order"], saved["cursor"], saved["window"]
    bar = tqdm(
        range(first, steps), desc="xent", initial=first, total=steps, mininterval=10, miniters=max(1, steps // 50)
    )
    for step in bar:
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(pairs), generator=rng), 0
        batch = order[cursor : cursor + batch_size]
        cursor += batch_size
        batch_prompts = None if prompt_ids is None else prompt_ids[owner[batch]].to(dev)
        loss = model.xent_loss(pixels[owner[batch]].to(dev), ids[batch].to(dev), batch_prompts)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimiser.step()
        window.append(loss.item())
        if (step + 1) % interval == 0 or step + 1 == steps:
            history.append(float(np.mean(window)))
            window = []
            log.info("xent step %d/%d: loss %.3f", step + 1, steps, history[-1])
        state.step_done(step + 1, {"history": history, "order": order, "cursor": cursor, "window": window})
    model.cpu().eval()
    return {
        "loss": history,
        "log_every": interval,
        "steps": steps,
        "pairs": len(pairs),
        "seconds": time.time() - start,
    }


def train_scst(
    model: Captioner,
    images: np.ndarray,
    references: Sequence[Sequence[str]],
    reward_fn: RewardFn,
    vocab: Vocab,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    max_len: int,
    seed: int,
    clip: float = 1.0,
    log_every: int | None = None,
    prompts: np.ndarray | None = None,
) -> dict[str, Any]:
    """SCST: one multinomial sample per image, the greedy caption's reward as baseline.

    Images are drawn in shuffled epochs. Per logging interval the result
    holds the mean reward of samples and of greedy captions (the latter is
    what evaluation sees). ``prompts``: as in :func:`train_xent`.
    """
    start = time.time()
    if len(references) != len(images) or not len(images):
        raise ValueError(f"{len(images)} images but {len(references)} reference sets")
    pixels = images_to_tensor(images)
    prompt_ids = None if prompts is None else torch.from_numpy(np.asarray(prompts))
    refs = [list(r) for r in references]
    dev = torch_device()
    torch.manual_seed(seed)
    order_rng = torch.Generator().manual_seed(seed)
    sampler = torch.Generator(device=dev).manual_seed(seed)
    model.to(dev).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    interval = _interval(steps, log_every)
    state = LoopState("scst", total_steps=steps, model=model, optimiser=optimiser, order_rng=order_rng, sampler=sampler)
    first, saved = state.resume(
        {
            "order": torch.randperm(len(images), generator=order_rng),
            "cursor": 0,
            **{key: [] for key in ("sample_means", "greedy_means", "sample_window", "greedy_window")},
        }
    )
    order, cursor = saved["order"], saved["cursor"]
    sample_means, greedy_means = saved["sample_means"], saved["greedy_means"]
    sample_window, greedy_window = saved["sample_window"], saved["greedy_window"]
    bar = tqdm(
        range(first, steps), desc="scst", initial=first, total=steps, mininterval=10, miniters=max(1, steps // 50)
    )
    for step in bar:
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(images), generator=order_rng), 0
        batch = order[cursor : cursor + batch_size].tolist()
        cursor += batch_size
        x = pixels[batch].to(dev)
        p = None if prompt_ids is None else prompt_ids[batch].to(dev)
        batch_refs = [refs[i] for i in batch]

        model.eval()  # the baseline is the test-time caption: no dropout (a no-op at the default dropout 0)
        greedy_ids = model.greedy(x, max_len, prompts=p)
        model.train()
        sample_ids, sample_logprobs = model.sample(x, max_len, generator=sampler, prompts=p)
        greedy_rewards = reward_fn(vocab.decode_batch(greedy_ids.tolist()), batch_refs)
        sample_rewards = reward_fn(vocab.decode_batch(sample_ids.tolist()), batch_refs)

        loss = scst_loss(
            sample_logprobs,
            torch.tensor(sample_rewards, dtype=torch.float32, device=dev),
            torch.tensor(greedy_rewards, dtype=torch.float32, device=dev),
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimiser.step()

        sample_window.extend(sample_rewards)
        greedy_window.extend(greedy_rewards)
        if (step + 1) % interval == 0 or step + 1 == steps:
            sample_means.append(float(np.mean(sample_window)))
            greedy_means.append(float(np.mean(greedy_window)))
            sample_window, greedy_window = [], []
            bar.set_postfix(reward=f"{sample_means[-1]:.3f}", greedy=f"{greedy_means[-1]:.3f}", refresh=False)
            log.info(
                "scst step %d/%d: sample reward %.4f, greedy reward %.4f",
                step + 1,
                steps,
                sample_means[-1],
                greedy_means[-1],
            )
        state.step_done(
            step + 1,
            {
                "order": order,
                "cursor": cursor,
                "sample_means": sample_means,
                "greedy_means": greedy_means,
                "sample_window": sample_window,
                "greedy_window": greedy_window,
            },
        )
    model.cpu().eval()
    return {
        "sample_reward": sample_means,
        "greedy_reward": greedy_means,
        "log_every": interval,
        "steps": steps,
        "seconds": time.time() - start,
    }


def pretrain_xent(
    vocab: Vocab,
    images: np.ndarray,
    targets: Sequence[Sequence[str]],
    settings: dict[str, Any],
    *,
    steps: int,
    seed: int,
    prompts: Sequence[str] | None = None,
    max_len: int | None = None,
) -> tuple[Captioner, dict[str, Any]]:
    """A fresh model of ``pretrain.model``'s shape trained with cross-entropy on ``targets`` (θ0's first stage).

    ``prompts``: the texts a model that reads one is given (questions, expressions); ``max_len``: the
    decoder's positions when the task fixes them (four location tokens and <eos>).
    """
    from rewarded_soups.vision_language import encoder_decoder

    data, cfg = settings["data"], settings["pretrain"]
    fixed = {} if max_len is None else {"max_len": max_len}
    model = encoder_decoder.build(
        encoder_decoder.make_config(len(vocab), image_size=data["image_size"], **fixed, **cfg["model"]), seed
    )
    log.info("θ0: %d parameters, vocabulary %d tokens", encoder_decoder.parameter_count(model), len(vocab))
    prompt_ids = None if prompts is None else vocab.encode_batch(list(prompts), model.prompt_len)
    metrics = train_xent(
        model,
        images,
        targets,
        vocab,
        steps=steps,
        batch_size=cfg["batch_size"],
        lr=cfg["learning_rate"],
        seed=seed,
        prompts=prompt_ids,
    )
    return model, metrics


def self_critical_finetune(run: Any, images: np.ndarray, references: Sequence[Sequence[str]], prompts=None) -> dict:
    """A task's expert or MORL run (a :class:`~rewarded_soups.tasks.base.Run`): self-critical REINFORCE from θ0 on
    Σ weights[r]·R_r of its texts against ``references`` (``prompts``: the questions, for a model that reads one)."""
    from rewarded_soups.rewards import Scalarised
    from rewarded_soups.vision_language.captions import reward_context
    from rewarded_soups.vision_language.encoder_decoder import save
    from rewarded_soups.vision_language.policy import load_model

    cfg = run.settings["finetune"]
    policy = load_model(run.base_dir, None, run.settings, threads=run.threads)
    prompt_ids = None if prompts is None else policy.vocab.encode_batch(prompts, policy.model.prompt_len)
    with Scalarised(run.rewards, run.weights, reward_context(run.base_dir)) as reward:
        metrics = train_scst(
            policy.model,
            images,
            references,
            reward,
            policy.vocab,
            steps=cfg["steps"],
            batch_size=cfg["batch_size"],
            lr=cfg["learning_rate"],
            max_len=cfg["max_len"],
            seed=run.seed,
            prompts=prompt_ids,
        )
    save(policy.model, run.out_dir)
    return metrics
