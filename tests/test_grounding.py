"""Visual grounding: the scenes, the referring expressions, location tokens, the box rewards and the task."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rewarded_soups import stages
from rewarded_soups.data import grid_scenes
from rewarded_soups.registry import build_reward, reward_spec
from rewarded_soups.rewards.boxes import box_iou
from rewarded_soups.samples import read as read_samples
from rewarded_soups.tasks.grounding import data

# Words of the expressions back to attributes: an independent reading of what an expression says.
SHAPE_WORDS = {"circle": "circle", "disc": "circle", "square": "square", "box": "square", "triangle": "triangle"}
SHAPE_WORDS["wedge"] = "triangle"
SIZE_WORDS = {
    "small": "small",
    "little": "small",
    "tiny": "small",
    "medium": "medium",
    "large": "large",
    "big": "large",
}


def matching(scene: grid_scenes.GridScene, expression: str) -> list[int]:
    """Indices of the scene's shapes that the expression describes."""
    words = expression.split()
    shape = next((SHAPE_WORDS[w] for w in words if w in SHAPE_WORDS), None)
    if any(w in ("biggest", "largest", "smallest", "tiniest") for w in words):
        pool = [i for i, o in enumerate(scene.objects) if shape in (None, o.shape)]
        rank = [grid_scenes.SIZE_CLASSES.index(scene.objects[i].size) for i in pool]
        best = max(rank) if any(w in ("biggest", "largest") for w in words) else min(rank)
        return [i for i, r in zip(pool, rank) if r == best]
    size = next((SIZE_WORDS[w] for w in words if w in SIZE_WORDS), None)
    colour = next((w for w in words if w in grid_scenes.COLOURS), None)
    found = []
    for i, o in enumerate(scene.objects):
        if shape not in (None, o.shape) or size not in (None, o.size) or colour not in (None, o.colour):
            continue
        if ("left" in words and o.col != 0) or ("right" in words and o.col != 2):
            continue
        if ("top" in words and o.row != 0) or ("bottom" in words and o.row != 2):
            continue
        if ("centre" in words or "middle" in words) and (o.row, o.col) != (1, 1):
            continue
        found.append(i)
    return found


def test_every_expression_picks_exactly_its_target():
    rng = np.random.default_rng(0)
    styles = set()
    for _ in range(500):
        scene, referral = data.sample_referral(rng)
        assert matching(scene, referral.expression) == [scene.objects.index(referral.target)], referral
        assert referral.expression == referral.expression.lower()
        styles.add(referral.expression.split()[1] in ("biggest", "largest", "smallest", "tiniest"))
    assert styles == {True, False}  # superlatives and attribute descriptions both occur


def test_boxes_lie_inside_the_image_and_sizes_are_in_their_area_classes():
    rng = np.random.default_rng(1)
    for _ in range(300):
        scene = grid_scenes.sample_grid_scene(rng)
        cells = {(o.row, o.col) for o in scene.objects}
        assert len(cells) == len(scene.objects) and 2 <= len(scene.objects) <= 4
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
            # Inside its own grid cell: shapes never overlap.
            assert obj.col / 3 <= x0 and x1 <= (obj.col + 1) / 3 and obj.row / 3 <= y0 and y1 <= (obj.row + 1) / 3
            assert grid_scenes.size_class(obj.box) == obj.size


def test_the_box_is_where_the_shape_is_drawn():
    scene = grid_scenes.GridScene((grid_scenes.PlacedShape("square", "red", "large", 1, 0, 1 / 6, 0.5),), "black")
    image = grid_scenes.render_grid(scene, size=64)
    ys, xs = np.nonzero((image == grid_scenes.COLOURS["red"]).all(axis=2))
    x0, y0, x1, y1 = (v * 64 for v in scene.objects[0].box)
    assert xs.min() >= math.floor(x0) and xs.max() <= math.ceil(x1) and ys.min() >= math.floor(y0)
    assert ys.max() <= math.ceil(y1) and xs.max() - xs.min() >= (x1 - x0) - 2


