"""A tiny Stable Diffusion pipeline and tiny image reward models of the real classes, on local disk.

Nothing is downloaded: a ``StableDiffusionPipeline`` of a tiny
``UNet2DConditionModel``, ``AutoencoderKL`` and ``CLIPTextModel`` with a real
``CLIPTokenizer`` (a character-level vocabulary), a ``DDIMScheduler``; a tiny
``ViTForImageClassification`` with two labels; a tiny ``CLIPModel`` with its
processor and a random two-layer aesthetic head in safetensors; and a prompt
file in each format the task reads.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

PROMPT_WORDS = [
    "red",
    "green",
    "blue",
    "circle",
    "square",
    "triangle",
    "small",
    "large",
    "on",
    "a",
    "the",
    "left",
    "right",
]


def _clip_tokenizer(max_length: int = 32):
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    characters = list(string.ascii_lowercase + string.digits + ",.")
    vocab = {s: i for i, s in enumerate(specials + characters)}
    vocab |= {c + "</w>": len(vocab) + i for i, c in enumerate(characters)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _text_config(tokenizer, width: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=width,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def make_stable_diffusion(out: Path, image_size: int = 16, seed: int = 0) -> Path:
    """A StableDiffusionPipeline whose UNet works on (image_size / 2)² latents; saved with save_pretrained."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=image_size // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        latent_channels=4,
        norm_num_groups=16,
        sample_size=image_size,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(_text_config(tokenizer)),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out)
    return Path(out)


def make_image_classifier(out: Path, labels: tuple[str, ...] = ("normal", "nsfw"), seed: int = 1) -> Path:
    """A tiny ViTForImageClassification with named labels and its ViTImageProcessor."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=16,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    ViTForImageClassification(config).save_pretrained(out)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(out)
    return Path(out)


def make_clip(out: Path, seed: int = 2) -> Path:
    """A tiny CLIPModel with a CLIPProcessor (CLIPImageProcessor at 16 px, the CLIPTokenizer above)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPVisionConfig

    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer()
    vision = CLIPVisionConfig(
        image_size=16,
        patch_size=4,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
    )
    config = CLIPConfig(
        text_config=_text_config(tokenizer).to_dict(), vision_config=vision.to_dict(), projection_dim=32
    )
    CLIPModel(config).save_pretrained(out)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return Path(out)


def make_aesthetic_head(path: Path, width: int = 32, seed: int = 3) -> Path:
    """A random MLP head (width -> 16 -> 1) in LAION's naming (``layers.<i>``), in safetensors."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {
        "layers.0.weight": torch.randn(16, width, generator=generator) / width**0.5,
        "layers.0.bias": torch.zeros(16),
        "layers.2.weight": torch.randn(1, 16, generator=generator) / 4,
        "layers.2.bias": torch.zeros(1),
    }
    save_file(tensors, path)
    return Path(path)


def prompts(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(PROMPT_WORDS) for _ in range(4)) for _ in range(n)]


def write_prompt_files(root: Path) -> dict[str, Path]:
    """A text file of prompts, one json file per split (a ``caption`` column of lists), in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    text = root / "prompts.txt"
    text.write_text("\n".join(prompts(120)) + "\n")
    folder = root / "splits"
    folder.mkdir(exist_ok=True)
    for i, split in enumerate(("train", "validation", "test")):
        rows = [{"caption": [p, p + " again"]} for p in prompts(60, seed=10 + i)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"text": text, "splits": folder}


def make_all(root: Path) -> dict[str, Path]:
    """Every tiny model and prompt file under ``root``."""
    root = Path(root)
    paths = {
        "pipeline": make_stable_diffusion(root / "tiny-sd"),
        "classifier": make_image_classifier(root / "tiny-nsfw"),
        "clip": make_clip(root / "tiny-clip"),
        "head": make_aesthetic_head(root / "aesthetic-head.safetensors"),
    }
    return paths | write_prompt_files(root / "prompts")
