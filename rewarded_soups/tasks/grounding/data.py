"""Visual grounding data: grid scenes, referring expressions that single out one shape, and location tokens.

A scene (:mod:`rewarded_soups.data.grid_scenes`) holds two to four shapes;
one of them, the target, is described by an expression built from its
attributes (colour, shape, size, grid column or row, or a superlative such as
"the biggest shape") that matches no other shape of the scene, in varied
phrasings, as RefCOCO+'s annotators describe one object among several. The
target's size class is drawn uniformly, so that small, medium and large
targets are equally frequent.

The box is predicted as four location tokens ``<loc_i>`` (x0, y0, x1, y1),
each coordinate quantised into ``bins`` bins of the image side, as in OFA and
UnIVAL. This module holds no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewarded_soups.data.grid_scenes import (
    SIZE_CLASSES,
    Box,
    GridScene,
    PlacedShape,
    render_grid,
    sample_grid_scene,
    size_class,
)
from rewarded_soups.data.splits import LazySplits
from rewarded_soups.vision_language.vocab import SPECIALS, Vocab

_LOC = re.compile(r"^<loc_(\d+)>$")

_SHAPE_WORDS = {"circle": ("circle", "disc"), "square": ("square", "box"), "triangle": ("triangle", "wedge")}
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "medium": ("medium", "medium sized"), "large": ("large", "big")}
_POSITION_WORDS = {
    "left": ("on the left", "at the left", "in the left column"),
    "right": ("on the right", "at the right", "in the right column"),
    "top": ("at the top", "in the top row", "near the top"),
    "bottom": ("at the bottom", "in the bottom row", "near the bottom"),
    "centre": ("in the centre", "in the middle"),
}
_NOUNS = ("shape", "object", "one")
_LEADS = ("the", "the", "find the", "the")
# Attribute sets an expression may use (a position is a column, a row or the centre cell).
_ATTRIBUTE_SETS = (
    ("shape",),
    ("colour",),
    ("size",),
    ("colour", "shape"),
    ("size", "shape"),
    ("size", "colour"),
    ("size", "colour", "shape"),
    ("position",),
    ("shape", "position"),
    ("colour", "position"),
    ("colour", "shape", "position"),
    ("size", "shape", "position"),
)


@dataclass(frozen=True)
class Referral:
    expression: str
    target: PlacedShape


@dataclass(frozen=True)
class GroundingSet:
    images: np.ndarray  # n × size × size × 3, uint8
    expressions: list[str]
    boxes: np.ndarray  # n × 4 (x0, y0, x1, y1) as fractions of the image side, float64
    sizes: list[str]  # the target's size class

    def __len__(self) -> int:
        return len(self.expressions)


def _positions(obj: PlacedShape) -> list[str]:
    words = []
    if obj.col != 1:
        words.append("left" if obj.col == 0 else "right")
    if obj.row != 1:
        words.append("top" if obj.row == 0 else "bottom")
    if obj.row == obj.col == 1:
        words.append("centre")
    return words


def _matches(obj: PlacedShape, attributes: dict[str, str]) -> bool:
    for name, value in attributes.items():
        if name == "position":
            if value not in _positions(obj):
                return False
        elif getattr(obj, name) != value:
            return False
    return True


def _phrase(attributes: dict[str, str], rng: np.random.Generator) -> str:
    def pick(options: tuple[str, ...]) -> str:
        return str(rng.choice(options))

    words = [pick(_LEADS)]
    if "size" in attributes:
        words.append(pick(_SIZE_WORDS[attributes["size"]]))
    if "colour" in attributes:
        words.append(attributes["colour"])
    words.append(pick(_SHAPE_WORDS[attributes["shape"]]) if "shape" in attributes else pick(_NOUNS))
    if "position" in attributes:
        words.append(pick(_POSITION_WORDS[attributes["position"]]))
    return " ".join(words)


def unique_descriptions(scene: GridScene, target: int) -> list[dict[str, str]]:
    """Every attribute set (with values) that the target matches and no other shape of the scene does."""
    obj = scene.objects[target]
    found = []
    for names in _ATTRIBUTE_SETS:
        options = [[w] for w in _positions(obj)] if "position" in names else [[None]]
        for (position,) in options:
            attributes = {n: (position if n == "position" else getattr(obj, n)) for n in names}
            if sum(_matches(o, attributes) for o in scene.objects) == 1:
                found.append(attributes)
    return found


def _superlatives(scene: GridScene, target: int) -> list[str]:
    """ "the biggest shape" / "the smallest circle": when the target's size is strictly extreme among its kind."""
    obj = scene.objects[target]
    out = []
    for noun_filter in (None, obj.shape):
        others = [o for i, o in enumerate(scene.objects) if i != target and noun_filter in (None, o.shape)]
        if not others:
            continue
        noun = noun_filter or "shape"
        rank = SIZE_CLASSES.index(obj.size)
        if all(SIZE_CLASSES.index(o.size) < rank for o in others):
            out += [f"the biggest {noun}", f"the largest {noun}"]
        if all(SIZE_CLASSES.index(o.size) > rank for o in others):
            out += [f"the smallest {noun}", f"the tiniest {noun}"]
    return out


