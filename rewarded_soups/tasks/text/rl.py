"""Online RL with a LoRA adapter through trl (GRPO or RLOO).

Every run, expert or MORL, starts from the same θ0 and the same adapter
initialisation (``lora.init_seed``), with the same hyperparameters; only the
reward weights differ. MORL's scalarised reward Σ μ_i R_i is trl's own
``reward_weights``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from rewarded_soups.registry import build_reward
from rewarded_soups.tasks.text.data import Splits, prompt_of
from rewarded_soups.tasks.text.model import with_bos

log = logging.getLogger(__name__)


def reward_function(name: str, reward: Callable[[Sequence[str], Sequence[str]], list[float]]) -> Callable:
    """Adapt a reward to trl's ``f(prompts, completions, **kwargs)``; trl logs it by ``__name__``."""

    def fn(prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float]:
        return reward(prompts, completions)

    fn.__name__ = name
    return fn


def lora_config(settings: dict[str, Any]) -> LoraConfig:
    return LoraConfig(
        r=settings["r"],
        lora_alpha=settings["alpha"],
        lora_dropout=settings["dropout"],
        target_modules=list(settings["target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
    )


def finetune(
    base_dir: Path,
    out_dir: Path,
    splits: Splits,
    rewards: dict[str, dict[str, Any]],
    weights: dict[str, float],
    settings: dict[str, Any],
    prompt_words: int,
    *,
    seed: int,
) -> dict[str, Any]:
    start = time.time()
    active = [name for name, w in weights.items() if w > 0]
    if not active:
        raise ValueError(f"no reward has a positive weight in {weights}")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    # The adapter's initial A matrices come from the global RNG: one seed for all runs.
    torch.manual_seed(settings["lora"]["init_seed"])
    model = get_peft_model(model, lora_config(settings["lora"]))

    context = {"base_model": str(base_dir)}
    funcs = [reward_function(name, build_reward(rewards[name], context=context)) for name in active]
    prompts = [with_bos(prompt_of(e, prompt_words), tokenizer) for e in splits.train]
    dataset = Dataset.from_dict({"prompt": prompts})

    if settings["algorithm"] == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    with tempfile.TemporaryDirectory() as scratch:
        args = Config(
            output_dir=scratch,
            use_cpu=not torch.cuda.is_available(),
            max_steps=settings["steps"],
            per_device_train_batch_size=settings["prompts_per_step"] * settings["num_generations"],
            num_generations=settings["num_generations"],
            max_completion_length=settings["max_completion_length"],
            learning_rate=settings["learning_rate"],
            temperature=settings["temperature"],
            beta=settings["beta"],
            reward_weights=[weights[name] for name in active],
            seed=seed,
            data_seed=seed,
            logging_steps=max(1, settings["steps"] // 20),
            save_strategy="no",
            report_to="none",
            disable_tqdm=False,  # trl's progress bar logs every logging step's rewards
            bf16=False,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model,
            reward_funcs=funcs,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        result = trainer.train()
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(out_dir, safe_serialization=True)
    history = [h for h in trainer.state.log_history if "reward" in h]
    metrics = {
        "algorithm": settings["algorithm"],
        "weights": weights,
        "steps": result.global_step,
        "train_loss": result.training_loss,
        "first_reward": history[0]["reward"] if history else None,
        "last_reward": history[-1]["reward"] if history else None,
        "seconds": time.time() - start,
    }
    (out_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
