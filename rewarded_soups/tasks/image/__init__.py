"""Text-to-image (paper Section 3.3, Appendix F): a diffusion model aligned to image rewards.

With ``pretrain.checkpoint``, θ0 is a pretrained Stable Diffusion-family
pipeline (:mod:`.pretrained`), prompted from a dataset (:mod:`.prompts`) and
scored by learned rewards (:mod:`rewarded_soups.rewards.image_models`).
Otherwise θ0 is a small diffusers UNet with a CLIP text encoder, trained from scratch on
generated scenes of coloured shapes (:mod:`rewarded_soups.data.shapes`) with
their varied captions. Experts and MORL follow the paper's offline
reward-weighted recipe (:mod:`.training`); soups interpolate the UNets.
Samples are the held-out prompts with their images (uint8, in the samples'
arrays); every model starts each prompt from the same noise.
torch and diffusers are imported inside the functions so that looking this
task up stays cheap.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from rewarded_soups.gpus import torch_threads
from rewarded_soups.registry import register_task
from rewarded_soups.tasks.base import Run

register_task(
    "image",
    module=__name__,
    modality="image",
    # Rows of the qualitative image grid: display only, read by the qualitative job alone.
    # Generation reads finetune.n_images: prompts of a pretrained pipeline that share a dataset split with
    # the fine-tuning images come after them.
    reads={
        "qualitative": ("plots.grid_prompts",),
        "generate": ("finetune.n_images",),
        "merge": ("merge.lora_mode",),
    },
)


log = logging.getLogger(__name__)

UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
# Offsets of the scene seeds of each split from the workflow seed: the
# pre-training scenes, the fine-tuning prompts and the evaluation prompts never share a scene.
_SPLITS = {"train": 0, "finetune": 1, "test": 2, "validation": 3}


def check_settings(task: dict[str, Any]) -> None:
    from rewarded_soups.tasks.image.pretrained import uses_checkpoint

    if uses_checkpoint(task):
        _check_pipeline_settings(task)
        return
    if task["data"]["source"] == "datasets":
        raise ValueError(
            "data.source: prompts from a dataset need a pretrained pipeline: set pretrain.checkpoint to a hub id or "
            "local directory (the small UNet reads only the generated shapes' words)"
        )
    channels = task["pretrain"]["channels"]
    groups = task["pretrain"]["norm_groups"]
    if any(c % groups for c in channels):
        raise ValueError(f"pretrain.channels: every entry of {channels} must be a multiple of norm_groups ({groups})")
    size, levels = task["data"]["image_size"], len(channels)
    if size % 2 ** (levels - 1):
        raise ValueError(f"data.image_size: {size} must be divisible by 2^{levels - 1} for a UNet with {levels} levels")
    if task["pretrain"]["text_dim"] % task["pretrain"]["text_heads"]:
        raise ValueError("pretrain.text_dim must be a multiple of pretrain.text_heads")


def _check_pipeline_settings(task: dict[str, Any]) -> None:
    """What a pretrained pipeline as θ0 rules out, before any job."""
    if task.get("theta0"):
        raise ValueError("theta0 and pretrain.checkpoint both name θ0: set theta0 to null to start from the checkpoint")
    if task["data"]["source"] == "datasets" and not task["data"].get("dataset"):
        raise ValueError("data.dataset: data.source is datasets, so name a hub id, local data files or a text file")
    if task["finetune"]["pretrain_loss_weight"] > 0:
        raise ValueError("finetune.pretrain_loss_weight: needs the shapes' pre-training scenes; set it to 0")
    if task.get("merge", {}).get("method") == "fisher":
        raise ValueError("merge.method fisher: not available with pretrain.checkpoint")


def local_inputs(task: dict[str, Any], stage: str, rewards: list[str]) -> list[str]:
    """Local files a stage reads: θ0's pipeline directory, prompt files, reward models and heads.

    The rules declare them as inputs, so that replacing one reruns what read it.
    """
    from rewarded_soups.tasks.image.prompts import local_files

    files: list[Path] = []
    checkpoint = task["pretrain"].get("checkpoint")
    if stage == "pretrain" and checkpoint and Path(checkpoint).expanduser().is_dir():
        files += _files(Path(checkpoint).expanduser())
    if stage in ("finetune", "generate") and task["data"]["source"] == "datasets":
        files += [Path(f) for f in local_files(task["data"])]
    scorers = {**task["rewards"], **task.get("metrics", {})}
    if stage in ("finetune", "score"):
        for name in rewards:
            for key in ("model", "head"):
                value = scorers[name].get(key)
                if isinstance(value, str) and Path(value).expanduser().exists():
                    path = Path(value).expanduser()
                    files += _files(path) if path.is_dir() else [path]
    return sorted({str(p.resolve()) for p in files})


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts)


def _scenes(data: dict[str, Any], split: str, n: int, seed: int) -> tuple[np.ndarray, list[list[str]]]:
    from rewarded_soups.data.shapes import make_set

    return make_set(n, seed=seed * 1000 + _SPLITS[split], size=data["image_size"], n_captions=data["captions"])


def _prompts(data: dict[str, Any], split: str, n: int, seed: int) -> list[str]:
    """One caption per scene, cycling through the phrasings so that every style is prompted."""
    _, captions = _scenes(data, split, n, seed)
    return [c[i % len(c)] for i, c in enumerate(captions)]


def _seeds(seed: int, split: str, n: int) -> list[int]:
    return [seed * 1_000_000 + _SPLITS[split] * 100_000 + i for i in range(n)]


def _sample_split(pipe, data: dict[str, Any], cfg: dict[str, Any], split: str, n: int, seed: int):
    """Prompts of a split and their images, one fixed noise seed per prompt (the same for every model)."""
    from rewarded_soups.tasks.image.model import sample

    prompts = _prompts(data, split, n, seed)
    images = sample(
        pipe,
        prompts,
        _seeds(seed, split, n),
        inference_steps=cfg["inference_steps"],
        guidance_scale=cfg["guidance_scale"],
    )
    return prompts, images


def pretrain(out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
    torch_threads(threads)
    from rewarded_soups.tasks.image import pretrained

    if pretrained.uses_checkpoint(settings):
        return pretrained.reference_theta0(Path(out_dir), settings)
    import torch
    from diffusers import DDPMScheduler

    from rewarded_soups.gpus import torch_device
    from rewarded_soups.tasks.image.model import (
        Pipeline,
        build_text_encoder,
        build_tokenizer,
        build_unet,
    )
    from rewarded_soups.tasks.image.training import pretrain as train

    data, cfg = settings["data"], settings["pretrain"]
    images, captions = _scenes(data, "train", data["train_scenes"], seed)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer([c for cs in captions for c in cs], data["max_prompt_tokens"])
    pipe = Pipeline(
        tokenizer=tokenizer,
        text_encoder=build_text_encoder(len(tokenizer), cfg, data["max_prompt_tokens"], tokenizer.eos_token_id),
        unet=build_unet(data["image_size"], cfg),
        scheduler=DDPMScheduler(
            num_train_timesteps=cfg["train_timesteps"],
            beta_schedule=cfg["beta_schedule"],
            prediction_type=cfg["prediction_type"],
        ),
    ).to(torch_device())
    log.info(
        "θ0: UNet %d parameters, text encoder %d, vocabulary %d words, %d scenes",
        sum(p.numel() for p in pipe.unet.parameters()),
        sum(p.numel() for p in pipe.text_encoder.parameters()),
        len(tokenizer),
        len(images),
    )
    metrics = train(pipe, images, captions, cfg, seed=seed)
    pipe.save(Path(out_dir))
    return metrics | {"device": str(pipe.device)}


def finetune(run: Run) -> dict[str, Any]:
    """The offline reward-weighted recipe on Σ weights[r]·R_r (one reward for an expert)."""
    import torch

    from rewarded_soups.pretrained import REFERENCE_FILE
    from rewarded_soups.rewards import Scalarised
    from rewarded_soups.tasks.image.training import reward_weighted_finetune, reward_weights

    if (Path(run.base_dir) / REFERENCE_FILE).exists():
        return _finetune_pipeline(run)
    data, cfg, seed = run.settings["data"], run.settings["finetune"], run.seed
    pipe = load_model(run.base_dir, None, run.settings, threads=run.threads)
    # The same prompts and noise for every expert and MORL run: only the reward differs.
    prompts, images = _sample_split(pipe, data, cfg, "finetune", cfg["n_images"], run.data_seed)
    with Scalarised(run.rewards, run.weights) as scalarised:
        values = scalarised.values(images, prompts)
        for name, v in values.items():
            log.info("offline samples: %s mean %.4f", name, v.mean())
        reward = np.asarray(scalarised.combine(values))
    kept, loss_weights = reward_weights(reward, cfg["keep_fraction"])
    log.info(
        "kept %d of %d images: reward %.4f -> %.4f (mean of all -> of kept)",
        len(kept),
        len(reward),
        reward.mean(),
        reward[kept].mean(),
    )
    torch.manual_seed(seed)
    anchor = _scenes(data, "train", data["train_scenes"], run.data_seed) if cfg["pretrain_loss_weight"] > 0 else None
    metrics = reward_weighted_finetune(
        pipe, images[kept], [prompts[i] for i in kept], loss_weights, cfg, seed=seed, anchor=anchor
    )
    metrics |= {"offline_reward_mean": float(reward.mean()), "kept_reward_mean": float(reward[kept].mean())}
    pipe.save(run.out_dir, unet_only=True)
    return metrics


def _finetune_pipeline(run: Run) -> dict[str, Any]:
    """The paper's recipe on a pretrained pipeline: θ0's images, the best share kept, reward-weighted loss."""
    import torch

    from rewarded_soups.gpus import torch_device
    from rewarded_soups.rewards import Scalarised
    from rewarded_soups.tasks.image import pretrained
    from rewarded_soups.tasks.image.training import reward_weights

    torch_threads(run.threads)
    cfg = run.settings["finetune"]
    # The reward models first: a missing one fails the job before minutes of sampling.
    with Scalarised(run.rewards, run.weights) as scalarised:
        pipe = pretrained.load(run.base_dir, None, dtype="float32", device=torch_device(), scheduler=cfg["scheduler"])
        # The same prompts and noise for every expert and MORL run: only the reward differs.
        samples = _pipeline_samples(pipe, run.settings, cfg, "finetune", run.data_seed)
        values = scalarised.values(*reward_inputs(samples))
        for name, v in values.items():
            log.info("offline samples: %s mean %.4f", name, v.mean())
        reward = np.asarray(scalarised.combine(values))
    kept, loss_weights = reward_weights(reward, cfg["keep_fraction"])
    log.info("kept %d of %d images: reward %.4f -> %.4f", len(kept), len(reward), reward.mean(), reward[kept].mean())
    torch.manual_seed(run.seed)
    prompts = samples.column("prompt")
    metrics = pretrained.reward_weighted_finetune(
        pipe, samples.arrays["images"][kept], [prompts[i] for i in kept], loss_weights, cfg, seed=run.seed
    )
    pretrained.save(pipe.unet, run.out_dir)
    return metrics | {"offline_reward_mean": float(reward.mean()), "kept_reward_mean": float(reward[kept].mean())}


def _pipeline_samples(pipe, settings: dict[str, Any], cfg: dict[str, Any], role: str, seed: int):
    """A role's prompts (:mod:`.prompts`, or the shapes' captions) and the pipeline's images, as Samples."""
    from rewarded_soups.samples import Samples
    from rewarded_soups.tasks.image.pretrained import sample
    from rewarded_soups.tasks.image.prompts import load_prompts

    data = settings["data"]
    sizes = {"finetune": settings["finetune"]["n_images"]}
    if "evaluate" in settings:
        sizes |= {"validation": settings["evaluate"]["validation_size"], "test": settings["evaluate"]["n_prompts"]}
    if data["source"] == "datasets":
        prompts = load_prompts(data, role, sizes, seed)
    else:
        prompts = _prompts(data, role, sizes[role], seed)
    images = sample(
        pipe,
        prompts,
        _seeds(seed, role, len(prompts)),
        image_size=data["image_size"],
        inference_steps=cfg["inference_steps"],
        guidance_scale=cfg["guidance_scale"],
        batch_size=settings["evaluate"]["batch_size"] if "evaluate" in settings else cfg["batch_size"],
    )
    return Samples([{"prompt": p} for p in prompts], {"images": images})


