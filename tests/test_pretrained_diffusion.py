"""The text-to-image task on a pretrained diffusers pipeline and learned image rewards, without Snakemake.

Every model is a tiny one of the real classes saved on local disk
(:mod:`tiny_diffusion`): nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tiny_diffusion as tiny
import torch

from rewarded_soups.rewards.image_models import ClipAesthetic, ClipScore, ImageClassifierReward
from rewarded_soups.tasks.image import pretrained

# make test stays near its time budget: these 14 tests (about 40 s) run in the slow tier (make test-slow, CI).
pytestmark = pytest.mark.slow

FINETUNE = {
    "batch_size": 4,
    "steps": 3,
    "learning_rate": 0.01,
    "lora": {"r": 4, "alpha": 8},
    "activation_checkpointing": False,
    "caption_dropout": 0.0,
    "bf16": False,
    "gradient_accumulation_steps": 1,
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> dict[str, Path]:
    return tiny.make_all(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def base(hub, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("theta0")
    pretrained.reference_theta0(out, {"pretrain": {"checkpoint": str(hub["pipeline"])}, "data": {"image_size": 16}})
    return out


@pytest.fixture(scope="module")
def images(base) -> np.ndarray:
    pipe = pretrained.load(base, None)
    return pretrained.sample(
        pipe, tiny.prompts(4), [0, 1, 2, 3], image_size=16, inference_steps=3, guidance_scale=3.0, batch_size=4
    )


def _expert(base: Path, out: Path, images: np.ndarray, seed: int, lora: dict | None) -> Path:
    pipe = pretrained.load(base, None)
    cfg = FINETUNE | {"lora": lora}
    pretrained.reward_weighted_finetune(pipe, images, tiny.prompts(len(images)), np.ones(len(images)), cfg, seed=seed)
    pretrained.save(pipe.unet, out)
    return out


# θ0 and sampling


def test_theta0_is_referenced_not_copied(base, hub):
    reference = json.loads((base / "base_model.json").read_text())
    assert reference["model"] == str(hub["pipeline"].resolve())
    assert reference["content_sha256"]
    assert not list(base.rglob("*.safetensors"))


def test_each_image_depends_on_its_prompt_and_seed_alone(base, images):
    """One generator per image: the batch it falls in changes nothing (every model sees the same noise)."""
    pipe = pretrained.load(base, None)
    prompts = tiny.prompts(4)
    one_by_one = pretrained.sample(
        pipe, prompts, [0, 1, 2, 3], image_size=16, inference_steps=3, guidance_scale=3.0, batch_size=1
    )
    assert images.dtype == np.uint8 and images.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(one_by_one, images)
    other_seed = pretrained.sample(
        pipe, prompts[:1], [9], image_size=16, inference_steps=3, guidance_scale=3, batch_size=1
    )
    assert not np.array_equal(other_seed[0], images[0])


def test_an_image_size_the_vae_cannot_make_is_refused(hub, tmp_path):
    with pytest.raises(ValueError, match="multiples of 2"):
        pretrained.reference_theta0(
            tmp_path, {"pretrain": {"checkpoint": str(hub["pipeline"])}, "data": {"image_size": 15}}
        )


# Fine-tuning and soups


def test_a_lora_expert_learns_and_is_saved_as_a_peft_adapter(base, images, tmp_path):
    expert = _expert(base, tmp_path / "expert", images, 0, {"r": 4, "alpha": 8})
    assert {p.name for p in expert.iterdir()} == {"adapter_model.safetensors", "adapter_config.json"}
    config = json.loads((expert / "adapter_config.json").read_text())
    assert config["r"] == 4 and sorted(config["target_modules"]) == ["to_k", "to_out.0", "to_q", "to_v"]
    before = pretrained.load(base, None).unet.state_dict()
    after = pretrained.load(base, expert).unet.state_dict()
    assert set(after) == set(before), "the adapter is merged in, not left as extra layers"
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(k.split(".")[-2] in ("to_q", "to_k", "to_v", "0") for k in changed)


def test_a_lora_soup_is_the_weighted_sum_of_the_adapters_updates(base, images, tmp_path):
    """exact mode: the soup's UNet is θ0 + Σ λ_i (α/r) B_i A_i, layer by layer."""
    from safetensors.torch import load_file

    from rewarded_soups.merging.engine import run

    experts = [_expert(base, tmp_path / f"e{i}", images, seed, {"r": 4, "alpha": 8}) for i, seed in enumerate((1, 2))]
    weights = [0.3, 0.7]
    soup = tmp_path / "soup"
    run(pretrained.merge_spec(base, experts, weights, "exact"), soup, {})
    theta0 = pretrained.load(base, None).unet.state_dict()
    merged = pretrained.load(base, soup).unet.state_dict()
    adapters = [load_file(e / "adapter_model.safetensors") for e in experts]
    layers = {k[: -len(".lora_A.weight")] for k in adapters[0] if k.endswith(".lora_A.weight")}
    assert layers
    for layer in layers:
        update = sum(
            w * 2.0 * a[f"{layer}.lora_B.weight"] @ a[f"{layer}.lora_A.weight"] for w, a in zip(weights, adapters)
        )
        torch.testing.assert_close(merged[f"{layer}.weight"], theta0[f"{layer}.weight"] + update, rtol=1e-5, atol=1e-6)


