"""What the captioning, VQA and grounding tasks call when θ0 is a transformers model (``pretrain.checkpoint``)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def uses_checkpoint(settings: dict[str, Any]) -> bool:
    """Whether the task's config names a pretrained model (its ``pretrain`` section, where the stage has it)."""
    return bool(settings.get("pretrain", {}).get("checkpoint"))


def prompts_for(template: str | None, n: int, texts: Sequence[str] | None = None) -> list[str] | None:
    """The model's prompts: ``template`` with ``{}`` replaced by each question or expression (``texts``)."""
    if texts is None:
        return None if template is None else [template] * n
    if template is None or "{}" not in template:
        raise ValueError(
            f"data.prompt {template!r} must hold {{}} where the question or expression goes "
            "(e.g. 'Question: {} Answer:' for BLIP, 'answer en {}' or 'detect {}' for PaliGemma)"
        )
    return [template.replace("{}", t) for t in texts]


@dataclass
class PretrainedPolicy:
    """A transformers model (its :class:`~.families.Family`) as the tasks generate with it: greedy, in batches."""

    family: Any
    prompt: str | None
    batch_size: int

    def generate(self, images: Sequence[Any], max_len: int, prompts: Sequence[str] | None = None) -> list[str]:
        """Greedy texts for ``images`` (answering ``prompts``: questions or expressions), ``max_len`` new tokens."""
        texts: list[str] = []
        all_prompts = prompts_for(self.prompt, len(images), prompts)
        for start in range(0, len(images), self.batch_size):
            chunk = [images[i] for i in range(start, min(start + self.batch_size, len(images)))]
            chunk_prompts = None if all_prompts is None else all_prompts[start : start + len(chunk)]
            texts += self.family.decode(self.family.generate(chunk, chunk_prompts, max_len, sample=False))
        return texts


def reference_theta0(out_dir: Path, settings: dict[str, Any], train_references: list[list[str]] | None = None):
    """θ0 = the model of ``pretrain.checkpoint``: its reference (not its weights) and, for caption rewards,
    the training references (CIDEr's document frequencies). Loads it once to fail early."""
    from rewarded_soups.pretrained import reference, write_reference
    from rewarded_soups.vision_language.captions import REFERENCES_FILE
    from rewarded_soups.vision_language.pretrained.model import load_base

    start = time.perf_counter()
    out_dir = Path(out_dir)
    ref = reference(settings["pretrain"], key="checkpoint")
    write_reference(out_dir, ref)
    family = load_base(out_dir)
    if train_references is not None:
        (out_dir / REFERENCES_FILE).write_text(json.dumps(train_references))
    parameters = sum(p.numel() for p in family.model.parameters())
    log.info("θ0 is %s (%s, %d parameters)", ref.model, type(family.model).__name__, parameters)
    return {
        "model": ref.model,
        "revision": ref.revision,
        "architecture": type(family.model).__name__,
        "parameters": parameters,
        "seconds": time.perf_counter() - start,
    }


def load_policy(base_dir: Path, model_dir: Path | None, settings: dict[str, Any]) -> PretrainedPolicy:
    from rewarded_soups.gpus import torch_device
    from rewarded_soups.vision_language.pretrained.model import load

    cfg = settings["evaluate"]
    family = load(base_dir, model_dir, dtype=cfg["dtype"], device=torch_device())
    return PretrainedPolicy(family, settings["data"]["prompt"], cfg["batch_size"])


def finetune(
    run: Any, images: Sequence[Any], texts: Sequence[str] | None, reward, *, max_len: int | None = None, **options: Any
) -> dict[str, Any]:
    """REINFORCE from θ0 (:func:`.training.reinforce`) with the task's prompts (``texts``: questions or
    expressions) and ``reward(texts, example indices)``; ``max_len`` overrides ``finetune.max_len``."""
    from rewarded_soups.vision_language.pretrained.training import reinforce

    cfg = dict(run.settings["finetune"])
    if max_len is not None:
        cfg["max_len"] = max_len
    prompts = prompts_for(run.settings["data"]["prompt"], len(images), texts)
    return reinforce(run.base_dir, run.out_dir, images, prompts, reward, cfg, seed=run.seed, **options)


def check_settings(task: dict[str, Any]) -> None:
    """What a pretrained θ0 rules out, before any job."""
    source = task["data"].get("source", "shapes")
    if not task["pretrain"].get("checkpoint"):
        if source == "datasets":
            raise ValueError(
                "data.source: real data (datasets) needs a pretrained model: set pretrain.checkpoint to a hub id or "
                "local directory (the small model reads only the generated shapes)"
            )
        return
    if task.get("theta0"):
        raise ValueError("theta0 and pretrain.checkpoint both name θ0: set theta0 to null to start from the checkpoint")
    if source == "shapes":
        log.info("pretrain.checkpoint with data.source shapes: the model is fine-tuned on the generated scenes")
    if source == "datasets" and not task["data"].get("dataset"):
        raise ValueError("data.dataset: data.source is datasets, so name a hub id or local file(s)")
    baselines = task.get("baselines", {})
    for name in ("ensemble", "wise"):
        if baselines.get(name):
            raise ValueError(f"baselines.{name}: not available with pretrain.checkpoint; set it to false")
    if task.get("merge", {}).get("method") == "fisher":
        raise ValueError("merge.method fisher: not available with pretrain.checkpoint (no Fisher for these models yet)")


DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


def local_inputs(task: dict[str, Any], stage: str, rewards: list[str]) -> list[str]:
    """Local files a stage reads: the data files (not the image folders: thousands of files) and θ0's directory.

    The rules declare them as inputs, so that replacing one reruns what read it.
    """
    files: list[Path] = []
    data = task["data"]
    if data.get("source") == "datasets" and stage in ("pretrain", "finetune", "generate"):
        source = Path(data["dataset"]).expanduser()
        if source.is_file():
            files.append(source)
        elif source.is_dir():
            files += sorted(p for p in source.iterdir() if p.is_file() and p.suffix in DATA_SUFFIXES)
    checkpoint = task["pretrain"].get("checkpoint")
    if stage == "pretrain" and checkpoint and Path(checkpoint).expanduser().is_dir():
        root = Path(checkpoint).expanduser()
        files += sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts)
    return [str(p.resolve()) for p in files]
