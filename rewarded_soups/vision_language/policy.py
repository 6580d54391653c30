"""The small encoder-decoder with its vocabulary, as the tasks generate with it (the protocol's ``load_model``).

Heavy libraries are imported inside the functions: the task packages import
this module while the workflow checks the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewarded_soups.vision_language.checkpoint import VOCAB_FILE
from rewarded_soups.vision_language.vocab import Vocab


@dataclass
class Policy:
    """A model (an :class:`~.encoder_decoder.Captioner` or :class:`~.encoder_decoder.Ensemble`) and its vocabulary."""

    model: Any
    vocab: Vocab

    def generate(self, images: Any, max_len: int, prompts: list[str] | None = None) -> list[str]:
        """Greedy texts for ``images`` (answering ``prompts``, for a model that reads one), on the job's device."""
        from rewarded_soups.vision_language.encoder_decoder import greedy_captions

        ids = None if prompts is None else self.vocab.encode_batch(prompts, self.model.prompt_len)
        return greedy_captions(self.model, images, self.vocab, max_len, prompts=ids)


def load_model(base_dir: Path, model_dir: Path | None, settings: dict[str, Any], *, threads: int):
    """θ0 (``model_dir`` None) or the expert, soup (full or recipe) or MORL run in ``model_dir``: the small
    encoder-decoder's :class:`Policy`, or a transformers model's (``pretrain.checkpoint``)."""
    from rewarded_soups.gpus import torch_threads

    torch_threads(threads)
    from rewarded_soups.vision_language.pretrained.model import is_pretrained

    base_dir = Path(base_dir)
    if is_pretrained(base_dir):
        from rewarded_soups.vision_language.pretrained.tasks import load_policy

        return load_policy(base_dir, Path(model_dir) if model_dir is not None else None, settings)
    from rewarded_soups.vision_language.encoder_decoder import load

    return Policy(load(Path(model_dir) if model_dir is not None else base_dir), Vocab.load(base_dir / VOCAB_FILE))


def load_ensemble(
    base_dir: Path, member_dirs: list[Path], weights: list[float], settings: dict[str, Any], *, threads: int
) -> Policy:
    """The prediction ensemble of ``member_dirs`` (paper Figure 5c): greedy decoding of Σ w_i p_i."""
    from rewarded_soups.gpus import torch_threads

    torch_threads(threads)
    from rewarded_soups.vision_language.encoder_decoder import Ensemble, load

    members = [load(Path(d)) for d in member_dirs]
    return Policy(Ensemble(members, weights), Vocab.load(Path(base_dir) / VOCAB_FILE))
