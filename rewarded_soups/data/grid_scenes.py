"""Scenes of two to four shapes of three sizes on a 3×3 grid: the ground of visual grounding and VQA.

Each shape sits in its own cell of a 3×3 grid, jittered inside the cell, so
that shapes never overlap and "on the left" or "at the top" has one meaning
(the grid column or row). Sizes are three classes whose bounding-box areas
never overlap (:data:`AREA_THRESHOLDS` separates them, as the paper's
RefCOCO+ thresholds separate small, medium and large objects by area), and a
shape's box is known exactly (:func:`rewarded_soups.data.shapes.shape_box`).
Colours repeat within a scene, so that a colour alone does not always single
out a shape. Everything is a pure function of a ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rewarded_soups.data.shapes import BACKGROUNDS, COLOURS, SHAPES, shape_box, shape_mask

SIZE_CLASSES = ("small", "medium", "large")
RADII = {"small": 0.07, "medium": 0.11, "large": 0.16}  # as fractions of the image side
# Box area (fraction of the image) below the first value: small; below the second: medium; else large.
# Between the classes' extreme areas (small ≤ 0.0196, medium 0.035–0.0484, large ≥ 0.074).
AREA_THRESHOLDS = (0.027, 0.06)
CELL = 1.0 / 3.0
COLUMN_WORDS = ("left", "middle", "right")
ROW_WORDS = ("top", "middle", "bottom")
# A scene draws its colours from this many of COLOURS, so that colours repeat.
SCENE_COLOURS = 3

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class PlacedShape:
    shape: str
    colour: str
    size: str
    row: int
    col: int
    cx: float  # centre, as fractions of the image side
    cy: float

    @property
    def radius(self) -> float:
        return RADII[self.size]

    @property
    def box(self) -> Box:
        return shape_box(self.shape, self.cx, self.cy, self.radius)


@dataclass(frozen=True)
class GridScene:
    objects: tuple[PlacedShape, ...]
    background: str


def size_class(box: Box, thresholds: tuple[float, float] = AREA_THRESHOLDS) -> str:
    """``small``, ``medium`` or ``large`` by the box's area (a fraction of the image), like the paper's."""
    area = max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
    if area < thresholds[0]:
        return "small"
    return "medium" if area < thresholds[1] else "large"


def sample_grid_scene(
    rng: np.random.Generator, min_objects: int = 2, max_objects: int = 4, target_size: str | None = None
) -> GridScene:
    """A scene; with ``target_size``, at least one of its shapes has that size class."""
    n = int(rng.integers(min_objects, max_objects + 1))
    cells = rng.choice(9, size=n, replace=False)
    palette = [str(c) for c in rng.choice(list(COLOURS), size=SCENE_COLOURS, replace=False)]
    sizes = [str(rng.choice(SIZE_CLASSES)) for _ in range(n)]
    if target_size is not None:
        sizes[0] = target_size
    objects = []
    for cell, size in zip(cells, sizes):
        row, col = divmod(int(cell), 3)
        slack = CELL / 2 - RADII[size] - 0.005  # keeps the shape inside its cell
        cx = (col + 0.5) * CELL + float(rng.uniform(-slack, slack))
        cy = (row + 0.5) * CELL + float(rng.uniform(-slack, slack))
        objects.append(PlacedShape(str(rng.choice(SHAPES)), str(rng.choice(palette)), size, row, col, cx, cy))
    return GridScene(tuple(objects), str(rng.choice(list(BACKGROUNDS))))


def render_grid(scene: GridScene, size: int = 32) -> np.ndarray:
    """The scene as a ``size × size × 3`` uint8 array."""
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUNDS[scene.background]
    for obj in scene.objects:
        image[shape_mask(obj.shape, obj.cx, obj.cy, obj.radius, size)] = COLOURS[obj.colour]
    return image


def cell_name(obj: PlacedShape) -> str:
    """Where a shape is, in words: ``top left``, ``top``, ``centre``, ``bottom right``..."""
    row, col = ROW_WORDS[obj.row], COLUMN_WORDS[obj.col]
    if row == col == "middle":
        return "centre"
    if row == "middle":
        return col
    if col == "middle":
        return row
    return f"{row} {col}"