def test_target_sizes_are_balanced_and_splits_are_deterministic():
    split = data.make_set(300, seed=3)
    counts = {size: split.sizes.count(size) for size in grid_scenes.SIZE_CLASSES}
    assert all(70 <= c <= 130 for c in counts.values()), counts
    again = data.make_set(300, seed=3)
    np.testing.assert_array_equal(split.images, again.images)
    assert split.expressions == again.expressions and np.array_equal(split.boxes, again.boxes)
    assert [grid_scenes.size_class(tuple(b)) for b in split.boxes] == split.sizes
    splits = data.make_splits(20, 20, 20, seed=0)
    assert splits.train.expressions != splits.test.expressions


def test_location_tokens_round_trip_within_half_a_bin():
    rng = np.random.default_rng(2)
    for bins in (16, 32, 1000):
        for _ in range(100):
            box = np.sort(rng.uniform(0, 1, 4).reshape(2, 2), axis=0).T.reshape(-1)  # x0 ≤ x1, y0 ≤ y1
            box = (box[0], box[2], box[1], box[3])
            back = data.tokens_to_box(data.box_to_tokens(box, bins), bins)
            assert back is not None and max(abs(a - b) for a, b in zip(back, box)) <= 0.5 / bins + 1e-12
    assert data.box_to_tokens((0.0, 0.5, 1.0, 1.0), 4) == "<loc_0> <loc_2> <loc_3> <loc_3>"
    assert data.tokens_to_box("<loc_0> <loc_2> <loc_3> <loc_3>", 4) == (0.125, 0.625, 0.875, 0.875)
    # Not four location tokens, a bin out of range, inverted corners: no box.
    for text in ("<loc_1> <loc_2> <loc_3>", "<loc_1> red <loc_2> <loc_3>", "<loc_1> <loc_1> <loc_9> <loc_2>", ""):
        assert data.tokens_to_box(text, 4) is None
    assert data.tokens_to_box("<loc_3> <loc_0> <loc_1> <loc_2>", 4) is None
    vocab = data.build_vocab(["the red box"], bins=4)
    assert vocab.itos[-4:] == ("<loc_0>", "<loc_1>", "<loc_2>", "<loc_3>") and "red" in vocab.itos


def test_iou_and_accuracy_by_size_on_hand_checked_boxes():
    assert box_iou((0, 0, 0.5, 0.5), (0.25, 0.25, 0.75, 0.75)) == pytest.approx(0.0625 / 0.4375)
    assert box_iou((0, 0, 0.2, 0.2), (0, 0, 0.2, 0.2)) == pytest.approx(1.0)
    assert box_iou((0, 0, 0.1, 0.1), (0.5, 0.5, 0.6, 0.6)) == 0.0 and box_iou(None, (0, 0, 1, 1)) == 0.0
    small_target = (0.1, 0.1, 0.2, 0.2)  # area 0.01: small
    large_target = (0.1, 0.1, 0.5, 0.5)  # area 0.16: large
    predictions = [(0.1, 0.1, 0.2, 0.19), (0.3, 0.3, 0.4, 0.4), (0.1, 0.1, 0.45, 0.5), None]
    targets = [small_target, small_target, large_target, large_target]
    assert build_reward({"kind": "box_accuracy"})(predictions, targets) == [1.0, 0.0, 1.0, 0.0]
    small = build_reward({"kind": "box_accuracy", "size": "small"})(predictions, targets)
    assert small[:2] == [1.0, 0.0] and all(math.isnan(v) for v in small[2:])
    strict = build_reward({"kind": "box_accuracy", "iou_threshold": 0.95})(predictions, targets)
    assert strict == [0.0, 0.0, 0.0, 0.0]
    iou = build_reward({"kind": "box_iou", "size": "large"})(predictions, targets)
    assert math.isnan(iou[0]) and iou[2] == pytest.approx(0.875) and iou[3] == 0.0
    assert reward_spec("box_iou").metric and not reward_spec("box_accuracy").metric
    with pytest.raises(ValueError, match="area_thresholds"):
        build_reward({"kind": "box_accuracy", "area_thresholds": [0.1, 0.05]})


TINY = {
    "data": {"image_size": 16, "bins": 16, "train_images": 96, "valid_images": 12, "test_images": 12},
    "pretrain": {
        "model": {"channels": 8, "d_model": 32, "layers": 1, "heads": 2, "prompt_len": 10, "dropout": 0.0},
        "steps": 120,
        "batch_size": 16,
        "learning_rate": 0.003,
    },
    "finetune": {
        "steps": 4,
        "batch_size": 8,
        "learning_rate": 0.0003,
        "xent_weight": 1.0,
        "reinforce_weight": 5.0,
        "baseline": "none",
    },
    "evaluate": {"n_images": 12, "validation_size": 6},
    "plots": {"samples_in_figure": 3},
}


