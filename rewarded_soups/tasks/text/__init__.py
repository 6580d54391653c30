"""Text RLHF (paper Section 3.1): θ0 (a small GPT-2 trained here, or a hub LLM), LoRA experts trained with trl.

Samples are one record per held-out prompt, ``{"prompt": ..., "completion": ...}``,
the prompt as the policy read it. Heavy imports happen inside the functions so that looking
this task up (as config validation does) stays cheap.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from rewarded_soups.gpus import torch_threads
from rewarded_soups.merging.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from rewarded_soups.registry import register_task
from rewarded_soups.tasks.base import Run
from rewarded_soups.tasks.text import perplexity  # noqa: F401  (registers the perplexity metric)

register_task(
    "text",
    module=__name__,
    modality="text",
    # How LoRA adapters are combined is this task's key of the merge section (see schema.yaml).
    reads={"merge": ("merge.lora_mode",)},
)


log = logging.getLogger(__name__)


def check_settings(task: dict[str, Any]) -> None:
    """What the schema cannot say, checked before any job (messages start with the key's path)."""
    data, ft = task["data"], task["finetune"]
    if data["source"] == "datasets":
        if not data.get("dataset"):
            raise ValueError("data.dataset: data.source is datasets, so name a hub id or local file(s)")
        if bool(data.get("column")) == bool(data.get("template")):
            raise ValueError("data: give exactly one of data.column (the prompt column) and data.template")
        from rewarded_soups.tasks.text.data import dataset_location

        dataset_location(data)  # a local path that does not exist fails here, not after pre-training
    if data["min_chars"] > data["max_chars"]:
        raise ValueError(f"data.min_chars ({data['min_chars']}) is above data.max_chars ({data['max_chars']})")
    if ft["bf16"] and ft["fp16"]:
        raise ValueError("finetune: bf16 and fp16 are both true; choose one mixed precision")
    low, high = (
        (ft["max_completion_length"],) * 2
        if isinstance(ft["max_completion_length"], int)
        else ft["max_completion_length"]
    )
    if low > high:
        raise ValueError(f"finetune.max_completion_length: [{low}, {high}] must be [low, high] with low <= high")
    batch = ft["per_device_train_batch_size"] * ft["gradient_accumulation_steps"]
    generation = ft["generation_batch_size"] or batch
    if generation % ft["num_generations"]:
        raise ValueError(
            f"finetune: the generation batch ({generation} completions: generation_batch_size, or "
            f"per_device_train_batch_size × gradient_accumulation_steps) must be a multiple of num_generations "
            f"({ft['num_generations']}), so that every prompt gets all its completions"
        )
    if ft["generation_batch_size"] and ft["generation_batch_size"] % ft["per_device_train_batch_size"]:
        raise ValueError(
            f"finetune.generation_batch_size ({ft['generation_batch_size']}) must be a multiple of "
            f"per_device_train_batch_size ({ft['per_device_train_batch_size']})"
        )
    merge = task["merge"]
    if merge["lora_mode"] == "exact":
        from rewarded_soups.merging.methods import build
        from rewarded_soups.plan import merge_methods

        entrywise = [m for m in merge_methods(task) if build(m, _method_options(merge, m)).exact_lora_scale() is None]
        if entrywise:
            raise ValueError(
                f"merge.method: {', '.join(entrywise)} combine the A and B matrices entry by entry, which needs "
                "adapters of one rank: set merge.lora_mode to paper"
            )
    from rewarded_soups.paths import looks_local, model_directory_problem

    model = task["pretrain"].get("model")
    problem = model and model_directory_problem(model)
    if problem:
        raise ValueError(f"pretrain.model: {problem}")
    adapter = task["pretrain"].get("adapter")
    if adapter and looks_local(adapter) and not Path(adapter).expanduser().is_dir():
        raise ValueError(
            f"pretrain.adapter: {adapter} is not a directory (a local adapter; a hub id looks like org/name)"
        )


def _method_options(merge: dict[str, Any], name: str) -> dict[str, Any]:
    from rewarded_soups.merging.methods import get

    return {k: v for k, v in merge.get(name, {}).items() if k in get(name).options()}


def local_inputs(task: dict[str, Any], stage: str, rewards: list[str]) -> list[str]:
    """Local files a stage reads besides the workflow's own: θ0's directory, reward models, dataset files.

    The rules declare them as inputs, so that replacing a local model or data
    file reruns what read it (Snakemake compares modification times).
    ``rewards``: the rewards the job trains on or scores.
    """
    paths: list[Path] = []
    data = task["data"]
    if stage in ("pretrain", "finetune", "generate"):
        source = data["dataset"] if data["source"] == "datasets" else data.get("path")
        if source:
            paths.append(Path(source).expanduser())
    if stage == "pretrain":
        paths += [Path(task["pretrain"][key]).expanduser() for key in ("model", "adapter") if task["pretrain"].get(key)]
    scorers = {**task["rewards"], **task.get("metrics", {})}
    if stage in ("finetune", "score"):
        paths += [Path(scorers[r]["model"]).expanduser() for r in rewards if scorers[r]["kind"] == "classifier"]
    files: list[str] = []
    for path in paths:
        if path.is_file():
            files.append(str(path.resolve()))
        elif path.is_dir():
            files += sorted(str(f.resolve()) for f in path.rglob("*") if f.is_file() and ".cache" not in f.parts)
    return files


def _splits(settings: dict[str, Any], seed: int):
    from rewarded_soups.tasks.text.data import load_splits

    return load_splits(settings["data"], seed)


def pretrain(out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
    from rewarded_soups.tasks.text.model import pretrain as train

    torch_threads(threads)
    return train(Path(out_dir), _splits(settings, seed), settings["pretrain"], seed=seed)


def finetune(run: Run) -> dict[str, Any]:
    """GRPO (or RLOO) with a LoRA adapter through trl, on the run's rewards with trl's ``reward_weights``."""
    from rewarded_soups.tasks.text.rl import finetune as train

    torch_threads(run.threads)
    return train(run, _splits(run.settings, run.data_seed))


def merge_spec(base_dir: Path, expert_dirs: list[Path], weights: list[float], settings: dict[str, Any]):
    """The experts' LoRA adapters and how to combine them (docs/merging.md: Combining LoRA adapters)."""
    from rewarded_soups.merging.adapters import adapter_merge_spec

    return adapter_merge_spec(expert_dirs, weights, settings["merge"]["lora_mode"])


def load_policy(base_dir: Path, model_dir: Path | None, *, dtype: str = "float32", device: Any = "cpu"):
    """The tokenizer and θ0, or θ0 with an adapter merged in (an expert, a soup or a MORL run; a soup recipe
    is built in memory)."""
    import dataclasses

    from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict

    from rewarded_soups.merging.engine import materialize
    from rewarded_soups.tasks.text import policy

    ref = policy.base_model(Path(base_dir))
    tokenizer = policy.load_tokenizer(ref)
    model = policy.load_policy(ref, dtype=dtype).to(device)
    if model_dir is not None:
        adapter = materialize(Path(model_dir), device)
        if adapter.tensors:
            settable = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
            config = LoraConfig(**{k: v for k, v in adapter.config(ADAPTER_CONFIG).items() if k in settable})
            model = get_peft_model(model, config)
            set_peft_model_state_dict(model, adapter.tensors[ADAPTER_WEIGHTS])
            model = model.merge_and_unload()
        else:
            model = PeftModel.from_pretrained(model, model_dir).merge_and_unload()
    return tokenizer, model.eval()


def evaluation_prompts(settings: dict[str, Any], tokenizer: Any, seed: int, split: str = "test") -> list[str]:
    """A held-out split's prompts as the policy reads them (chat template applied when configured)."""
    from rewarded_soups.tasks.text.data import prompts_of
    from rewarded_soups.tasks.text.policy import policy_prompts

    splits, cfg = _splits(settings, seed), settings["evaluate"]
    texts, n = (splits.test, cfg["n_prompts"]) if split == "test" else (splits.valid, cfg["validation_size"])
    prompts = prompts_of(texts, settings["data"])[:n]
    return policy_prompts(prompts, tokenizer, settings["data"]["chat_template"])


# Sampling seeds of split s, batch b: SPLIT_SEED_OFFSET[s] + seed + b (test keeps the seeds it always had).
SPLIT_SEED_OFFSET = {"test": 0, "validation": 1_000_003}


def load_model(base_dir: Path, model_dir: Path | None, settings: dict[str, Any], *, threads: int):
    """(tokenizer, model, device): θ0, or θ0 with ``model_dir``'s adapter, in ``evaluate.dtype`` on the job's device."""
    from rewarded_soups.gpus import torch_device

    torch_threads(threads)
    device = torch_device()
    tokenizer, model = load_policy(
        Path(base_dir), Path(model_dir) if model_dir else None, dtype=settings["evaluate"]["dtype"], device=device
    )
    return tokenizer, model, device


def generate(loaded: Any, split: str, settings: dict[str, Any], *, seed: int):
    """One sampled completion per held-out prompt of the split; batch b uses the same seed for every model."""
    from rewarded_soups.samples import Samples

    tokenizer, model, device = loaded
    prompts = evaluation_prompts(settings, tokenizer, seed, split)
    cfg = settings["evaluate"]
    return Samples(_sample(model, tokenizer, prompts, cfg, seed + SPLIT_SEED_OFFSET[split], device, split))


def _sample(model, tokenizer, prompts: list[str], cfg: dict[str, Any], seed: int, device, split: str) -> list[dict]:
    import torch
    from tqdm.auto import tqdm

    rows = []
    batches = range(0, len(prompts), cfg["batch_size"])
    started = time.time()
    new_tokens = 0
    for b, i in enumerate(tqdm(batches, desc=f"generate {split}", mininterval=10)):
        batch = prompts[i : i + cfg["batch_size"]]
        enc = tokenizer(batch, return_tensors="pt", padding=True).to(device)
        # The same seed for every model: differences between models are the models'.
        torch.manual_seed(seed + b)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=cfg["temperature"],
                top_k=0,
                top_p=1.0,
                max_new_tokens=cfg["max_new_tokens"],
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        completion_ids = out[:, enc["input_ids"].shape[1] :]
        new_tokens += int((completion_ids != tokenizer.pad_token_id).sum())
        texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
        rows.extend({"prompt": p, "completion": t} for p, t in zip(batch, texts))
    seconds = time.time() - started
    log.info(
        "%s: generated %d completions on %s: %d new tokens in %.1f s (%.0f tokens/s)",
        split,
        len(rows),
        device,
        new_tokens,
        seconds,
        new_tokens / max(seconds, 1e-9),
    )
    return rows


def reward_context(base_dir: Path) -> dict[str, Any]:
    """θ0's directory, for rewards that read text as the policy does (perplexity under θ0)."""
    return {"base_model": str(base_dir)}


def reward_inputs(samples: Any) -> tuple[list[str], list[str]]:
    """(prompts, completions)."""
    return samples.column("prompt"), samples.column("completion")


def samples_table(samples: dict[str, Any], n: int) -> str:
    """Markdown: for the first ``n`` prompts, each model's completion (paper Table 2)."""
    loaded = {label: produced.records for label, produced in samples.items()}
    lines = []
    first = next(iter(loaded.values()))
    for i, row in enumerate(first[:n]):
        lines += [f"### Prompt {i + 1}: “{row['prompt']}”", "", "| model | completion |", "| --- | --- |"]
        # Long prompts (articles, questions) are shown once in the heading; rows repeat their end.
        lead = row["prompt"] if len(row["prompt"]) <= 80 else "…" + row["prompt"][-60:]
        lead = lead.replace("|", "\\|").replace("\n", " ")
        for label, rows in loaded.items():
            text = rows[i]["completion"].replace("|", "\\|").replace("\n", " ").strip() or "*(empty)*"
            lines.append(f"| {label} | {lead} **{text}** |")
        lines.append("")
    return "\n".join(lines)


def fisher(run: Run) -> dict[str, Any]:
    """The diagonal Fisher of the expert adapter in ``run.out_dir`` on its own training prompts, with completions
    it samples itself."""
    import torch
    from peft import PeftModel, get_peft_model_state_dict

    from rewarded_soups.gpus import torch_device
    from rewarded_soups.merging.fisher import diagonal_fisher
    from rewarded_soups.tasks.text import policy
    from rewarded_soups.tasks.text.data import prompts_of
    from rewarded_soups.tasks.text.rl import completion_lengths

    torch_threads(run.threads)
    settings, seed = run.settings, run.seed
    cfg, data = settings["finetune"], settings["data"]
    device = torch_device()
    ref = policy.base_model(run.base_dir)
    tokenizer = policy.load_tokenizer(ref)
    model = policy.load_policy(ref, dtype=cfg["dtype"])
    model = PeftModel.from_pretrained(model, run.out_dir, is_trainable=True).to(device).eval()
    prompts = policy.policy_prompts(
        prompts_of(_splits(settings, run.data_seed).train, data), tokenizer, data["chat_template"]
    )
    n = min(settings["merge"]["fisher"]["samples"], len(prompts))
    chosen = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    _, max_tokens = completion_lengths(cfg["max_completion_length"])
    temperature = cfg["temperature"]

    def sample_logprob(i: int) -> torch.Tensor:
        enc = tokenizer(prompts[chosen[i]], return_tensors="pt").to(device)
        torch.manual_seed(seed + i)
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        start = enc["input_ids"].shape[1]
        completion = out[0, start:]
        ends = (completion == tokenizer.eos_token_id).nonzero()
        length = int(ends[0]) + 1 if len(ends) else len(completion)
        logits = model(input_ids=out[:, : start + length]).logits[0, start - 1 : start + length - 1].float()
        logprobs = torch.log_softmax(logits / temperature, dim=-1)
        return logprobs.gather(-1, completion[:length, None]).sum()

    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    values = diagonal_fisher(trainable, sample_logprob, n)
    # The adapter's own tensor names (as saved in adapter_model.safetensors).
    return {ADAPTER_WEIGHTS: get_peft_model_state_dict(model, state_dict=values)}
