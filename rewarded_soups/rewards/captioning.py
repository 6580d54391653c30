"""Captioning rewards: the COCO caption metrics of pycocoevalcap, one value per caption.

Each is a callable ``reward(candidates, references) -> list[float]`` (a
candidate caption and its image's reference captions), used both as the RL
reward of an expert and as an evaluation metric; see
:mod:`rewarded_soups.rewards.caption_metrics` for the implementation notes
(tokenisation, CIDEr's document frequencies, METEOR's Java process).

``reference_mode``: "multi" scores a candidate against all its references at
once, as the COCO evaluation does; "mean" scores it against each reference
alone and averages, the paper's VQA reward over ten annotators' answers
(Appendix H), where "multi" would let any one annotator's odd answer count
as fully right.
"""

from __future__ import annotations

from collections.abc import Sequence

from rewarded_soups.registry import reward
from rewarded_soups.rewards import caption_metrics as metrics
from rewarded_soups.rewards.caption_metrics import ReferenceMode


@reward("bleu", modality="caption", bounds={"n": {"minimum": 1, "maximum": 4}})
class BleuReward:
    """BLEU-n of one caption against its references (pycocoevalcap, per-sentence, brevity penalty)."""

    def __init__(self, n: int = 4, reference_mode: ReferenceMode = "multi") -> None:
        if n not in (1, 2, 3, 4):
            raise ValueError(f"bleu n must be 1, 2, 3 or 4, got {n}")
        self._bleu = metrics.with_reference_mode(metrics.Bleu(n), reference_mode)

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        return self._bleu(candidates, references)


@reward("rouge", modality="caption")
class RougeReward:
    """ROUGE-L F-measure (β = 1.2) against the references (pycocoevalcap)."""

    def __init__(self, reference_mode: ReferenceMode = "multi") -> None:
        self._rouge = metrics.with_reference_mode(metrics.Rouge(), reference_mode)

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        return self._rouge(candidates, references)


@reward("meteor", modality="caption")
class MeteorReward:
    """METEOR 1.5 (pycocoevalcap's jar: needs ``java`` on PATH), through the machine's shared Java process."""

    def __init__(self, reference_mode: ReferenceMode = "multi") -> None:
        self._meteor = metrics.SharedMeteor()
        # "mean" sends all candidate × reference pairs as one request, not one per reference.
        self._score = metrics.with_reference_mode(self._meteor, reference_mode)

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        return self._score(candidates, references)

    def close(self) -> None:
        self._meteor.close()


@reward("cider", modality="caption", context=("df_references",))
class CiderReward:
    """CIDEr-D (pycocoevalcap) with document frequencies from the training references, as in SCST."""

    def __init__(
        self, df_references: Sequence[Sequence[str]] | None = None, reference_mode: ReferenceMode = "multi"
    ) -> None:
        # With "mean" and no df_references, the IDF comes from the expanded candidate × reference batch
        # (see caption_metrics.mean_over_references): acceptable, as it is the same answers' statistic.
        self._cider = metrics.with_reference_mode(metrics.CiderD(df_references), reference_mode)

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        return self._cider(candidates, references)
