"""θ0 for the text task: a byte-level BPE tokenizer and a small GPT-2 trained from scratch, or an existing LM."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, get_cosine_schedule_with_warmup

from rewarded_soups.gpus import torch_device
from rewarded_soups.resume import LoopState
from rewarded_soups.tasks.text import policy
from rewarded_soups.tasks.text.data import Splits

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    # Every text starts with end-of-text, as every training entry does: the tokenizer adds it
    # itself (as LLaMA's adds its BOS), so prompts are plain text everywhere.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{EOS} $A", pair=f"{EOS} $A {EOS} $B", special_tokens=[(EOS, tok.token_to_id(EOS))]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS)
    fast.padding_side = "left"
    return fast


def token_stream(texts: list[str], tokenizer: PreTrainedTokenizerFast) -> torch.Tensor:
    """All entries as one stream, each preceded and the last followed by end-of-text."""
    eos = tokenizer.eos_token_id
    ids: list[int] = [eos]
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


@torch.no_grad()
def stream_perplexity(model: torch.nn.Module, stream: torch.Tensor, block: int, max_blocks: int) -> float:
    """exp(mean next-token NLL) over non-overlapping blocks of a token stream."""
    model.eval()
    n_blocks = min(max_blocks, (len(stream) - 1) // block)
    if n_blocks < 1:
        raise ValueError(f"held-out stream of {len(stream)} tokens is shorter than one block ({block})")
    blocks = stream[: n_blocks * block].view(n_blocks, block)
    total, count = 0.0, 0
    device = torch_device()
    model.to(device)
    for i in range(0, n_blocks, 16):
        batch = blocks[i : i + 16].to(device)
        out = model(input_ids=batch, labels=batch)
        n = batch.numel() - batch.shape[0]
        total += out.loss.item() * n
        count += n
    model.cpu()
    return math.exp(total / count)


def pretrain(out_dir: Path, splits: Splits, settings: dict[str, Any], *, seed: int) -> dict[str, Any]:
    """Train tokenizer and GPT-2 on ``splits.train``, or reference ``settings['model']``; report held-out perplexity."""
    start = time.time()
    torch.manual_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    if settings.get("model"):
        # An existing LM (local directory or hub id): referenced, not copied.
        ref = policy.reference(settings)
        policy.write_reference(out_dir, ref)
        tokenizer = policy.load_tokenizer(ref)
        model = policy.load_policy(ref, dtype=settings["dtype"])
        steps_done = 0
    else:
        tokenizer = train_tokenizer(splits.train, settings["vocab_size"])
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=settings["block_size"],
            n_embd=settings["n_embd"],
            n_layer=settings["n_layer"],
            n_head=settings["n_head"],
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
        )
        model = GPT2LMHeadModel(config)
        steps_done = _train_lm(model, token_stream(splits.train, tokenizer), settings, seed)
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    block = min(settings["block_size"], model.config.max_position_embeddings)
    valid_ppl = stream_perplexity(model, token_stream(splits.valid, tokenizer), block, settings["eval_batches"] * 16)
    metrics = {
        "valid_perplexity": valid_ppl,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "steps": steps_done,
        "train_entries": len(splits.train),
        "seconds": time.time() - start,
    }
    (out_dir / "pretrain_metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info("θ0: valid perplexity %.2f, %d parameters", valid_ppl, metrics["parameters"])
    return metrics


def _train_lm(model: torch.nn.Module, stream: torch.Tensor, settings: dict[str, Any], seed: int) -> int:
    block, batch, steps = settings["block_size"], settings["batch_size"], settings["steps"]
    device = torch_device()
    model.to(device)
    if len(stream) <= block + 1:
        raise ValueError(f"training stream of {len(stream)} tokens is shorter than block_size={block}")
    gen = torch.Generator().manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimiser = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings["learning_rate"],
        betas=(0.9, 0.95),
    )
    schedule = get_cosine_schedule_with_warmup(optimiser, settings["warmup_steps"], steps)
    model.train()
    state = LoopState("pretrain", total_steps=steps, model=model, optimiser=optimiser, schedule=schedule, generator=gen)
    first, saved = state.resume({"running": None})
    running = saved["running"]
    bar = tqdm(
        range(first, steps), desc="pretrain", initial=first, total=steps, mininterval=10, miniters=max(1, steps // 50)
    )
    for step in bar:
        starts = torch.randint(0, len(stream) - block - 1, (batch,), generator=gen)
        x = torch.stack([stream[s : s + block] for s in starts]).to(device)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        optimiser.zero_grad(set_to_none=True)
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        bar.set_postfix(loss=f"{running:.3f}", refresh=False)
        if (step + 1) % max(1, steps // 10) == 0:
            log.info("pretrain step %d/%d: loss %.3f", step + 1, steps, running)
        state.step_done(step + 1, {"running": running})
    model.cpu()
    return steps