def test_the_task_trains_merges_generates_and_scores(tmp_path: Path):
    from rewarded_soups.tasks import grounding
    from rewarded_soups.vision_language.encoder_decoder import load

    metrics = grounding.pretrain(tmp_path / "theta0", TINY, seed=0, threads=1)
    assert set(metrics["valid_accuracy"]) <= set(grid_scenes.SIZE_CLASSES) and metrics["seconds"] > 0
    rewards = {"small": {"kind": "box_accuracy", "size": "small"}, "large": {"kind": "box_accuracy", "size": "large"}}
    for name in rewards:
        fine = stages.finetune(
            grounding, tmp_path / "theta0", tmp_path / name, {name: rewards[name]}, {name: 1.0}, TINY, seed=0, threads=1
        )
        assert len(fine["loss"]) == 4 and all(np.isfinite(fine["loss"]))
    stages.merge(
        grounding, tmp_path / "theta0", [tmp_path / "small", tmp_path / "large"], [0.5, 0.5], tmp_path / "soup", {}
    )
    soup, small, large = (load(tmp_path / d).state_dict() for d in ("soup", "small", "large"))
    for key in soup:
        assert torch_close(soup[key], 0.5 * small[key] + 0.5 * large[key]), key
    out = {"test": tmp_path / "samples" / "test", "validation": tmp_path / "samples" / "validation"}
    stages.generate(grounding, tmp_path / "theta0", tmp_path / "soup", out, TINY, seed=0, threads=1)
    records = read_samples(out["test"]).records
    assert len(records) == 12 and len(read_samples(out["validation"]).records) == 6
    assert {r["size"] for r in records} <= set(grid_scenes.SIZE_CLASSES)
    values = stages.score(grounding, out, rewards["small"], base_dir=tmp_path / "theta0", threads=1)
    small_targets = [r["size"] == "small" for r in records]
    assert [not math.isnan(v) for v in values["test"]] == small_targets
    table = stages.samples_table(grounding, {"init": out["test"], "soup-small@0.5+large@0.5": out["test"]}, 2)
    assert "| soup-small@0.5+large@0.5 |" in table and records[0]["expression"] in table
    stages.qualitative(
        grounding, {"init": out["test"]}, tmp_path / "figures", {**TINY, "plots": {"samples_in_figure": 3}}
    )
    assert (tmp_path / "figures" / "boxes.png").read_bytes()[:4] == b"\x89PNG"


def torch_close(a, b) -> bool:
    import torch

    return bool(torch.allclose(a, b, atol=1e-6))


def test_pretraining_learns_to_ground():
    """Cross-entropy on location tokens: the loss falls well below its start and boxes overlap their targets."""
    import torch

    from rewarded_soups.vision_language import encoder_decoder as seq2seq
    from rewarded_soups.vision_language.encoder_decoder import greedy_captions
    from rewarded_soups.vision_language.training import train_xent

    bins = 16
    train = data.make_set(256, seed=0, image_size=16)
    vocab = data.build_vocab(train.expressions, bins)
    config = seq2seq.make_config(
        len(vocab), image_size=16, max_len=5, channels=8, d_model=32, layers=1, heads=2, prompt_len=10
    )
    model = seq2seq.build(config, seed=0)
    prompts = vocab.encode_batch(train.expressions, 10)
    targets = [[data.box_to_tokens(b, bins)] for b in train.boxes]
    torch.manual_seed(0)
    metrics = train_xent(
        model, train.images, targets, vocab, steps=300, batch_size=32, lr=0.003, seed=0, prompts=prompts
    )
    assert metrics["loss"][-1] < 0.6 * metrics["loss"][0], metrics["loss"]
    predicted = greedy_captions(model, train.images[:64], vocab, 5, prompts=prompts[:64])
    ious = [box_iou(data.tokens_to_box(p, bins), b) for p, b in zip(predicted, train.boxes[:64])]
    assert np.mean(ious) > 0.15, np.mean(ious)
