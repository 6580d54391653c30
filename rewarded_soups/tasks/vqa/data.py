"""Visual question answering data: questions about grid scenes, each with ten annotators' answers.

Like VQA v2, every question comes with ten reference answers as different
people would give them: the short canonical answer at least four times
(so that the official VQA accuracy gives it 1) and the rest in other
wordings ("two" for "2", "upper left" for "top left", "it is red"), so that
the n-gram rewards averaged over the answers (the paper's VQA rewards)
disagree with each other and with exact-match accuracy.

The scenes are :func:`rewarded_soups.data.grid_scenes.sample_grid_scene`'s:
two to four shapes in the cells of a 3×3 grid, with repeated colours, so
that "the red one" is not always unique. A question about one shape
(its colour, shape, size or position) names it by as few attributes as
single it out, adding the size or position when needed; one that no
description can single out is not asked. Counting and yes/no questions
are about the whole scene and always have an answer.

Questions and answers are lowercase words without punctuation, so
whitespace splitting is a complete tokeniser (as for the captions). This
module holds no torch; everything is a pure function of a seed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewarded_soups.data.grid_scenes import (
    COLUMN_WORDS,
    ROW_WORDS,
    SIZE_CLASSES,
    GridScene,
    PlacedShape,
    cell_name,
    render_grid,
    sample_grid_scene,
)
from rewarded_soups.data.shapes import COLOURS, SHAPES
from rewarded_soups.data.splits import LazySplits

KINDS = ("colour", "shape", "size", "position", "count", "yesno")
# The attribute that a question about one shape asks for, by kind.
ASKED = {"colour": "colour", "shape": "shape", "size": "size", "position": "position"}
# The attribute a description of the referent always names (the noun or the adjective the question hinges on);
# the others are added only to make the description unique.
HEAD = {"colour": "shape", "shape": "colour", "size": "shape", "position": "shape"}
ATTRIBUTES = ("size", "colour", "shape", "position")
MIN_CANONICAL = 4  # the canonical answer's least count among ten answers, as in VQA v2's typical agreement

TEMPLATES = {
    "colour": ("what colour is the {np}", "what is the colour of the {np}", "which colour does the {np} have"),
    "shape": ("what shape is the {np}", "what is the shape of the {np}", "which shape is the {np}"),
    "size": ("how big is the {np}", "what size is the {np}", "what is the size of the {np}"),
    "position": ("where is the {np}", "where can you see the {np}", "in which part of the image is the {np}"),
    "count": ("how many {plural} are there", "how many {plural} can you see", "what is the number of {plural}"),
    "yesno": ("is there a {np}", "can you see a {np}", "does the image contain a {np}"),
}

COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SHAPE_VARIANTS = {
    "circle": ("a circle", "round", "it is a circle", "circular"),
    "square": ("a square", "it is a square", "a box", "square shaped"),
    "triangle": ("a triangle", "triangular", "it is a triangle", "a triangle shape"),
}
SIZE_VARIANTS = {
    "small": ("little", "tiny", "it is small", "quite small"),
    "medium": ("medium sized", "average", "mid sized", "it is medium"),
    "large": ("big", "it is large", "huge", "quite big"),
}
POSITION_VARIANTS = {
    "top left": ("upper left", "in the top left", "top left corner"),
    "top right": ("upper right", "in the top right", "top right corner"),
    "bottom left": ("lower left", "in the bottom left", "bottom left corner"),
    "bottom right": ("lower right", "in the bottom right", "bottom right corner"),
    "top": ("at the top", "top middle", "upper middle"),
    "bottom": ("at the bottom", "bottom middle", "lower middle"),
    "left": ("on the left", "left side", "middle left"),
    "right": ("on the right", "right side", "middle right"),
    "centre": ("in the middle", "center", "middle"),
}


@dataclass(frozen=True)
class Question:
    text: str
    answers: tuple[str, ...]  # the annotators' answers, in random order
    kind: str  # one of KINDS


@dataclass(frozen=True)
class VQASet:
    images: np.ndarray  # n × size × size × 3, uint8
    questions: list[str]  # one per image
    answers: list[list[str]]  # the reference answers of each question
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.questions)


def _value(obj: PlacedShape, attribute: str) -> str:
    return cell_name(obj) if attribute == "position" else str(getattr(obj, attribute))


def _matches(scene: GridScene, description: dict[str, str]) -> list[PlacedShape]:
    return [o for o in scene.objects if all(_value(o, a) == v for a, v in description.items())]


def position_phrase(cell: str) -> str:
    """A cell name as a place in a sentence: "in the top left", "at the top", "on the left", "in the centre"."""
    if cell in ROW_WORDS:
        return f"at the {cell}"
    if cell in COLUMN_WORDS:
        return f"on the {cell}"
    return f"in the {cell}"


def noun_phrase(description: dict[str, str]) -> str:
    """A description's words without article: "small red one", "circle in the top left", "shape at the top".

    Without a shape the noun is "one" after an adjective ("the red one"),
    "shape" otherwise ("the shape on the left").
    """
    words = [description[a] for a in ("size", "colour") if a in description]
    words.append(description.get("shape") or ("one" if words else "shape"))
    if "position" in description:
        words.append(position_phrase(description["position"]))
    return " ".join(words)


def _unique_descriptions(scene: GridScene, obj: PlacedShape, kind: str) -> list[dict[str, str]]:
    """The shortest descriptions of ``obj`` that name the kind's head, not the asked attribute, and fit it alone.

    Descriptions without the position come first: "the small circle" is
    preferred to "the circle in the top left" when both are unique.
    """
    head = HEAD[kind]
    extras = [a for a in ATTRIBUTES if a not in (head, ASKED[kind])]
    for use_position in (False, True):
        pool = [a for a in extras if use_position or a != "position"]
        for k in range(len(pool) + 1):
            found = []
            for combo in itertools.combinations(pool, k):
                if use_position and "position" not in combo:
                    continue
                description = {a: _value(obj, a) for a in (head, *combo)}
                if _matches(scene, description) == [obj]:
                    found.append(description)
            if found:
                return found
    return []


def _answers(canonical: str, variants: Sequence[str], n_answers: int, rng: np.random.Generator) -> tuple[str, ...]:
    """``n_answers`` annotators' answers: ``canonical`` the strict majority wording, then variants, shuffled.

    The canonical answer appears at least ``MIN_CANONICAL`` times (of ten)
    and more often than any variant; the first variant (e.g. the number word)
    is always among the others, the rest round-robin in random order.
    """
    if n_answers < 1:
        raise ValueError(f"n_answers must be at least 1, got {n_answers}")
    variants = [v for v in variants if v != canonical]
    low = min(n_answers, max(math.ceil(0.4 * n_answers), min(MIN_CANONICAL, n_answers)))
    # The canonical count must beat the most frequent variant's (round-robin over the variants).
    while low < n_answers and (not variants or math.ceil((n_answers - low) / len(variants)) >= low):
        low += 1
    high = max(low, math.ceil(0.7 * n_answers))
    k = int(rng.integers(low, high + 1))
    order = [variants[0], *(variants[1:][i] for i in rng.permutation(len(variants) - 1))] if variants else []
    answers = [canonical] * k + [order[i % len(order)] for i in range(n_answers - k)]
    return tuple(answers[i] for i in rng.permutation(n_answers))


def _colour_variants(colour: str) -> tuple[str, ...]:
    return (f"it is {colour}", f"bright {colour}", f"{colour} colour")


def _count_variants(count: int) -> tuple[str, ...]:
    word = COUNT_WORDS[count]
    if count == 0:
        return (word, "none", "there are none")
    if count == 1:
        return (word, "just one", "only one")
    return (word, f"there are {word}", f"{word} of them")


def _yesno_variants(answer: str) -> tuple[str, ...]:
    return ("yep", "yes there is", "yeah") if answer == "yes" else ("nope", "no there is not", "not at all")


def _about_one_shape(scene: GridScene, kind: str, rng: np.random.Generator) -> tuple[str, str, tuple[str, ...]] | None:
    """(question, canonical answer, variants) about a uniquely described shape, or None if none can be."""
    referable = [(obj, d) for obj in scene.objects if (d := _unique_descriptions(scene, obj, kind))]
    if not referable:
        return None
    obj, descriptions = referable[int(rng.integers(len(referable)))]
    description = descriptions[int(rng.integers(len(descriptions)))]
    text = str(rng.choice(TEMPLATES[kind])).format(np=noun_phrase(description))
    canonical = _value(obj, ASKED[kind])
    variants = {
        "colour": _colour_variants,
        "shape": SHAPE_VARIANTS.__getitem__,
        "size": SIZE_VARIANTS.__getitem__,
        "position": POSITION_VARIANTS.__getitem__,
    }[kind](canonical)
    return text, canonical, variants


def _count_question(scene: GridScene, rng: np.random.Generator) -> tuple[str, str, tuple[str, ...]]:
    """How many shapes, shapes of a shape, or shapes of a colour (often one absent from the scene: 0)."""
    by = str(rng.choice(["all", "shape", "colour"]))
    if by == "shape":
        shape = str(rng.choice(SHAPES))
        plural, description = f"{shape}s", {"shape": shape}
    elif by == "colour":
        present = sorted({o.colour for o in scene.objects})
        colour = str(rng.choice(present if rng.random() < 0.6 else list(COLOURS)))
        plural, description = f"{colour} shapes", {"colour": colour}
    else:
        plural, description = "shapes", {}
    count = len(_matches(scene, description))
    text = str(rng.choice(TEMPLATES["count"])).format(plural=plural)
    return text, str(count), _count_variants(count)


def _yesno_question(scene: GridScene, rng: np.random.Generator) -> tuple[str, str, tuple[str, ...]]:
    """Is there a (size) colour shape: half the time one of the scene's, else a random combination."""
    attributes = ("colour", "shape") if rng.random() < 0.7 else ("size", "colour", "shape")
    if rng.random() < 0.5:
        obj = scene.objects[int(rng.integers(len(scene.objects)))]
        description = {a: _value(obj, a) for a in attributes}
    else:
        pools = {"size": SIZE_CLASSES, "colour": tuple(COLOURS), "shape": SHAPES}
        description = {a: str(rng.choice(pools[a])) for a in attributes}
    answer = "yes" if _matches(scene, description) else "no"
    text = str(rng.choice(TEMPLATES["yesno"])).format(np=noun_phrase(description))
    return text, answer, _yesno_variants(answer)


