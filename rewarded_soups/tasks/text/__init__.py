"""Text RLHF (paper Section 3.1): a small GPT-2 θ0, LoRA experts trained with trl.

Samples are JSON lines ``{"prompt": ..., "completion": ...}``. Heavy imports
happen inside the functions so that looking this task up stays cheap.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def _splits(settings: dict[str, Any], seed: int):
    from rewarded_soups.tasks.text.data import load_splits

    return load_splits(settings["data"], seed)


def pretrain(out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
    import torch

    from rewarded_soups.tasks.text.model import pretrain as train

    torch.set_num_threads(threads)
    return train(Path(out_dir), _splits(settings, seed), settings["pretrain"], seed=seed)


def finetune(
    base_dir: Path,
    out_dir: Path,
    rewards: dict[str, dict[str, Any]],
    weights: dict[str, float],
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
) -> dict[str, Any]:
    import torch

    from rewarded_soups.tasks.text.rl import finetune as train

    torch.set_num_threads(threads)
    return train(
        Path(base_dir),
        Path(out_dir),
        _splits(settings, seed),
        rewards,
        weights,
        settings["finetune"],
        settings["data"]["prompt_words"],
        seed=seed,
    )


def merge(
    base_dir: Path, expert_dirs: list[Path], weights: list[float], out_dir: Path, settings: dict[str, Any]
) -> None:
    """Interpolate the experts' LoRA adapters (see :mod:`rewarded_soups.merging` for the two modes)."""
    from safetensors.torch import load_file, save_file

    from rewarded_soups.merging import merge as merge_weights

    mode = settings["merge"]["lora_mode"]
    configs = [json.loads((Path(d) / ADAPTER_CONFIG).read_text()) for d in expert_dirs]
    for key in ("r", "lora_alpha", "target_modules"):
        # peft saves target_modules from a set, in no fixed order.
        values = {json.dumps(sorted(v) if isinstance(v := c.get(key), list) else v) for c in configs}
        if len(values) > 1:
            raise ValueError(f"experts' adapters differ in {key}: {sorted(values)}; they cannot be merged")
    merged = merge_weights([load_file(Path(d) / ADAPTER_WEIGHTS) for d in expert_dirs], weights, lora_mode=mode)
    config = dict(configs[0])
    if mode == "exact":
        # Rank grows to Σ r_i; scale alpha with it so that alpha/r (peft's scaling) is unchanged.
        kept = sum(1 for w in weights if w != 0)
        config["r"] = config["r"] * kept
        config["lora_alpha"] = config["lora_alpha"] * kept
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(merged, out_dir / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    (out_dir / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))


def load_model(base_dir: Path, model_dir: Path | None):
    """θ0, or θ0 with an adapter (an expert, a soup or a MORL run)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    if model_dir is not None:
        model = PeftModel.from_pretrained(model, model_dir).merge_and_unload()
    return tokenizer, model.eval()


SAMPLES_FILE = "samples.jsonl"


def generate(
    base_dir: Path, model_dir: Path | None, out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int
) -> None:
    """Sample one completion per held-out prompt; batch b uses seed+b for every model."""
    import torch
    from tqdm.auto import tqdm

    from rewarded_soups.tasks.text.data import prompt_of
    from rewarded_soups.tasks.text.model import with_bos

    torch.set_num_threads(threads)
    cfg = settings["evaluate"]
    from rewarded_soups.tasks.text.model import device

    tokenizer, model = load_model(Path(base_dir), Path(model_dir) if model_dir else None)
    model.to(device())
    prompts = [prompt_of(e, settings["data"]["prompt_words"]) for e in _splits(settings, seed).test][: cfg["n_prompts"]]
    rows = []
    batches = range(0, len(prompts), cfg["batch_size"])
    for b, i in enumerate(tqdm(batches, desc="generate", mininterval=10)):
        batch = prompts[i : i + cfg["batch_size"]]
        enc = tokenizer(
            [with_bos(p, tokenizer) for p in batch], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(device())
        torch.manual_seed(seed + b)
        with torch.no_grad():
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
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        rows.extend({"prompt": p, "completion": t} for p, t in zip(batch, texts))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / SAMPLES_FILE, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def read_samples(samples_dir: Path) -> list[dict[str, str]]:
    with open(Path(samples_dir) / SAMPLES_FILE) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def score(samples_dir: Path, reward: dict[str, Any], *, base_dir: Path, threads: int) -> list[float]:
    import torch

    from rewarded_soups.registry import build_reward

    torch.set_num_threads(threads)
    rows = read_samples(Path(samples_dir))
    scorer = build_reward(reward, context={"base_model": str(base_dir)})
    return scorer([r["prompt"] for r in rows], [r["completion"] for r in rows])


def samples_table(samples: dict[str, Path], n: int) -> str:
    """Markdown: for the first ``n`` prompts, each model's completion (paper Table 2)."""
    loaded = {label: read_samples(Path(p)) for label, p in samples.items()}
    lines = []
    first = next(iter(loaded.values()))
    for i, row in enumerate(first[:n]):
        lines += [f"### Prompt {i + 1}: “{row['prompt']}”", "", "| model | completion |", "| --- | --- |"]
        for label, rows in loaded.items():
            text = rows[i]["completion"].replace("|", "\\|").replace("\n", " ").strip() or "*(empty)*"
            lines.append(f"| {label} | {row['prompt']} **{text}** |")
        lines.append("")
    return "\n".join(lines)
