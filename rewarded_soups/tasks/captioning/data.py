"""Captioning data: generated scenes of coloured shapes and a word-level vocabulary.

The images and their five reference captions come from
:func:`rewarded_soups.data.shapes.make_set`, so nothing is downloaded. The
captions are short lowercase phrases without punctuation, so whitespace
splitting is a complete tokeniser; a learned subword tokeniser would add
nothing but ambiguity to the n-gram metrics, which also split on whitespace.

This module holds no torch: ids are numpy arrays, converted by the model code.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rewarded_soups.data.shapes import make_set

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)  # ids 0..3, in this order
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


@dataclass(frozen=True)
class CaptionSet:
    images: np.ndarray  # n × size × size × 3, uint8
    captions: list[list[str]]  # n lists of reference captions

    def __len__(self) -> int:
        return len(self.captions)


@dataclass(frozen=True)
class Splits:
    train: CaptionSet
    valid: CaptionSet
    test: CaptionSet


def split_seeds(seed: int) -> tuple[int, int, int]:
    """Three independent generator seeds (train, valid, test) derived from one.

    ``seed``, ``seed + 1``, ... would also differ, but then run seeds 0 and 1
    would share splits shifted by one; SeedSequence spawning avoids that.
    """
    children = np.random.SeedSequence(seed).spawn(3)
    return tuple(int(c.generate_state(1, dtype=np.uint32)[0]) for c in children)  # type: ignore[return-value]


def make_splits(
    n_train: int, n_valid: int, n_test: int, seed: int, image_size: int = 32, n_captions: int = 5
) -> Splits:
    """Train/validation/test sets, each a pure function of ``seed``.

    Splits are drawn independently, so a scene (and thus an identical image)
    can occur in more than one split: the scene space is finite (a few
    thousand scenes), as in any small synthetic benchmark.
    """
    sets = [make_set(n, s, image_size, n_captions) for n, s in zip((n_train, n_valid, n_test), split_seeds(seed))]
    return Splits(*(CaptionSet(images, caps) for images, caps in sets))


def normalise(caption: str) -> str:
    """Lowercase, single spaces: the form that the vocabulary and the metrics see."""
    return " ".join(caption.lower().split())


def words(caption: str) -> list[str]:
    return caption.lower().split()


@dataclass(frozen=True)
class Vocab:
    itos: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}, got {self.itos[: len(SPECIALS)]}")
        if len(set(self.itos)) != len(self.itos):
            raise ValueError("the vocabulary has duplicate words")
        object.__setattr__(self, "stoi", {w: i for i, w in enumerate(self.itos)})

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, caption: str) -> list[int]:
        """Word ids followed by <eos>; unknown words map to <unk>."""
        stoi: dict[str, int] = self.stoi  # type: ignore[attr-defined]
        return [stoi.get(w, UNK_ID) for w in words(caption)] + [EOS_ID]

    def encode_batch(self, captions: Sequence[str], max_len: int) -> np.ndarray:
        """``len(captions) × max_len`` int64 ids (words, <eos>, then <pad>).

        A caption longer than ``max_len - 1`` words is cut and loses its
        <eos>, exactly what a decoder capped at ``max_len`` tokens can emit.
        """
        out = np.full((len(captions), max_len), PAD_ID, dtype=np.int64)
        for i, caption in enumerate(captions):
            ids = self.encode(caption)[:max_len]
            out[i, : len(ids)] = ids
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first <eos>; <pad> and <bos> are dropped, <unk> kept."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID):
                continue
            out.append(self.itos[i])
        return " ".join(out)

    def decode_batch(self, ids: Iterable[Iterable[int]]) -> list[str]:
        return [self.decode(row) for row in ids]

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"itos": list(self.itos)}, indent=1))

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls(tuple(json.loads(Path(path).read_text())["itos"]))


def build_vocab(captions: Iterable[str], min_count: int = 1) -> Vocab:
    """Special tokens, then every word seen ``min_count`` times, alphabetically (stable across runs)."""
    counts = Counter(w for caption in captions for w in words(caption))
    kept = sorted(w for w, c in counts.items() if c >= min_count and w not in SPECIALS)
    return Vocab((*SPECIALS, *kept))


def flat_captions(captions: Sequence[Sequence[str]]) -> list[str]:
    return [c for refs in captions for c in refs]


def max_caption_words(captions: Sequence[Sequence[str]]) -> int:
    return max((len(words(c)) for refs in captions for c in refs), default=0)
