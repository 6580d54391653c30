"""Captioned scenes of coloured shapes, generated on the fly (no download).

Shared ground for the image tasks (text-to-image, captioning): a scene is one
or two shapes, each with a colour, a size and a position on a plain
background; :func:`render` draws it as an RGB array and :func:`captions`
describes it in several phrasings, like COCO's five reference captions, so
that n-gram metrics (BLEU, ROUGE, CIDEr...) disagree on what a good caption is.
Everything is a pure function of a ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (150, 60, 190),
    "white": (245, 245, 245),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"black": (15, 15, 15), "grey": (120, 120, 120)}
SIZES = {"small": 0.14, "large": 0.24}  # radius as a fraction of the image side
POSITIONS = {  # centre (x, y) as fractions of the image side
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "centre": (0.5, 0.5),
}
SQUARE_HALF_SIDE = 0.85  # a square's half side, as a fraction of its radius
TRIANGLE_BASE = 0.6  # a triangle's base lies this fraction of its radius below the centre
# A second object goes opposite the first; with these sizes, two large shapes never touch.
OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}


@dataclass(frozen=True)
class Shape:
    shape: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    objects: tuple[Shape, ...]
    background: str


def sample_scene(rng: np.random.Generator, max_objects: int = 2) -> Scene:
    n = int(rng.integers(1, max_objects + 1))
    first_position = str(rng.choice(list(POSITIONS) if n == 1 else list(OPPOSITE)))
    positions = [first_position, OPPOSITE.get(first_position, first_position)][:n]
    colours = rng.choice(list(COLOURS), size=n, replace=False)
    objects = tuple(
        Shape(str(rng.choice(SHAPES)), str(c), str(rng.choice(list(SIZES))), p) for c, p in zip(colours, positions)
    )
    return Scene(objects, str(rng.choice(list(BACKGROUNDS))))


def render(scene: Scene, size: int = 32) -> np.ndarray:
    """The scene as a ``size × size × 3`` uint8 array."""
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUNDS[scene.background]
    for obj in scene.objects:
        cx, cy = POSITIONS[obj.position]
        image[shape_mask(obj.shape, cx, cy, SIZES[obj.size], size)] = COLOURS[obj.colour]
    return image


def shape_mask(shape: str, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    """The ``size × size`` pixels of a shape centred at (cx, cy) with ``radius``, all as fractions of the side."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    cx, cy, r = cx * size, cy * size, radius * size
    if shape == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r**2
    if shape == "square":
        return (np.abs(xs - cx) <= r * SQUARE_HALF_SIDE) & (np.abs(ys - cy) <= r * SQUARE_HALF_SIDE)
    if shape == "triangle":  # an upward triangle inside the circle of radius r
        top, bottom = cy - r, cy + r * TRIANGLE_BASE
        half_width = (ys - top) / (bottom - top) * r
        return (ys >= top) & (ys <= bottom) & (np.abs(xs - cx) <= half_width)
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def shape_box(shape: str, cx: float, cy: float, radius: float) -> tuple[float, float, float, float]:
    """The exact bounding box (x0, y0, x1, y1) of the shape that :func:`shape_mask` draws, as fractions."""
    if shape == "circle":
        return (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "square":
        half = radius * SQUARE_HALF_SIDE
        return (cx - half, cy - half, cx + half, cy + half)
    if shape == "triangle":
        return (cx - radius, cy - radius, cx + radius, cy + radius * TRIANGLE_BASE)
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


_SYNONYMS = {
    "circle": ("circle", "disc", "round shape"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "triangular shape", "wedge"),
    "small": ("small", "little", "tiny"),
    "large": ("large", "big", "huge"),
    "left": ("on the left", "at the left", "on the left side"),
    "right": ("on the right", "at the right", "on the right side"),
    "top": ("at the top", "near the top", "in the upper part"),
    "bottom": ("at the bottom", "near the bottom", "in the lower part"),
    "centre": ("in the centre", "in the middle", "at the centre"),
}


def _phrase(obj: Shape, rng: np.random.Generator, style: int) -> str:
    def pick(key: str) -> str:
        return str(rng.choice(_SYNONYMS[key]))

    if style == 0:
        return f"a {pick(obj.size)} {obj.colour} {pick(obj.shape)} {pick(obj.position)}"
    if style == 1:
        return f"a {obj.colour} {pick(obj.shape)} {pick(obj.position)}"
    if style == 2:
        return f"{pick(obj.position)} there is a {pick(obj.size)} {obj.colour} {pick(obj.shape)}"
    if style == 3:
        return f"a {pick(obj.shape)} that is {obj.colour} and {pick(obj.size)}"
    return f"one {obj.colour} {pick(obj.shape)}"


def captions(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` reference captions in different styles (detailed, terse, reordered...)."""
    out = []
    for i in range(n):
        style = i % 5
        parts = [_phrase(obj, rng, style) for obj in scene.objects]
        text = " and ".join(parts)
        if style in (0, 2):
            text += f" on a {scene.background} background"
        out.append(text)
    return out


def make_set(n: int, seed: int, size: int = 32, n_captions: int = 5) -> tuple[np.ndarray, list[list[str]]]:
    """``n`` images (n × size × size × 3 uint8) and their reference captions; same seed, same set."""
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng) for _ in range(n)]
    images = np.stack([render(s, size) for s in scenes]) if scenes else np.zeros((0, size, size, 3), np.uint8)
    return images, [captions(s, rng, n_captions) for s in scenes]
