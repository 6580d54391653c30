"""Boxes as location tokens, the PaliGemma / big_vision convention: ``<locYMIN><locXMIN><locYMAX><locXMAX>``.

Each coordinate is a fraction of the image side quantised into 1024 bins
(``<loc0000>`` … ``<loc1023>``), y before x; a label may follow. Boxes here are
``[x0, y0, x1, y1]`` fractions, as :mod:`rewarded_soups.rewards.boxes` scores them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

BINS = 1024
_LOC = re.compile(r"<loc(\d{4})>")


def box_to_text(box: Sequence[float]) -> str:
    """The four location tokens of a ``[x0, y0, x1, y1]`` box."""
    x0, y0, x1, y1 = (min(BINS - 1, max(0, int(float(v) * BINS))) for v in box)  # the inverse of v / BINS
    return "".join(f"<loc{v:04d}>" for v in (y0, x0, y1, x1))


def text_to_box(text: str) -> list[float] | None:
    """The first box written in ``text`` as ``[x0, y0, x1, y1]`` fractions; None when it holds no four tokens."""
    values = [int(v) for v in _LOC.findall(text)[:4]]
    if len(values) < 4:
        return None
    y0, x0, y1, x1 = (v / BINS for v in values)
    return [x0, y0, x1, y1]
