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

import contextlib
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import TrainerCallback

from rewarded_soups import resume
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
        self.trainer, self.low, self.high, self.seed = trainer, low, high, seed
        self.rng = random.Random(seed)
        self.drawn: list[int] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # One draw per step: a run resumed at step k draws the lengths an uninterrupted run draws from step k.
        self.rng = random.Random(self.seed)
        for _ in range(state.global_step):
            self.rng.randint(self.low, self.high)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        length = self.rng.randint(self.low, self.high)
        self.trainer.generation_config.max_new_tokens = length
        self.drawn.append(length)


class CheckpointEvery(TrainerCallback):
    """The Trainer's checkpoints on the job's schedule (:mod:`rewarded_soups.resume`): every ``every_steps``
    steps through ``save_steps``, and every ``every_minutes`` by asking the Trainer to save.

    A checkpoint directory counts once the Trainer has finished writing it (``on_save`` marks it
    :data:`COMPLETE`); the older ones are removed then, so a kill mid-write resumes from the previous.
    """

    COMPLETE = "rewarded_soups_complete"

    def __init__(self, checkpoints: Any) -> None:
        self.checkpoints = checkpoints

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.step_ended = time.perf_counter()  # the Trainer saves after this call: on_save times the save
        if state.global_step < state.max_steps and self.checkpoints.due(state.global_step):
            control.should_save = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        done = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        (done / self.COMPLETE).touch()
        seconds = time.perf_counter() - getattr(self, "step_ended", time.perf_counter())
        size = sum(f.stat().st_size for f in done.rglob("*") if f.is_file())
        self.checkpoints.saved_now(state.global_step, seconds, size)
        for older in Path(args.output_dir).glob("checkpoint-*"):
            if older != done:
                shutil.rmtree(older, ignore_errors=True)
        log.info("checkpoint at step %d: %.1f MB in %.2f s (%s)", state.global_step, size / 1e6, seconds, done)

    @classmethod
    def latest(cls, output_dir: Path) -> str | None:
        """The newest complete checkpoint in ``output_dir``, for ``trainer.train(resume_from_checkpoint=...)``."""
        complete = [d for d in Path(output_dir).glob("checkpoint-*") if (d / cls.COMPLETE).exists()]
        if not complete:
            return None
        return str(max(complete, key=lambda d: int(d.name.split("-")[-1])))


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


def build_trainer(run: Run, scratch: Path, splits: Splits, checkpoints: Any = None):
    """The trl trainer of one run (expert or MORL), writing its checkpoints into ``scratch``.

    ``checkpoints``: the job's (:func:`rewarded_soups.resume.active`); when off, the Trainer saves none.
    """
    checkpoints = checkpoints or resume.Checkpoints()
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
        # Checkpoints only for a job that resumes (rewarded_soups.resume); CheckpointEvery adds the timed ones.
        save_strategy="steps" if checkpoints.enabled else "no",
        save_steps=checkpoints.every_steps or 10**9,
        save_only_model=False,
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
    if checkpoints.enabled:
        trainer.add_callback(CheckpointEvery(checkpoints))
    return trainer


def finetune(run: Run, splits: Splits) -> dict[str, Any]:
    """Train the run's LoRA adapter and save it (peft's layout) into ``run.out_dir``; return its metrics."""
    start = time.time()
    checkpoints = resume.active()
    with contextlib.ExitStack() as stack:
        # The Trainer's own checkpoints (weights, optimiser, scheduler, RNG states, data position) go into the
        # job's checkpoint directory when it has one, where a rerun after a kill finds them.
        scratch = checkpoints.scratch("trainer") or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        trainer = build_trainer(run, scratch, splits, checkpoints)
        latest = CheckpointEvery.latest(scratch)
        if latest:
            log.info("resuming the Trainer from %s", latest)
            checkpoints.resumed_at(int(latest.rsplit("-", 1)[-1]))
        result = trainer.train(resume_from_checkpoint=latest)
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
