"""Visual grounding rewards (paper Section 3.4, Table 5): accuracy (IoU > 0.5) per object size, and mean IoU.

A scorer is called as ``scorer(predictions, targets)``: predicted boxes
(``[x0, y0, x1, y1]`` as fractions of the image side, or None for an output
that is no box) and the ground-truth boxes. The paper's three rewards are the
accuracy on small, medium and large objects, the size class of a target
being set by its box's area (RefCOCO+'s thresholds of 30,000 and 100,000 in a
1000 × 1000 image; here :data:`rewarded_soups.data.grid_scenes.AREA_THRESHOLDS`).

A sample whose target is of another size class scores NaN: it is not part of
that accuracy. Evaluation averages over the others; training turns NaN into
0, so that such a sample reinforces nothing (the paper's indicator
``1{area(ŷ) is small}``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from rewarded_soups.data.grid_scenes import AREA_THRESHOLDS, size_class
from rewarded_soups.registry import reward

# The paper's size classes on real images (Appendix G): box areas of 30,000 and 100,000 in a 1000 × 1000 image.
PAPER_AREA_THRESHOLDS = (0.03, 0.1)

SizeFilter = Literal["small", "medium", "large", "all"]


def box_iou(a: Sequence[float] | None, b: Sequence[float]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1); 0 when ``a`` is None or either is empty."""
    if a is None:
        return 0.0
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class _SizedBoxScore:
    def __init__(self, size: SizeFilter, area_thresholds: Sequence[float]) -> None:
        if len(area_thresholds) != 2 or not 0 < area_thresholds[0] < area_thresholds[1]:
            raise ValueError(
                f"area_thresholds must be two increasing areas (fractions of the image), got {area_thresholds}"
            )
        self.size = size
        self.thresholds = (float(area_thresholds[0]), float(area_thresholds[1]))

    def value(self, prediction: Sequence[float] | None, target: Sequence[float]) -> float:
        raise NotImplementedError

    def __call__(
        self, predictions: Sequence[Sequence[float] | None], targets: Sequence[Sequence[float]]
    ) -> list[float]:
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predicted boxes but {len(targets)} targets")
        out = []
        for prediction, target in zip(predictions, targets):
            if self.size != "all" and size_class(tuple(target), self.thresholds) != self.size:  # type: ignore[arg-type]
                out.append(math.nan)
            else:
                out.append(self.value(prediction, target))
        return out


@reward(
    "box_accuracy",
    modality="box",
    bounds={"iou_threshold": {"exclusiveMinimum": 0, "maximum": 1}, "area_thresholds": {"minItems": 2, "maxItems": 2}},
)
class BoxAccuracy(_SizedBoxScore):
    """1 if the predicted box overlaps the target with IoU above the threshold, else 0;
    NaN for targets of another size class."""

    def __init__(
        self,
        size: SizeFilter = "all",
        iou_threshold: float = 0.5,
        area_thresholds: list[float] = list(AREA_THRESHOLDS),  # noqa: B006 (read only)
    ) -> None:
        super().__init__(size, area_thresholds)
        self.iou_threshold = float(iou_threshold)

    def value(self, prediction: Sequence[float] | None, target: Sequence[float]) -> float:
        return float(box_iou(prediction, target) > self.iou_threshold)


@reward("box_iou", modality="box", metric=True, bounds={"area_thresholds": {"minItems": 2, "maxItems": 2}})
class BoxIoU(_SizedBoxScore):
    """Intersection over union of the predicted and target boxes (0 for no box);
    NaN for targets of another size class."""

    def __init__(
        self,
        size: SizeFilter = "all",
        area_thresholds: list[float] = list(AREA_THRESHOLDS),  # noqa: B006 (read only)
    ) -> None:
        super().__init__(size, area_thresholds)

    def value(self, prediction: Sequence[float] | None, target: Sequence[float]) -> float:
        return box_iou(prediction, target)
