"""Learned rewards on generated images, as the paper's text-to-image experiment used (Section 3.3, Appendix F).

* ``image_classifier``: any ``AutoModelForImageClassification`` (an aesthetic
  classifier such as the paper's cafe model, an nsfw detector), the
  probability or logit of one of its labels;
* ``clip_aesthetic``: a linear or MLP head on normalised CLIP image embeddings,
  the way the LAION aesthetic predictor is built (the paper's ava reward);
* ``clip_score``: CLIPScore (Hessel et al. 2021), a metric of prompt–image agreement.

Models are named by a hub id or a local directory (``revision`` pins a hub
commit) and run batched on the job's device. Each is called as
``reward(images, prompts)`` on uint8 arrays ``(n, height, width, 3)``, the same
call in the fine-tuning job (where the experts' offline images are ranked) and
in the score jobs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rewarded_soups.registry import reward

_MODEL_BOUNDS = {"dtype": {"enum": ["float32", "bfloat16", "float16"]}, "batch_size": {"minimum": 1}}


def _check_model(options: dict[str, Any]) -> None:
    from rewarded_soups.paths import model_directory_problem

    problem = model_directory_problem(options["model"])
    if problem:
        raise ValueError(f"model: {problem}")


def _kwargs(revision: str | None, trust_remote_code: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    return kwargs


def _pil(images: np.ndarray) -> list[Any]:
    """uint8 arrays as PIL images, the input every transformers image processor takes."""
    from PIL import Image

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (n, height, width, 3), got {images.dtype} {images.shape}")
    return [Image.fromarray(image) for image in images]


class _BatchedModel:
    """A model in eval mode on the job's device, run in batches under ``inference_mode``."""

    model: Any
    batch_size: int

    def _place(self, dtype: str) -> None:
        import torch

        from rewarded_soups.gpus import torch_device

        self.model = self.model.to(device=torch_device(), dtype=getattr(torch, dtype)).eval()

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> Any:
        return next(self.model.parameters()).dtype

    def _batches(self, n: int) -> range:
        return range(0, n, self.batch_size)


