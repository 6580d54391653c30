"""Per-caption captioning metrics from pycocoevalcap (the COCO caption evaluation code).

Each metric scores every candidate against its own references and returns
one value per candidate, so that it can serve as an RL reward as well as an
evaluation. The scoring is pycocoevalcap's; this module only feeds it.

Tokenisation: the shapes captions are lowercase words without punctuation,
so candidates and references are only lowercased and whitespace-normalised.
pycocoevalcap's PTBTokenizer would give the same tokens but starts a Java
process on every call, which an RL loop cannot afford.

CIDEr (pycocoevalcap's ``Cider`` is CIDEr-D: clipped counts and a Gaussian
length penalty) weights n-grams by an IDF computed from the references of
the images being scored, with ``log(number of images)`` as the maximum. On a
training batch of 16 images that IDF is noise, so :class:`CiderD` can take a
fixed corpus of reference sets (the training references) for its document
frequencies, as self-critical training does (Rennie et al. 2017, "CIDEr-D
with df from the training set"). Without one it is exactly pycocoevalcap's
``Cider().compute_score``.

METEOR runs pycocoevalcap's Meteor 1.5 jar through one Java subprocess,
whose first answer takes seconds (JVM start, paraphrase table). :class:`Meteor`
owns one for its lifetime (use it as a context manager); :class:`SharedMeteor`,
what :func:`scorer` and the METEOR reward use, sends its requests to the one
process that :mod:`rewarded_soups.services.meteor` keeps for every job of
the user on the machine, so that 29 scoring jobs pay for one Java start.

Reference modes: a metric scores a candidate against all its references at
once ("multi", the COCO way: BLEU clips counts by the maximum over references,
ROUGE-L keeps the best, METEOR the best alignment). VQA has ten annotators'
answers per question and the paper's VQA rewards average the metric over
them instead (Appendix H: "the final reward is the average score over all
those answers"); :func:`mean_over_references` ("mean") does that for any
scorer.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu as CocoBleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.cider.cider_scorer import CiderScorer
from pycocoevalcap.rouge.rouge import Rouge as CocoRouge

from rewarded_soups.services import meteor
from rewarded_soups.services.meteor import JavaMeteor, java_or_raise

METRICS = ("bleu1", "bleu4", "rouge", "meteor", "cider")

Scorer = Callable[[Sequence[str], Sequence[Sequence[str]]], list[float]]
ReferenceMode = Literal["multi", "mean"]
REFERENCE_MODES: tuple[ReferenceMode, ...] = ("multi", "mean")


def normalise(text: str) -> str:
    """Lowercase, single spaces, no newlines or METEOR field separators."""
    return " ".join(text.replace("|||", " ").lower().split())


def _check_inputs(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    """One non-empty list of reference strings per candidate (a bare string would be read as its characters)."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference sets")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"reference set {i} must be a non-empty list of strings, got {refs!r}")