def test_the_papers_subset_trains_a_tenth_and_full_unet_soups_interpolate(base, images, tmp_path):
    from safetensors.torch import load_file

    from rewarded_soups.merging.engine import run

    pipe = pretrained.load(base, None)
    metrics = pretrained.reward_weighted_finetune(
        pipe, images, tiny.prompts(4), np.ones(4), FINETUNE | {"lora": None}, seed=0
    )
    assert 0 < metrics["trainable_parameters"] < 0.5 * metrics["total_parameters"]
    pretrained.save(pipe.unet, tmp_path / "a")
    assert (tmp_path / "a" / pretrained.UNET_WEIGHTS).exists()
    _expert(base, tmp_path / "b", images, 5, None)
    run(pretrained.merge_spec(base, [tmp_path / "a", tmp_path / "b"], [0.5, 0.5], "paper"), tmp_path / "soup", {})
    a, b = (load_file(tmp_path / n / pretrained.UNET_WEIGHTS) for n in ("a", "b"))
    soup = pretrained.load(base, tmp_path / "soup").unet.state_dict()
    for name in a:
        torch.testing.assert_close(soup[name], 0.5 * a[name] + 0.5 * b[name], rtol=1e-6, atol=1e-7)


def test_the_reward_weighted_loss_moves_the_model_toward_the_favoured_images(base, tmp_path):
    """Train on two images, all the weight on one: the expert's denoising loss on it falls below θ0's."""
    pipe = pretrained.load(base, None)
    target = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    target[0, :, :, 0] = 255  # red: favoured
    target[1, :, :, 2] = 255  # blue
    prompts = ["a square", "a square"]
    cfg = FINETUNE | {"steps": 30, "lora": {"r": 8, "alpha": 16}, "learning_rate": 0.01}

    def loss(p) -> float:
        latents = pretrained._latents(p, target[:1], torch.Generator().manual_seed(0), 1).to(p.unet.device)
        generator = torch.Generator().manual_seed(1)
        noise = torch.randn((16, *latents.shape[1:]), generator=generator)
        t = torch.randint(0, 1000, (16,), generator=generator)
        from diffusers import DDPMScheduler

        scheduler = DDPMScheduler.from_config(p.scheduler.config)
        states = p.encode_prompt(prompts[:1] * 16, p.device, 1, False)[0]
        with torch.no_grad():
            x = scheduler.add_noise(latents.expand(16, -1, -1, -1), noise, t)
            prediction = p.unet(x, t, encoder_hidden_states=states).sample
        return float((prediction - pretrained._target(scheduler, latents, noise, t)).pow(2).mean())

    before = loss(pipe)
    pretrained.reward_weighted_finetune(pipe, target, prompts, np.array([2.0, 0.0]), cfg, seed=0)
    assert loss(pipe) < 0.9 * before


# Rewards


def test_image_classifier_gives_a_labels_probability(hub, images):
    nsfw = ImageClassifierReward(str(hub["classifier"]), label="nsfw")(images)
    normal = ImageClassifierReward(str(hub["classifier"]), label="normal")(images)
    np.testing.assert_allclose(np.add(nsfw, normal), 1.0, rtol=1e-5)
    logits = ImageClassifierReward(str(hub["classifier"]), label=1, output="logit", batch_size=3)(images)
    assert len(logits) == 4 and not np.allclose(logits, nsfw)
    with pytest.raises(ValueError, match="no label 'safe'"):
        ImageClassifierReward(str(hub["classifier"]), label="safe")
    with pytest.raises(ValueError, match="uint8 images"):
        ImageClassifierReward(str(hub["classifier"]))(images.astype(np.float32))


def test_clip_aesthetic_is_the_head_on_normalised_clip_embeddings(hub, images):
    from safetensors.torch import load_file
    from transformers import CLIPModel, CLIPProcessor

    scores = ClipAesthetic(str(hub["clip"]), str(hub["head"]), batch_size=3)(images)
    model, processor = CLIPModel.from_pretrained(hub["clip"]), CLIPProcessor.from_pretrained(hub["clip"])
    from PIL import Image

    with torch.no_grad():
        pixels = processor(images=[Image.fromarray(i) for i in images], return_tensors="pt")["pixel_values"]
        features = model.get_image_features(pixel_values=pixels)
        features = features if isinstance(features, torch.Tensor) else features.pooler_output
        x = features / features.norm(dim=-1, keepdim=True)
    head = load_file(hub["head"])
    expected = (x @ head["layers.0.weight"].T + head["layers.0.bias"]) @ head["layers.2.weight"].T + head[
        "layers.2.bias"
    ]
    np.testing.assert_allclose(scores, expected[:, 0].numpy(), rtol=1e-4, atol=1e-6)


