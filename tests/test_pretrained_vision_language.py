"""Transformers vision-language models and real data formats, without Snakemake (tiny local models only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tiny_vision_language as tiny
import torch
from PIL import Image

from rewarded_soups.config import ConfigError, validate_config
from rewarded_soups.pretrained import reference, write_reference
from rewarded_soups.vision_language.pretrained.boxes import box_to_text, text_to_box
from rewarded_soups.vision_language.pretrained.model import load, load_base, merge_spec
from rewarded_soups.vision_language.records import load_split

PROMPTS = {
    "vit-gpt2": None,
    "blip": ["a picture of", "question what colour is the square answer", "a", "question how many shapes answer"],
    "paligemma": ["detect the red square", "caption en", "answer en what colour is it", "detect the tiniest shape"],
}
MAKERS = {
    "vit-gpt2": tiny.make_vision_encoder_decoder,
    "blip": tiny.make_blip,
    "paligemma": tiny.make_paligemma,
}


def theta0(model_dir: Path, base_dir: Path) -> Path:
    write_reference(base_dir, reference({"checkpoint": str(model_dir)}, key="checkpoint"))
    return base_dir


def scene_images(n: int, seed: int = 0) -> list[Image.Image]:
    from rewarded_soups.data.shapes import make_set

    return [Image.fromarray(i) for i in make_set(n, seed, 32, 5)[0]]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {name: theta0(make(root / name), root / f"theta0-{name}") for name, make in MAKERS.items()}


@pytest.mark.parametrize("name", list(MAKERS))
def test_teacher_forcing_gives_the_greedy_tokens_the_highest_probability(models, name):
    """Token log-probabilities (what REINFORCE follows) are aligned with what generate() wrote: at every position
    of a greedy completion, the teacher-forced argmax is the token generated there."""
    family = load_base(models[name])
    images, prompts = scene_images(4), PROMPTS[name]
    completions = family.generate(images, prompts, 6, sample=False)
    with torch.no_grad():
        for i, completion in enumerate(completions):
            inputs = family.inputs([images[i]], None if prompts is None else [prompts[i]])
            logits = family.completion_logits(inputs, completion.unsqueeze(0))
            assert logits.argmax(-1)[0].tolist() == completion.tolist()
    logprobs, lengths = family.completion_logprobs(images, prompts, completions)
    assert logprobs.requires_grad and torch.all(logprobs <= 0) and torch.all(lengths >= 1)


def test_sampling_is_seeded(models):
    family = load_base(models["blip"])
    images = scene_images(3)
    draws = []
    for _ in range(2):
        torch.manual_seed(5)
        draws.append([c.tolist() for c in family.generate(images, None, 6, sample=True)])
    assert draws[0] == draws[1]


def test_location_tokens_round_trip_in_paligemmas_order():
    box = [0.1, 0.25, 0.5, 0.75]
    text = box_to_text(box)
    assert text == "<loc0256><loc0102><loc0768><loc0512>"  # y_min, x_min, y_max, x_max out of 1024 bins
    assert text_to_box(text + " the red square") == pytest.approx([0.099609375, 0.25, 0.5, 0.75])
    assert text_to_box("<loc0001><loc0002> a square") is None


def test_the_three_real_formats_are_read(tmp_path):
    karpathy = tiny.write_karpathy(tmp_path / "coco")
    data = validate_task_data(
        "captioning", {"format": "karpathy", "dataset": str(karpathy), "splits": {"validation": "val"}}
    )
    train, image_column = load_split(data, "train", seed=0)
    assert len(train) == tiny.SPLIT_SIZES["train"] and len(train[0]["captions"]) == 5
    assert train[0][image_column].size == (32, 32)

    vqa = tiny.write_vqa(tmp_path / "vqa")
    from rewarded_soups.tasks.vqa.data import real_splits as vqa_splits

    data = validate_task_data("vqa", {"dataset": str(vqa), "columns": {"kind": "question_type"}})
    test = vqa_splits(data, seed=0).test
    assert len(test.answers[0]) == 10 and all(isinstance(a, str) for a in test.answers[0])
    assert test.kinds[0] in ("colour", "shape", "size", "position", "count", "yes/no", "exists")

    refcoco = tiny.write_refcoco(tmp_path / "refcoco")
    from rewarded_soups.tasks.grounding.data import real_splits as grounding_splits

    data = validate_task_data("grounding", {"dataset": str(refcoco), "columns": {"expression": "answer"}})
    train = grounding_splits(data, seed=0).train
    rows = [json.loads(line) for line in (refcoco / "train.jsonl").read_text().splitlines()]
    counts = {}
    for row in rows:
        counts[row["answer"][0]] = counts.get(row["answer"][0], 0) + 1
    expected = {  # xywh pixels -> xyxy fractions of the 32-pixel image
        row["answer"][0]: [row["bbox"][0] / 32, row["bbox"][1] / 32, (row["bbox"][0] + row["bbox"][2]) / 32,
                           (row["bbox"][1] + row["bbox"][3]) / 32]
        for row in rows
        if counts[row["answer"][0]] == 1
    }  # fmt: skip
    compared = [(box, expected[e]) for e, box in zip(train.expressions, train.boxes) if e in expected]
    assert len(compared) > len(rows) // 2
    for box, want in compared:
        np.testing.assert_allclose(box, want, atol=1e-9)


def validate_task_data(kind: str, data: dict) -> dict:
    """A task's data section with the schema's defaults, as the jobs receive it."""
    task = {"kind": kind, "rewards": {}, "data": {"source": "datasets", **data}, "pretrain": {"checkpoint": "x/y"}}
    task["rewards"] = {
        "captioning": {"a": {"kind": "bleu", "n": 1}, "b": {"kind": "rouge"}},
        "vqa": {"a": {"kind": "bleu", "n": 1}, "b": {"kind": "rouge"}},
        "grounding": {"a": {"kind": "box_accuracy", "size": "small"}, "b": {"kind": "box_accuracy"}},
    }[kind]
    return validate_config({"seed": 0, "tasks": {kind: task}})["tasks"][kind]["data"]


def test_a_missing_column_is_named(tmp_path):
    vqa = tiny.write_vqa(tmp_path / "vqa")
    from rewarded_soups.tasks.vqa.data import real_splits

    data = validate_task_data("vqa", {"dataset": str(vqa), "columns": {"answers": "annotations"}})
    with pytest.raises(ValueError, match=r"data\.columns\.answers: no column 'annotations'"):
        real_splits(data, seed=0).train  # noqa: B018


def test_reinforce_learns_a_reward(tmp_path):
    """A few REINFORCE steps on a reward for short captions make the greedy captions shorter."""
    from rewarded_soups.vision_language.pretrained.training import reinforce

    images = scene_images(16, seed=1)
    from rewarded_soups.data.shapes import make_set

    captions = [c[0] for c in make_set(16, 1, 32, 5)[1]]
    model = tiny.teach(tiny.make_vision_encoder_decoder(tmp_path / "ved"), images, None, captions, steps=60)
    base = theta0(model, tmp_path / "theta0")

    def words(texts: list[str], indices: list[int]) -> list[float]:
        return [-float(len(t.split())) for t in texts]

    def greedy_length(model_dir: Path | None) -> float:
        family = load(base, model_dir)
        return float(np.mean([len(t.split()) for t in family.decode(family.generate(images, None, 12, sample=False))]))

    cfg = {
        "steps": 25, "batch_size": 8, "learning_rate": 0.003, "max_len": 12, "gradient_accumulation_steps": 1,
        "bf16": False, "activation_checkpointing": False, "lora": None,
    }  # fmt: skip
    metrics = reinforce(base, tmp_path / "expert", images, None, words, cfg, seed=0)
    before, after = greedy_length(None), greedy_length(tmp_path / "expert")
    assert after < before - 1, (before, after, metrics["reward"][-5:])


def test_a_recipe_soup_generates_what_the_stored_soup_does(models, tmp_path):
    """Soups of full experts: stored whole or as a recipe (built in memory at load time), same model."""
    from rewarded_soups.merging.engine import run

    base = models["vit-gpt2"]
    family = load_base(base)
    experts = []
    for k in range(2):
        torch.manual_seed(k)
        for p in family.model.parameters():
            p.data += 0.05 * torch.randn_like(p)
        family.model.save_pretrained(tmp_path / f"expert{k}")
        experts.append(tmp_path / f"expert{k}")
    spec = merge_spec(base, experts, [0.3, 0.7], "paper")
    run(spec, tmp_path / "full", {"method": "linear", "store": "full"})
    run(spec, tmp_path / "recipe", {"method": "linear", "store": "recipe"})
    full, recipe = load(base, tmp_path / "full"), load(base, tmp_path / "recipe")
    for (name, a), (_, b) in zip(full.model.state_dict().items(), recipe.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    images = scene_images(3)
    assert full.decode(full.generate(images, None, 6, sample=False)) == recipe.decode(
        recipe.generate(images, None, 6, sample=False)
    )


def test_what_a_pretrained_theta0_rules_out_is_refused(default_config):
    config = default_config
    task = config["tasks"]["captioning"]
    task["pretrain"] = {"checkpoint": "Salesforce/blip-image-captioning-base"}
    with pytest.raises(ConfigError, match=r"theta0 and pretrain\.checkpoint"):
        validate_config(json.loads(json.dumps(config)))
    task["theta0"] = None
    with pytest.raises(ConfigError, match=r"baselines\.ensemble: not available with pretrain\.checkpoint"):
        validate_config(json.loads(json.dumps(config)))
    config["tasks"]["captioning"] = {**task, "pretrain": {}, "theta0": None, "data": {"source": "datasets"}}
    with pytest.raises(ConfigError, match=r"needs a pretrained model: set pretrain\.checkpoint"):
        validate_config(json.loads(json.dumps(config)))