def _inputs(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[dict, dict]:
    """pycocoevalcap's ``gts`` and ``res`` dicts, keyed by candidate index."""
    _check_inputs(candidates, references)
    gts = {i: [normalise(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [normalise(c)] for i, c in enumerate(candidates)}
    return gts, res


class Bleu:
    """Sentence-level BLEU-n, from the same pass that gives pycocoevalcap's corpus BLEU.

    Brevity penalty against the closest reference length. With no matching
    n-gram of some order, pycocoevalcap's 1e-15 smoothing gives a tiny
    positive value (about 1e-4 for BLEU-4) rather than exactly 0.
    """

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        if not candidates:
            return []
        gts, res = _inputs(candidates, references)
        _, per_sentence = CocoBleu(self.n).compute_score(gts, res, verbose=0)
        return [float(s) for s in per_sentence[self.n - 1]]


class Rouge:
    """ROUGE-L: LCS F-measure (β = 1.2) with the best precision and recall over references."""

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        if not candidates:
            return []
        gts, res = _inputs(candidates, references)
        _, per_sentence = CocoRouge().compute_score(gts, res)
        return [float(s) for s in per_sentence]


class _FixedCorpusCiderScorer(CiderScorer):
    """A CiderScorer whose IDF statistics are given, not taken from the scored set.

    ``compute_cider`` assigns ``self.ref_len = log(len(self.crefs))`` before
    scoring; the property keeps the given value through that assignment.
    """

    def __init__(self, document_frequency: dict, ref_len: float, n: int, sigma: float) -> None:
        self._fixed_ref_len = ref_len
        super().__init__(n=n, sigma=sigma)
        self.document_frequency = defaultdict(float, document_frequency)

    @property
    def ref_len(self) -> float:
        return self._fixed_ref_len

    @ref_len.setter
    def ref_len(self, value: Any) -> None:
        pass  # CiderScorer's own assignments (None, then the log of the batch size) are ignored


class CiderD:
    """CIDEr-D, with document frequencies from the scored references or from a fixed corpus.

    ``df_references``: reference sets (one per image) whose n-gram document
    frequencies and image count define the IDF for every later call. The
    arithmetic stays pycocoevalcap's ``CiderScorer.compute_cider``; only its
    two corpus statistics are set beforehand instead of from the call's own
    references.
    """

    def __init__(self, df_references: Sequence[Sequence[str]] | None = None, n: int = 4, sigma: float = 6.0) -> None:
        self.n, self.sigma = n, sigma
        self.document_frequency: dict[tuple[str, ...], float] | None = None
        self.ref_len = 0.0
        if df_references is not None:
            corpus = CiderScorer(n=n, sigma=sigma)
            for refs in df_references:
                corpus.cook_append(None, [normalise(r) for r in refs])
            if corpus.size() == 0:
                raise ValueError("df_references is empty")
            corpus.compute_doc_freq()
            self.document_frequency = dict(corpus.document_frequency)
            self.ref_len = float(np.log(float(corpus.size())))

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        if not candidates:
            return []
        gts, res = _inputs(candidates, references)
        if self.document_frequency is None:
            _, per_sentence = Cider(n=self.n, sigma=self.sigma).compute_score(gts, res)
            return [float(s) for s in per_sentence]
        scorer = _FixedCorpusCiderScorer(self.document_frequency, self.ref_len, n=self.n, sigma=self.sigma)
        for i in gts:
            scorer.cook_append(res[i][0], gts[i])
        return [float(s) for s in scorer.compute_cider()]


class Meteor(JavaMeteor):
    """METEOR 1.5 through a Java process of its own, held for its lifetime (a ``with`` block, or :meth:`close`)."""

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        if not candidates:
            return []
        gts, res = _inputs(candidates, references)
        return self.score_normalised(list(gts.values()), [c for (c,) in res.values()])


class SharedMeteor:
    """METEOR 1.5 through the machine's shared Java process (:mod:`rewarded_soups.services.meteor`).

    Holds no process itself: the service starts on the first call and outlives
    this object; :meth:`close` is there for the scorer protocol.
    """

    def __init__(self) -> None:
        java_or_raise()

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        if not candidates:
            return []
        gts, res = _inputs(candidates, references)
        return meteor.score(list(gts.values()), [c for (c,) in res.values()])

    def close(self) -> None:
        pass

    def __enter__(self) -> SharedMeteor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mean_over_references(scorer: Scorer, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """Each candidate's mean score against its references taken one at a time (the paper's VQA reward).

    The candidates × references pairs go to ``scorer`` as one batch of
    single-reference items, so a scorer with a fixed cost per call (METEOR's
    request to its Java process) pays it once, not once per reference.

    CIDEr without a fixed IDF corpus takes its document frequencies from the
    scored batch, here the expanded one: every (candidate, reference) pair is a
    document, so an answer repeated by several annotators counts once per
    repetition and ``log(number of pairs)`` caps the IDF. That differs from the
    "multi" IDF but is the same statistic over the same answers; give
    ``df_references`` for an IDF independent of the batch.
    """
    _check_inputs(candidates, references)
    if not candidates:
        return []
    expanded_candidates = [c for c, refs in zip(candidates, references) for _ in refs]
    expanded_references = [[r] for refs in references for r in refs]
    flat = scorer(expanded_candidates, expanded_references)
    if len(flat) != len(expanded_candidates):
        raise ValueError(f"the scorer gave {len(flat)} values for {len(expanded_candidates)} candidates")
    means, start = [], 0
    for refs in references:
        means.append(float(np.mean(flat[start : start + len(refs)])))
        start += len(refs)
    return means


def with_reference_mode(scorer: Scorer, mode: str) -> Scorer:
    """``scorer`` itself for "multi" (all references at once); for "mean", its mean over single references."""
    if mode == "multi":
        return scorer
    if mode == "mean":
        return functools.partial(mean_over_references, scorer)
    raise ValueError(f"reference_mode must be one of {', '.join(REFERENCE_MODES)}, got {mode!r}")


def scorer(metric: str, *, df_references: Sequence[Sequence[str]] | None = None) -> Scorer:
    """A reusable ``f(candidates, references) -> list[float]`` for ``metric``.

    ``df_references`` fixes CIDEr's IDF corpus (ignored by the other metrics).
    METEOR goes through the machine's shared Java process (:class:`SharedMeteor`).
    """
    if metric == "bleu1":
        return Bleu(1)
    if metric == "bleu4":
        return Bleu(4)
    if metric == "rouge":
        return Rouge()
    if metric == "cider":
        return CiderD(df_references)
    if metric == "meteor":
        return SharedMeteor()
    raise ValueError(f"unknown captioning metric {metric!r}; known: {', '.join(METRICS)}")


def score(
    metric: str,
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    df_references: Sequence[Sequence[str]] | None = None,
) -> list[float]:
    """One value per candidate (higher is better)."""
    return scorer(metric, df_references=df_references)(candidates, references)
