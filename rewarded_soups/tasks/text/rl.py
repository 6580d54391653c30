"""Online RL with a LoRA adapter through trl (GRPO or RLOO), the way trl expects to be used.

trl gets θ0 as a model id with ``model_init_kwargs`` (dtype, attention
implementation) and the adapter as ``peft_config``; learned reward models go
to trl as models with their tokenizers, so that trl and accelerate place them
on the trainer's device; rule-based rewards go as functions. Every run, expert
or MORL, starts from the same θ0 and the same adapter initialisation (trl
seeds it with ``seed`` before creating the adapter), with the same
hyperparameters; only the reward weights differ. MORL's scalarised reward
Σ μ_i R_i is trl's own ``reward_weights``.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import TrainerCallback

from rewarded_soups.registry import build_reward
from rewarded_soups.rewards.text import ClassifierReward
from rewarded_soups.tasks.base import Run
from rewarded_soups.tasks.text import policy
from rewarded_soups.tasks.text.data import Splits, prompts_of

log = logging.getLogger(__name__)


def reward_function(name: str, reward: Callable[[Sequence[str], Sequence[str]], list[float]]) -> Callable:
    """Adapt a reward to trl's ``f(prompts, completions, **kwargs)``; trl logs it by ``__name__``."""

    def fn(prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float]:
        return reward(prompts, completions)

    fn.__name__ = name
    return fn


def lora_config(settings: dict[str, Any]) -> LoraConfig:
    """The adapter; ``target_modules: null`` takes peft's default for the architecture (q_proj, v_proj for LLaMA)."""
    targets = settings["target_modules"]
    return LoraConfig(
        r=settings["r"],
        lora_alpha=settings["alpha"],
        lora_dropout=settings["dropout"],
        target_modules=list(targets) if targets else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def completion_lengths(setting: int | list[int]) -> tuple[int, int]:
    """``max_completion_length``: a number, or ``[low, high]`` to draw per step (Table 1: 16 to 32 tokens)."""
    if isinstance(setting, int):
        return setting, setting
    low, high = setting
    return int(low), int(high)


class CompletionLengthSampler(TrainerCallback):
    """Draw each step's maximum completion length uniformly from [low, high] (the paper's LengthSampler).

    The draw sets the trainer's generation config before the step's
    generation; a seeded generator makes the sequence of lengths the same for
    every run.
    """

    def __init__(self, trainer: Any, low: int, high: int, seed: int) -> None:
        self.trainer, self.low, self.high = trainer, low, high
        self.rng = random.Random(seed)
        self.drawn: list[int] = []

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        length = self.rng.randint(self.low, self.high)
        self.trainer.generation_config.max_new_tokens = length
        self.drawn.append(length)


def trl_rewards(rewards: dict[str, dict[str, Any]], active: list[str], context: dict[str, Any]):
    """trl's ``reward_funcs`` and ``reward_processing_classes``: reward models as models, the rest as functions."""
    funcs, tokenizers = [], []
    for name in active:
        reward = build_reward(rewards[name], context=context)
        if isinstance(reward, ClassifierReward):
            funcs.append(reward.model)
            tokenizers.append(reward.tokenizer)
        else:
            funcs.append(reward_function(name, reward))
            tokenizers.append(None)
    return funcs, tokenizers


def build_trainer(run: Run, scratch: Path, splits: Splits):
    """The trl trainer of one run (expert or MORL), writing its checkpoints (none are kept) into ``scratch``."""
    base_dir, rewards, weights, settings, seed = run.base_dir, run.rewards, run.weights, run.settings, run.seed
    cfg = settings["finetune"]
    active = [name for name, w in weights.items() if w > 0]
    if not active:
        raise ValueError(f"no reward has a positive weight in {weights}")
    ref = policy.base_model(base_dir)
    tokenizer = policy.load_tokenizer(ref)
    data = settings["data"]
    prompts = policy.policy_prompts(prompts_of(splits.train, data), tokenizer, data["chat_template"])
    funcs, reward_tokenizers = trl_rewards(rewards, active, {"base_model": str(base_dir)})
    low, high = completion_lengths(cfg["max_completion_length"])

    if cfg["algorithm"] == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    init_kwargs = policy.model_init_kwargs(ref, cfg["dtype"], cfg["attn_implementation"])
    if ref.adapter:
        # θ0 is a base model with an adapter merged in (e.g. LLaMA + Alpaca-LoRA): trl gets the merged model.
        model: Any = policy.load_policy(ref, dtype=cfg["dtype"], attn_implementation=cfg["attn_implementation"])
        init_kwargs = None
    else:
        model = ref.model
        init_kwargs.pop("trust_remote_code")  # trl passes args.trust_remote_code itself
    args = Config(
        output_dir=str(scratch),
        use_cpu=not torch.cuda.is_available(),
        max_steps=cfg["steps"] if cfg["epochs"] is None else -1,
        num_train_epochs=cfg["epochs"] or 1,
        per_device_train_batch_size=cfg["per_device_train_batch_size"],
        gradient_accumulation_steps=cfg["gradient_accumulation_steps"],
        generation_batch_size=cfg["generation_batch_size"],
        num_generations=cfg["num_generations"],
        max_completion_length=high,
        learning_rate=cfg["learning_rate"],
        temperature=cfg["temperature"],
        beta=cfg["beta"],
        reward_weights=[weights[name] for name in active],
        model_init_kwargs=init_kwargs,
        trust_remote_code=ref.trust_remote_code,
        bf16=cfg["bf16"],
        fp16=cfg["fp16"],
        activation_checkpointing=cfg["activation_checkpointing"],
        seed=seed,
        data_seed=seed,
        logging_steps=max(1, (cfg["steps"] or 20) // 20),
        save_strategy="no",
        report_to="none",
        disable_tqdm=False,  # trl's progress bar logs every logging step's rewards
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer,
        reward_processing_classes=reward_tokenizers,
        peft_config=lora_config(cfg["lora"]),
    )
    if low != high:
        trainer.add_callback(CompletionLengthSampler(trainer, low, high, seed))
    return trainer


def finetune(run: Run, splits: Splits) -> dict[str, Any]:
    """Train the run's LoRA adapter and save it (peft's layout) into ``run.out_dir``; return its metrics."""
    start = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_trainer(run, Path(scratch), splits)
        result = trainer.train()
    run.out_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(run.out_dir, safe_serialization=True)
    history = [h for h in trainer.state.log_history if "reward" in h]
    metrics = {
        "algorithm": run.settings["finetune"]["algorithm"],
        "weights": run.weights,
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "first_reward": history[0]["reward"] if history else None,
        "last_reward": history[-1]["reward"] if history else None,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None,
        "seconds": time.time() - start,
    }
    return metrics
