"""θ0 of the text-to-image task: a small text-conditional diffusion model from diffusers parts.

* a word-level tokenizer (``tokenizers`` WordLevel in a transformers
  ``PreTrainedTokenizerFast``): the captions have a closed vocabulary;
* a small CLIP text encoder (transformers ``CLIPTextModel``) trained from scratch;
* a diffusers ``UNet2DConditionModel`` cross-attending to the text states;
* a ``DDPMScheduler`` for training; sampling uses ``DDIMScheduler`` built
  from the same config (deterministic with η = 0) and classifier-free guidance.

Every part is saved with its library's ``save_pretrained`` (safetensors and
JSON) in its own subdirectory; fine-tuned models and soups store only
``unet/`` and read the rest from θ0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rewarded_soups.gpus import torch_device

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"


def build_tokenizer(captions: Sequence[str], max_length: int) -> Any:
    """A word-level tokenizer over the caption vocabulary, adding <bos> … <eos>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        [c.lower() for c in captions], trainers.WordLevelTrainer(special_tokens=[PAD, BOS, EOS, UNK])
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, tok.token_to_id(BOS)), (EOS, tok.token_to_id(EOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=max_length,
    )


def build_text_encoder(vocab_size: int, settings: dict[str, Any], max_length: int, eos_id: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=settings["text_dim"],
        intermediate_size=4 * settings["text_dim"],
        num_hidden_layers=settings["text_layers"],
        num_attention_heads=settings["text_heads"],
        max_position_embeddings=max_length,
        pad_token_id=0,
        eos_token_id=eos_id,
        bos_token_id=1,
    )
    return CLIPTextModel(config)


def build_unet(image_size: int, settings: dict[str, Any]) -> Any:
    """First level plain convolutions, deeper levels with self- and cross-attention (like Stable Diffusion's)."""
    from diffusers import UNet2DConditionModel

    channels = tuple(settings["channels"])
    levels = len(channels)
    return UNet2DConditionModel(
        sample_size=image_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=channels,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        layers_per_block=settings["layers_per_block"],
        cross_attention_dim=settings["text_dim"],
        attention_head_dim=settings["attention_head_dim"],
        norm_num_groups=settings["norm_groups"],
    )


@dataclass
class Pipeline:
    """The parts θ0 is made of; ``unet`` is what fine-tuning and merging change."""

    tokenizer: Any
    text_encoder: Any
    unet: Any
    scheduler: Any  # DDPMScheduler (training noise schedule)

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def to(self, device: torch.device | str) -> Pipeline:
        self.unet.to(device)
        self.text_encoder.to(device)
        return self

    def save(self, out_dir: Path, *, unet_only: bool = False) -> None:
        out_dir = Path(out_dir)
        self.unet.save_pretrained(out_dir / "unet")
        if not unet_only:
            self.tokenizer.save_pretrained(out_dir / "tokenizer")
            self.text_encoder.save_pretrained(out_dir / "text_encoder")
            self.scheduler.save_pretrained(out_dir / "scheduler")

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Text states and attention mask for a batch of prompts ("" is the unconditional prompt)."""
        batch = self.tokenizer([p.lower() for p in prompts], padding="max_length", truncation=True, return_tensors="pt")
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        return self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask


def load(base_dir: Path, unet_dir: Path | None = None) -> Pipeline:
    """θ0 from ``base_dir``, with the UNet of ``unet_dir`` (an expert, MORL or soup) when given, on the best device."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, PreTrainedTokenizerFast

    from rewarded_soups.merging.engine import materialize

    base_dir = Path(base_dir)
    # A soup stored as a recipe is merged in memory here, on the device.
    soup = materialize(Path(unet_dir or base_dir), torch_device())
    unet = UNet2DConditionModel.from_pretrained(soup.template / "unet")
    if soup.tensors:
        unet.load_state_dict(soup.tensors["unet/diffusion_pytorch_model.safetensors"])
    return Pipeline(
        tokenizer=PreTrainedTokenizerFast.from_pretrained(base_dir / "tokenizer"),
        text_encoder=CLIPTextModel.from_pretrained(base_dir / "text_encoder").eval(),
        unet=unet.eval(),
        scheduler=DDPMScheduler.from_pretrained(base_dir / "scheduler"),
    ).to(torch_device())


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, h, w, 3) -> float (n, 3, h, w) in [-1, 1], the diffusion model's space."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    # Contiguous: safetensors writes the raw buffer, and a permuted view would be saved scrambled.
    return np.ascontiguousarray(
        ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    )


def initial_noise(seeds: Sequence[int], image_size: int) -> torch.Tensor:
    """One noise image per seed, independent of batching (every model starts from the same noise)."""
    return torch.stack(
        [torch.randn((3, image_size, image_size), generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    )


@torch.no_grad()
def sample(
    pipe: Pipeline,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    inference_steps: int,
    guidance_scale: float,
    batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """Images for ``prompts`` (uint8, n × h × w × 3): DDIM (η = 0) with classifier-free guidance.

    ``guidance_scale`` 1 is plain conditional sampling: ε = ε_cond, one UNet
    pass per step on the prompts alone (the unconditional branch would cancel).
    Any other scale runs the unconditional and conditional halves as one
    doubled batch and mixes them, ε_uncond + scale · (ε_cond − ε_uncond).
    """
    from diffusers import DDIMScheduler
    from tqdm.auto import tqdm

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(inference_steps)
    size = pipe.unet.config.sample_size
    guided = guidance_scale != 1
    out = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="sampling", unit="batch", disable=not progress):
        chunk = list(prompts[start : start + batch_size])
        # Noise is drawn on the CPU: the same images start from the same noise on any device.
        x = initial_noise(seeds[start : start + batch_size], size).to(pipe.device) * scheduler.init_noise_sigma
        states, mask = pipe.encode(chunk)
        if guided:
            uncond, uncond_mask = pipe.encode([""] * len(chunk))
            states, mask = torch.cat([uncond, states]), torch.cat([uncond_mask, mask])
        for t in scheduler.timesteps:
            unet_input = torch.cat([x, x]) if guided else x
            eps = pipe.unet(unet_input, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
            if guided:
                eps_uncond, eps_cond = eps.chunk(2)
                eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        out.append(to_uint8(x))
    return np.concatenate(out)


def denoising_losses(pipe: Pipeline, images: torch.Tensor, prompts: Sequence[str], generator: torch.Generator):
    """Per-image denoising MSE at a random timestep (the diffusion model's negative log-likelihood bound).

    The target follows the scheduler's ``prediction_type`` (ε, v or x0).
    """
    n = images.shape[0]
    images = images.to(pipe.device)
    noise = torch.randn(images.shape, generator=generator).to(pipe.device)
    t = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (n,), generator=generator).to(pipe.device)
    noisy = pipe.scheduler.add_noise(images, noise, t)
    kind = pipe.scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = pipe.scheduler.get_velocity(images, noise, t)
    elif kind == "sample":
        target = images
    else:
        raise ValueError(f"unsupported prediction_type {kind!r}")
    states, mask = pipe.encode(prompts)
    prediction = pipe.unet(noisy, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
    return (prediction - target).pow(2).mean(dim=(1, 2, 3))
