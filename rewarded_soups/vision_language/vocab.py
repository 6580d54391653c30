"""A word-level vocabulary for short lowercase texts (captions, questions, answers, location tokens).

The generated captions, questions and answers are lowercase words without
punctuation, so whitespace splitting is a complete tokeniser; a learned
subword tokeniser would add nothing but ambiguity to the n-gram metrics, which
also split on whitespace. Ids are numpy arrays (no torch here); the model
code converts them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)  # ids 0..3, in this order
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


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