def merge_spec(base_dir: Path, member_dirs: list[Path], weights: list[float], settings: dict[str, Any]):
    """Σ λ_i θ_i over the full UNets, streamed (the frozen weights are equal and stay so); θ0 for task vectors."""
    from rewarded_soups.merging.spec import MergeSpec
    from rewarded_soups.pretrained import REFERENCE_FILE

    if (Path(base_dir) / REFERENCE_FILE).exists():
        from rewarded_soups.tasks.image.pretrained import merge_spec as pipeline_spec

        return pipeline_spec(base_dir, member_dirs, weights, settings["merge"]["lora_mode"])
    return MergeSpec(
        members=list(member_dirs), weights=list(weights), files=[UNET_WEIGHTS], copy=["unet/config.json"], base=base_dir
    )


def load_model(base_dir: Path, model_dir: Path | None, settings: dict[str, Any], *, threads: int):
    """θ0's pipeline, with the UNet of ``model_dir`` (an expert, a soup, a MORL run) when given."""
    torch_threads(threads)
    from rewarded_soups.pretrained import REFERENCE_FILE

    if (Path(base_dir) / REFERENCE_FILE).exists():
        from rewarded_soups.gpus import torch_device
        from rewarded_soups.tasks.image.pretrained import load as load_pipeline

        cfg = settings["evaluate"]
        return load_pipeline(base_dir, model_dir, dtype=cfg["dtype"], device=torch_device(), scheduler=cfg["scheduler"])
    from rewarded_soups.tasks.image.model import load

    return load(Path(base_dir), Path(model_dir) if model_dir is not None else None)