def refer(scene: GridScene, target: int, rng: np.random.Generator) -> str | None:
    """An expression that picks ``scene.objects[target]`` alone, drawn among all that do; None if none does."""
    candidates: list[str | dict[str, str]] = [*unique_descriptions(scene, target), *_superlatives(scene, target)]
    if not candidates:
        return None
    choice = candidates[int(rng.integers(len(candidates)))]
    return choice if isinstance(choice, str) else _phrase(choice, rng)


def sample_referral(rng: np.random.Generator, min_objects: int = 2, max_objects: int = 4) -> tuple[GridScene, Referral]:
    """A scene and an expression for one of its shapes, whose size class is drawn uniformly."""
    size = str(rng.choice(SIZE_CLASSES))
    for _ in range(1000):
        scene = sample_grid_scene(rng, min_objects, max_objects, target_size=size)
        expression = refer(scene, 0, rng)
        if expression is not None:
            return scene, Referral(expression, scene.objects[0])
    raise RuntimeError("no scene with a describable target in 1000 draws")  # never seen: most scenes have one


def make_set(n: int, seed: int, image_size: int = 32) -> GroundingSet:
    """``n`` images with an expression and the target's box each; same seed, same set."""
    rng = np.random.default_rng(seed)
    drawn = [sample_referral(rng) for _ in range(n)]
    images = (
        np.stack([render_grid(scene, image_size) for scene, _ in drawn])
        if drawn
        else np.zeros((0, image_size, image_size, 3), np.uint8)
    )
    boxes = np.array([r.target.box for _, r in drawn], dtype=np.float64).reshape(n, 4)
    return GroundingSet(images, [r.expression for _, r in drawn], boxes, [r.target.size for _, r in drawn])


def make_splits(n_train: int, n_valid: int, n_test: int, seed: int, image_size: int = 32) -> LazySplits[GroundingSet]:
    """Train/validation/test sets from three independent seeds derived from ``seed``, each made on first use."""
    return LazySplits(lambda n, s: make_set(n, s, image_size), (n_train, n_valid, n_test), seed)


def location_tokens(bins: int) -> list[str]:
    return [f"<loc_{i}>" for i in range(bins)]


def build_vocab(expressions: list[str], bins: int) -> Vocab:
    """Special tokens, the expressions' words (alphabetically), then the ``bins`` location tokens."""
    words = sorted({w for e in expressions for w in e.lower().split()} - set(SPECIALS))
    return Vocab((*SPECIALS, *words, *location_tokens(bins)))


def box_to_tokens(box: Box | np.ndarray, bins: int) -> str:
    """``<loc_x0> <loc_y0> <loc_x1> <loc_y1>``: each coordinate's bin, clipped to the image."""
    return " ".join(f"<loc_{min(max(int(float(v) * bins), 0), bins - 1)}>" for v in box)


def tokens_to_box(text: str, bins: int) -> Box | None:
    """The box of the first four words if they are location tokens (each at its bin's centre); else None.

    A prediction that is not four location tokens, or whose corners are
    inverted, is no box: it counts as a miss (IoU 0).
    """
    words = text.split()[:4]
    if len(words) < 4:
        return None
    bins_found = []
    for word in words:
        m = _LOC.match(word)
        if m is None or int(m.group(1)) >= bins:
            return None
        bins_found.append(int(m.group(1)))
    x0, y0, x1, y1 = ((b + 0.5) / bins for b in bins_found)
    if x1 < x0 or y1 < y0:
        return None
    return (x0, y0, x1, y1)


def real_splits(data: dict[str, Any], seed: int):
    """RefCOCO+-style referring expressions with their boxes through ``datasets`` (``data.source: datasets``).

    Boxes become ``[x0, y0, x1, y1]`` fractions of the image (``data.box_format``,
    ``data.box_units``); size classes use the paper's areas (Appendix G: 30,000
    and 100,000 of a 1000 × 1000 image).
    """
    from rewarded_soups.rewards.boxes import PAPER_AREA_THRESHOLDS
    from rewarded_soups.vision_language.records import Images, Splits, column

    def fraction_box(value: Any, image: Any) -> list[float]:
        x0, y0, a, b = (float(v) for v in value)
        x1, y1 = (x0 + a, y0 + b) if data["box_format"] == "xywh" else (a, b)
        width, height = image.size if data["box_units"] == "pixels" else (1.0, 1.0)
        return [x0 / width, y0 / height, x1 / width, y1 / height]

    def make(dataset: Any, image_column: str) -> GroundingSet:
        images = Images(dataset, image_column)
        expressions = [e[0] if isinstance(e, list | tuple) else e for e in column(dataset, data, "expression")]
        expressions = [str(e["raw"] if isinstance(e, dict) else e) for e in expressions]
        raw = column(dataset, data, "box")
        # Pixel boxes need each image's size: decoded once here.
        boxes = np.array(
            [fraction_box(b, images[i] if data["box_units"] == "pixels" else None) for i, b in enumerate(raw)]
        )
        sizes = [size_class(tuple(b), PAPER_AREA_THRESHOLDS) for b in boxes]
        return GroundingSet(images, expressions, boxes, sizes)  # type: ignore[arg-type]

    return Splits(data, seed, make)