@reward(
    "image_classifier",
    modality="image",
    uses_device=True,
    bounds={**_MODEL_BOUNDS, "output": {"enum": ["probability", "logit"]}},
)
class ImageClassifierReward(_BatchedModel):
    """An image classifier's probability (or logit) of one label: an aesthetic classifier, an nsfw detector.

    ``model`` is any ``AutoModelForImageClassification`` with its image
    processor (a hub id or local directory); ``label`` is an index or a name
    of its ``id2label``. ``output: probability`` is the softmax over the
    model's labels (for a multi-label model set ``output: logit``).
    """

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        _check_model(options)

    def __init__(
        self,
        model: str,
        label: int | str = 0,
        output: str = "probability",
        revision: str | None = None,
        dtype: str = "float32",
        batch_size: int = 32,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        from rewarded_soups.paths import loading

        kwargs = _kwargs(revision, trust_remote_code)
        with loading(model):
            self.processor = AutoImageProcessor.from_pretrained(model, **kwargs)
            self.model = AutoModelForImageClassification.from_pretrained(model, **kwargs)
        self._place(dtype)
        self.label = _label_index(model, self.model.config, label)
        self.output, self.batch_size = output, batch_size

    def __call__(self, images: np.ndarray, prompts: Sequence[str] | None = None) -> list[float]:
        import torch

        pictures, scores = _pil(images), []
        with torch.inference_mode():
            for start in self._batches(len(pictures)):
                batch = self.processor(images=pictures[start : start + self.batch_size], return_tensors="pt")
                logits = self.model(pixel_values=batch["pixel_values"].to(self.device, self.dtype)).logits.float()
                values = logits.softmax(-1) if self.output == "probability" else logits
                scores += values[:, self.label].tolist()
        return scores


def _label_index(model: str, config: Any, label: int | str) -> int:
    if isinstance(label, str):
        names = {v: int(k) for k, v in config.id2label.items()}
        if label not in names:
            raise ValueError(f"image classifier {model} has no label {label!r}; labels: {sorted(names)}")
        return names[label]
    if not 0 <= label < config.num_labels:
        raise ValueError(f"label index {label} out of range for image classifier {model} ({config.num_labels} labels)")
    return label


class _Clip(_BatchedModel):
    """A ``CLIPModel`` and its processor; image and text embeddings, L2-normalised."""

    def _load_clip(self, model: str, revision: str | None, trust_remote_code: bool, dtype: str) -> None:
        from transformers import AutoProcessor, CLIPModel

        from rewarded_soups.paths import loading

        kwargs = _kwargs(revision, trust_remote_code)
        with loading(model):
            self.processor = AutoProcessor.from_pretrained(model, **kwargs)
            self.model = CLIPModel.from_pretrained(model, **kwargs)
        self._place(dtype)

    def image_embeddings(self, images: np.ndarray, *, normalize: bool = True) -> Any:
        import torch

        pictures, out = _pil(images), []
        with torch.inference_mode():
            for start in self._batches(len(pictures)):
                batch = self.processor(images=pictures[start : start + self.batch_size], return_tensors="pt")
                features = _tensor(
                    self.model.get_image_features(pixel_values=batch["pixel_values"].to(self.device, self.dtype))
                )
                out.append((_unit(features) if normalize else features).float())
        return torch.cat(out)

    def text_embeddings(self, texts: Sequence[str]) -> Any:
        import torch

        out = []
        with torch.inference_mode():
            for start in self._batches(len(texts)):
                batch = self.processor(
                    text=list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    return_tensors="pt",
                ).to(self.device)
                out.append(_unit(_tensor(self.model.get_text_features(**batch))).float())
        return torch.cat(out)


def _tensor(features: Any) -> Any:
    # transformers 5 may return a model output holding the pooled projection rather than the tensor itself.
    return features if hasattr(features, "norm") else features.pooler_output


def _unit(x: Any) -> Any:
    return x / x.norm(dim=-1, keepdim=True)


@reward(
    "clip_aesthetic",
    modality="image",
    uses_device=True,
    bounds={**_MODEL_BOUNDS, "activation": {"enum": ["none", "relu", "gelu"]}},
)
class ClipAesthetic(_Clip):
    """An aesthetic score: a linear or MLP head on normalised CLIP image embeddings (LAION's aesthetic predictor).

    ``model`` is the ``CLIPModel`` whose image embeddings the head was
    trained on (ViT-L/14 for LAION's); ``head`` is a safetensors file of the
    head's linear layers, ``<name>.<i>.weight`` and ``.bias`` applied in the
    order of ``i`` (a single ``weight``/``bias`` pair is a linear head), with
    ``activation`` between them (LAION's MLP has none: only dropout, which
    does nothing at inference) and one output. A head saved as a PyTorch
    pickle is converted once by its user:
    ``safetensors.torch.save_file(torch.load(path, weights_only=True), "head.safetensors")``.
    """

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        _check_model(options)
        # The file itself is checked when the reward is built: a config may name it before it is converted.
        if Path(str(options["head"])).suffix != ".safetensors":
            raise ValueError(
                f"head: {options['head']} is not a .safetensors file; convert it (see the reward's description)"
            )

    def __init__(
        self,
        model: str,
        head: str,
        activation: str = "none",
        normalize: bool = True,
        revision: str | None = None,
        dtype: str = "float32",
        batch_size: int = 32,
        trust_remote_code: bool = False,
    ) -> None:
        if not Path(head).expanduser().is_file():
            raise FileNotFoundError(
                f"clip_aesthetic head {head} does not exist: give a safetensors file of the head's linear layers "
                "(convert a pickled one: safetensors.torch.save_file(torch.load(path, weights_only=True), ...))"
            )
        self.batch_size, self.normalize, self.activation = batch_size, normalize, activation
        self._load_clip(model, revision, trust_remote_code, dtype)
        self.layers = _head_layers(Path(head).expanduser(), self.model.config.projection_dim)

    def __call__(self, images: np.ndarray, prompts: Sequence[str] | None = None) -> list[float]:
        import torch

        x = self.image_embeddings(images, normalize=self.normalize)
        with torch.inference_mode():
            for i, (weight, bias) in enumerate(self.layers):
                x = x @ weight.to(x.device).T + (0 if bias is None else bias.to(x.device))
                if i < len(self.layers) - 1 and self.activation != "none":
                    x = getattr(torch.nn.functional, self.activation)(x)
        return x[:, 0].tolist()


def _head_layers(path: Path, width: int) -> list[tuple[Any, Any]]:
    """(weight, bias) of each linear layer of a head file, in the order of their indices; checked for shape."""
    from safetensors.torch import load_file

    tensors = {k: v.float() for k, v in load_file(path).items()}
    weights = sorted((k for k in tensors if k.endswith("weight")), key=_layer_order)
    if not weights:
        raise ValueError(f"clip_aesthetic head {path}: no '<layer>.weight' tensor in {sorted(tensors)}")
    layers, inputs = [], width
    for key in weights:
        weight = tensors[key]
        if weight.ndim != 2 or weight.shape[1] != inputs:
            raise ValueError(
                f"clip_aesthetic head {path}: {key} has shape {tuple(weight.shape)}, expected (out, {inputs}) "
                f"(the CLIP model's projection_dim is {width})"
            )
        bias = tensors.get(key[: -len("weight")] + "bias")
        layers.append((weight, bias))
        inputs = weight.shape[0]
    if inputs != 1:
        raise ValueError(f"clip_aesthetic head {path}: its last layer has {inputs} outputs; a score needs 1")
    return layers


def _layer_order(key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", key))


@reward("clip_score", modality="image", metric=True, uses_device=True, bounds=_MODEL_BOUNDS)
class ClipScore(_Clip):
    """CLIPScore (Hessel et al. 2021): 100 · max(cos(image, prompt), 0) with a CLIP model; prompt–image agreement."""

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        _check_model(options)

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        dtype: str = "float32",
        batch_size: int = 32,
        trust_remote_code: bool = False,
    ) -> None:
        self.batch_size = batch_size
        self._load_clip(model, revision, trust_remote_code, dtype)

    def __call__(self, images: np.ndarray, prompts: Sequence[str] | None = None) -> list[float]:
        if prompts is None or len(prompts) != len(images):
            raise ValueError("clip_score needs one prompt per image")
        similarity = (self.image_embeddings(images) * self.text_embeddings(prompts)).sum(-1)
        return (100 * similarity.clamp(min=0)).tolist()