def generate(pipe: Any, split: str, settings: dict[str, Any], *, seed: int):
    """Images for a split's held-out prompts, one fixed noise seed per prompt shared by every model."""
    from rewarded_soups.samples import Samples

    cfg = settings["evaluate"]
    from rewarded_soups.tasks.image.model import Pipeline

    if not isinstance(pipe, Pipeline):  # a pretrained diffusers pipeline, not the small shapes model
        return _pipeline_samples(pipe, settings, cfg, split, seed)
    n = cfg["n_prompts"] if split == "test" else cfg["validation_size"]
    prompts, images = _sample_split(pipe, settings["data"], cfg, split, n, seed)
    return Samples([{"prompt": p} for p in prompts], {"images": images})


def reward_inputs(samples: Any) -> tuple[np.ndarray, list[str]]:
    """(images, prompts)."""
    return samples.arrays["images"], samples.column("prompt")


def samples_table(samples: dict[str, Any], n: int) -> str:
    """Markdown: the first ``n`` held-out prompts and each model's mean colour per image (see the image grid)."""
    lines = ["Mean RGB of each generated image (the images are in figures/qualitative/).", ""]
    for label, produced in samples.items():
        lines += [f"### {label}", "", "| prompt | mean RGB |", "| --- | --- |"]
        for image, prompt in list(zip(produced.arrays["images"], produced.column("prompt")))[:n]:
            rgb = ", ".join(f"{v:.0f}" for v in image.reshape(-1, 3).mean(axis=0))
            lines.append(f"| {prompt} | {rgb} |")
        lines.append("")
    return "\n".join(lines)


def qualitative(samples: dict[str, Any], out_dir: Path, settings: dict[str, Any]) -> None:
    """The paper's Figure 16: rows are held-out prompts, columns θ0 and the models along λ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rewarded_soups.plan import model_label

    rows = settings["plots"]["grid_prompts"]
    columns = {label: (s.arrays["images"], s.column("prompt")) for label, s in samples.items()}
    prompts = next(iter(columns.values()))[1][:rows]
    rows = len(prompts)
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.3 * len(columns) + 2.2, 1.3 * rows + 0.6), squeeze=False)
    for j, (label, (images, _)) in enumerate(columns.items()):
        axes[0, j].set_title(model_label(label), fontsize=7)
        for i in range(rows):
            ax = axes[i, j]
            ax.imshow(images[i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(prompts[i], rotation=0, ha="right", va="center", fontsize=7, wrap=True)
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "grid.png", dpi=150)
    plt.close(fig)
