"""Rewards on generated images: image statistics standing in for the paper's reward models.

The paper (Section 3.3, Appendix F) aligns a diffusion model with two learned
aesthetic scorers (ava, cafe) and shows in Figure 15 that a third one, the
nsfw detector, is inversely correlated with image quality. Here the images are
small renders of coloured shapes, and the rewards are classic image
statistics with the same structure: two "aesthetic" ones that partly agree
(both like vivid, well-separated shapes) but pull apart on what they like
(chroma against luminance), and a third that prefers the flat, washed-out
images both of them punish.

Each is a callable ``reward(images, prompts) -> list[float]`` over uint8
arrays of shape ``(n, height, width, 3)``; values lie in roughly [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rewarded_soups.registry import reward

# ITU-R BT.601 luma weights.
_LUMA = np.array([0.299, 0.587, 0.114])


def _as_float(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images of shape (n, height, width, 3), got {images.shape}")
    return images.astype(np.float64) / 255.0


@reward("colourfulness", modality="image")
class Colourfulness:
    """Hasler & Süsstrunk's (2003) colourfulness: σ_rgyb + 0.3·μ_rgyb of the opponent channels (chroma)."""

    def __init__(self) -> None:
        pass

    def __call__(self, images: np.ndarray, prompts: Sequence[str] | None = None) -> list[float]:
        x = _as_float(images)
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        rg, yb = r - g, 0.5 * (r + g) - b
        std = np.sqrt(rg.std(axis=(1, 2)) ** 2 + yb.std(axis=(1, 2)) ** 2)
        mean = np.sqrt(rg.mean(axis=(1, 2)) ** 2 + yb.mean(axis=(1, 2)) ** 2)
        return (std + 0.3 * mean).tolist()


@reward("contrast", modality="image")
class Contrast:
    """RMS contrast: the standard deviation of luminance (Peli 1990); ignores hue, likes light on dark."""

    def __init__(self) -> None:
        pass

    def __call__(self, images: np.ndarray, prompts: Sequence[str] | None = None) -> list[float]:
        luma = _as_float(images) @ _LUMA
        return luma.std(axis=(1, 2)).tolist()


@reward("smoothness", modality="image", bounds={"scale": {"exclusiveMinimum": 0}})
class Smoothness:
    """1 − scale·(mean absolute luminance difference between neighbouring pixels): flat images score 1.

    Total variation is what the aesthetic rewards need (edges, contrast);
    this reward punishes it, as the paper's nsfw score punished image quality.
    ``scale`` maps the typical range onto [0, 1] (clipped at 0).
    """

    def __init__(self, scale: float = 4.0) -> None:
        if scale <= 0:
            raise ValueError(f"smoothness scale must be > 0, got {scale}")
        self.scale = float(scale)

    def __call__(self, images: np.ndarray, prompts: Sequence[str] | None = None) -> list[float]:
        luma = _as_float(images) @ _LUMA
        dx = np.abs(np.diff(luma, axis=2)).mean(axis=(1, 2))
        dy = np.abs(np.diff(luma, axis=1)).mean(axis=(1, 2))
        return np.clip(1.0 - self.scale * 0.5 * (dx + dy), 0.0, None).tolist()