def ask(scene: GridScene, rng: np.random.Generator, n_answers: int = 10) -> Question:
    """One question about ``scene``, of a kind drawn among those with a well-defined answer, with its answers."""
    asked: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for kind in ("colour", "shape", "size", "position"):
        # Drawn for every kind, so that the random stream does not depend on which kinds are possible.
        found = _about_one_shape(scene, kind, rng)
        if found is not None:
            asked[kind] = found
    asked["count"] = _count_question(scene, rng)
    asked["yesno"] = _yesno_question(scene, rng)
    kind = str(rng.choice([k for k in KINDS if k in asked]))
    text, canonical, variants = asked[kind]
    return Question(text, _answers(canonical, variants, n_answers, rng), kind)


def make_set(n: int, seed: int, image_size: int = 32, n_answers: int = 10) -> VQASet:
    """``n`` scenes with one question each, a pure function of ``seed``."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    questions: list[Question] = []
    for i in range(n):
        scene = sample_grid_scene(rng)
        images[i] = render_grid(scene, image_size)
        questions.append(ask(scene, rng, n_answers))
    return VQASet(
        images, [q.text for q in questions], [list(q.answers) for q in questions], [q.kind for q in questions]
    )


def make_splits(
    n_train: int, n_valid: int, n_test: int, seed: int, image_size: int = 32, n_answers: int = 10
) -> LazySplits[VQASet]:
    """Train/validation/test sets from independent seeds (:func:`split_seeds`), each made on first use."""
    return LazySplits(lambda n, s: make_set(n, s, image_size, n_answers), (n_train, n_valid, n_test), seed)


def real_splits(data: dict[str, Any], seed: int):
    """VQA v2-style questions with their annotators' answers through ``datasets`` (``data.source: datasets``)."""
    from rewarded_soups.vision_language.records import Images, Splits, column, texts

    def make(dataset: Any, image_column: str) -> VQASet:
        questions = [str(q) for q in column(dataset, data, "question")]
        answers = texts(column(dataset, data, "answers"), "answer")
        kinds = [str(k) for k in column(dataset, data, "kind")] if data["columns"]["kind"] else ["all"] * len(questions)
        return VQASet(Images(dataset, image_column), questions, answers, kinds)  # type: ignore[arg-type]

    return Splits(data, seed, make)
