"""VQA accuracy: the official VQA v2 metric of one answer against its annotators' answers.

An answer is right in full when at least three annotators gave it
(``min(#matches / 3, 1)``), so that one annotator's slip neither makes a
wrong answer right nor a right one wrong. The official evaluation averages
that over the ten leave-one-out subsets of the ten answers (each subset
drops one annotator), which makes 3 matches worth 0.9 and 4 worth 1.

Answers are compared after the official normalisation, in the simplified
form that this repository's lowercase, punctuation-free answers need:
lowercase, punctuation removed, the articles a/an/the dropped, the number
words zero..ten written as digits, whitespace collapsed. So "two" matches
"2" and "the red" matches "red". (The official evaluation also maps
contractions such as "dont" to "don't"; removing apostrophes makes those
pairs match as well.)
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from rewarded_soups.registry import reward

ARTICLES = frozenset({"a", "an", "the"})
NUMBER_WORDS = {
    word: str(i)
    for i, word in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"))
}
# As the official evaluation: a punctuation mark next to a space (or a comma inside a number, "1,000") is
# deleted, elsewhere it separates words ("red/blue" is "red blue"). Apostrophes are always deleted.
_PUNCTUATION = "".join(c for c in string.punctuation if c not in ".'")
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")  # a period that is not a decimal point


def normalise_answer(answer: str) -> str:
    """The answer as the VQA evaluation compares it (see the module docstring)."""
    text = answer.replace("\n", " ").replace("\t", " ").strip().lower().replace("'", "")
    delete_all = _DIGIT_COMMA.search(text) is not None
    for mark in _PUNCTUATION:
        if mark not in text:
            continue
        adjacent_to_space = f"{mark} " in text or f" {mark}" in text
        text = text.replace(mark, "" if adjacent_to_space or delete_all else " ")
    text = _PERIOD.sub("", text)
    words = [NUMBER_WORDS.get(w, w) for w in text.split() if w not in ARTICLES]
    return " ".join(words)


def vqa_accuracy(answer: str, references: Sequence[str]) -> float:
    """VQA accuracy of ``answer``: the mean over leave-one-out subsets of ``min(#matches in subset / 3, 1)``.

    With fewer than two references there is no subset to leave one out of,
    so it is just ``min(#matches / 3, 1)``.
    """
    if isinstance(references, str) or len(references) == 0:
        raise ValueError(f"references must be a non-empty list of strings, got {references!r}")
    candidate = normalise_answer(answer)
    matches = [normalise_answer(r) == candidate for r in references]
    total = sum(matches)
    if len(references) < 2:
        return min(total / 3.0, 1.0)
    # Leaving out reference i leaves total - matches[i] matches.
    return sum(min((total - m) / 3.0, 1.0) for m in matches) / len(references)


@reward("vqa_accuracy", modality="caption", metric=True)
class VQAAccuracy:
    """VQA accuracy: min(#annotators agreeing / 3, 1) over leave-one-out subsets, after VQA answer normalisation.

    The official VQA v2 evaluation metric, one value per answer: a metric
    (evaluated on every model, never trained on), as the benchmark reports it
    next to the n-gram rewards averaged over the annotators' answers.
    """

    def __init__(self) -> None:
        """No options: the metric is the benchmark's, fixed."""

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} reference sets")
        return [vqa_accuracy(c, refs) for c, refs in zip(candidates, references)]