def test_clip_aesthetic_refuses_heads_that_do_not_fit(hub, tmp_path):
    from safetensors.torch import save_file

    wrong = tmp_path / "wrong.safetensors"
    save_file({"weight": torch.zeros(1, 7), "bias": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match=r"expected \(out, 32\)"):
        ClipAesthetic(str(hub["clip"]), str(wrong))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ClipAesthetic(str(hub["clip"]), str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match=r"not a \.safetensors"):
        ClipAesthetic.check_options({"model": str(hub["clip"]), "head": "head.pth"})


def test_clip_score_is_bounded_and_needs_the_prompts(hub, images):
    scores = ClipScore(str(hub["clip"]))(images, tiny.prompts(4))
    assert len(scores) == 4 and all(0 <= s <= 100 for s in scores)
    with pytest.raises(ValueError, match="one prompt per image"):
        ClipScore(str(hub["clip"]))(images)


def test_the_rewards_training_ranks_by_are_the_score_jobs(hub, base, tmp_path):
    """The fine-tuning job's values (Scalarised on the offline samples) equal the score job's on the same samples."""
    from rewarded_soups import stages
    from rewarded_soups.rewards import Scalarised
    from rewarded_soups.samples import write
    from rewarded_soups.tasks import image

    rewards = {
        "nsfw": {"kind": "image_classifier", "model": str(hub["classifier"]), "label": "normal"},
        "ava": {"kind": "clip_aesthetic", "model": str(hub["clip"]), "head": str(hub["head"])},
    }
    settings = {
        "data": {
            "image_size": 16,
            "source": "datasets",
            "dataset": str(hub["text"]),
            "column": "prompt",
            "splits": {"finetune": "train", "validation": "train", "test": "train"},
        },
        "finetune": FINETUNE | {"n_images": 5, "inference_steps": 3, "guidance_scale": 3.0, "scheduler": None},
    }
    pipe = pretrained.load(base, None)
    samples = image._pipeline_samples(pipe, settings, settings["finetune"], "finetune", 0)
    with Scalarised(rewards, {"nsfw": 0.5, "ava": 0.5}) as scalarised:
        training = scalarised.values(*image.reward_inputs(samples))
    write(samples, tmp_path / "samples" / "test")
    for name, spec in rewards.items():
        scored = stages.score(image, {"test": tmp_path / "samples" / "test"}, spec, base_dir=base, threads=1)
        np.testing.assert_array_equal(np.asarray(scored["test"]), training[name])


# Prompts


def test_prompts_from_a_text_file_are_split_into_disjoint_roles(hub):
    from rewarded_soups.tasks.image.prompts import load_prompts

    data = {
        "dataset": str(hub["text"]),
        "column": "prompt",
        "splits": dict.fromkeys(("finetune", "validation", "test"), "train"),
    }
    sizes = {"finetune": 50, "validation": 20, "test": 30}
    roles = {role: load_prompts(data, role, sizes, seed=0) for role in sizes}
    assert [len(roles[r]) for r in sizes] == [50, 20, 30]
    from collections import Counter

    lines = Counter(line for line in hub["text"].read_text().split("\n") if line)
    taken = Counter(p for ps in roles.values() for p in ps)
    assert not taken - lines, "each line is read by one role at most (disjoint slices of one shuffled file)"
    assert roles["finetune"] == load_prompts(data, "finetune", sizes, seed=0), "the same seed, the same prompts"
    assert roles["test"] != load_prompts(data, "test", sizes, seed=1)
    with pytest.raises(ValueError, match="has 120 prompts"):
        load_prompts(data, "test", sizes | {"test": 100}, seed=0)


def test_prompts_from_split_files_take_the_first_of_a_list_column(hub):
    from rewarded_soups.tasks.image.prompts import load_prompts

    data = {
        "dataset": str(hub["splits"]),
        "column": "caption",
        "splits": {"finetune": "train", "validation": "validation", "test": "test"},
    }
    test = load_prompts(data, "test", {"finetune": 10, "validation": 10, "test": 60}, seed=0)
    assert len(test) == 60 and not any(p.endswith(" again") for p in test)
    assert set(test) <= set(tiny.prompts(60, seed=12))
    with pytest.raises(ValueError, match="no column 'prompt'"):
        load_prompts(data | {"column": "prompt"}, "test", {"test": 5}, seed=0)
    with pytest.raises(ValueError, match="no file for split 'dev'"):
        load_prompts(data | {"splits": {**data["splits"], "test": "dev"}}, "test", {"test": 5}, seed=0)
