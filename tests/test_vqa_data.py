"""VQA data on grid scenes: seeded, every answer right for its scene, referents unique, VQA-like answers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from rewarded_soups.data.grid_scenes import (
    SIZE_CLASSES,
    GridScene,
    PlacedShape,
    cell_name,
    render_grid,
    sample_grid_scene,
)
from rewarded_soups.data.shapes import COLOURS, SHAPES
from rewarded_soups.tasks.vqa import data

PLACE_WORDS = ("top", "bottom", "left", "right", "centre")


def parse_description(words: list[str]) -> dict[str, str]:
    """The attributes a question names, read back from its words (independently of the generator's code)."""
    description: dict[str, str] = {}
    for word in words:
        if word in SIZE_CLASSES:
            description["size"] = word
        elif word in COLOURS:
            description["colour"] = word
        elif word in SHAPES or word.removesuffix("s") in SHAPES:
            description["shape"] = word.removesuffix("s")
    place = [w for w in words if w in PLACE_WORDS]
    if place:
        description["position"] = " ".join(place)
    return description


def matching(scene: GridScene, description: dict[str, str]) -> list:
    def fits(obj) -> bool:
        values = {"size": obj.size, "colour": obj.colour, "shape": obj.shape, "position": cell_name(obj)}
        return all(values[a] == v for a, v in description.items())

    return [obj for obj in scene.objects if fits(obj)]


def expected_answer(scene: GridScene, question: data.Question) -> str:
    """The right answer, recomputed from the scene and the question's words alone."""
    words = question.text.split()
    description = parse_description(words)
    if question.kind == "count":
        return str(len(matching(scene, description)))
    if question.kind == "yesno":
        return "yes" if matching(scene, description) else "no"
    (referent,) = matching(scene, description)  # a question about one shape names exactly one
    return {
        "colour": referent.colour,
        "shape": referent.shape,
        "size": referent.size,
        "position": cell_name(referent),
    }[question.kind]


@pytest.fixture(scope="module")
def asked() -> list[tuple[GridScene, data.Question]]:
    rng = np.random.default_rng(11)
    out = []
    for _ in range(400):
        scene = sample_grid_scene(rng)
        out.append((scene, data.ask(scene, rng)))
    return out


def test_every_answer_is_right_for_its_scene(asked):
    for scene, question in asked:
        canonical = expected_answer(scene, question)
        counts = Counter(question.answers)
        assert len(question.answers) == 10
        assert counts[canonical] >= 4, question
        # The canonical answer is strictly the most frequent one.
        assert all(c < counts[canonical] for a, c in counts.items() if a != canonical), question


def test_referents_of_questions_about_one_shape_are_unique(asked):
    for scene, question in asked:
        if question.kind in ("colour", "shape", "size", "position"):
            description = parse_description(question.text.split())
            assert question.kind not in description, question  # the question does not give its answer away
            assert len(matching(scene, description)) == 1, question


def test_every_kind_occurs_in_varied_phrasings(asked):
    kinds = Counter(q.kind for _, q in asked)
    assert set(kinds) == set(data.KINDS)
    assert min(kinds.values()) >= 20
    for kind in data.KINDS:
        openings = {" ".join(q.text.split()[:3]) for _, q in asked if q.kind == kind}
        assert len(openings) >= 2, kind
    counts = {Counter(q.answers).most_common(1)[0][0] for _, q in asked if q.kind == "count"}
    assert "0" in counts and {"2", "3"} <= counts
    yesno = Counter(Counter(q.answers).most_common(1)[0][0] for _, q in asked if q.kind == "yesno")
    assert yesno["yes"] > 0 and yesno["no"] > 0


def test_text_is_lowercase_words_without_punctuation(asked):
    for _, question in asked:
        for text in (question.text, *question.answers):
            assert text == " ".join(text.split()) and text.replace(" ", "").isalnum() and text == text.lower(), text


def test_answers_are_varied_like_annotators():
    rng = np.random.default_rng(5)
    scene = GridScene((PlacedShape("circle", "red", "small", 0, 0, 0.15, 0.15),), "black")
    answers: Counter[str] = Counter()
    for _ in range(30):
        question = data.ask(scene, rng)
        if question.kind == "count" and question.answers.count("1") >= 4:
            assert "one" in question.answers  # the number word is always among the variants
        answers.update(question.answers)
    assert {"red", "small", "top left", "circle"} & set(answers)
    variants = set(answers) - {"red", "small", "top left", "circle", "yes", "no", "0", "1"}
    assert len(variants) >= 5


def test_n_answers_and_shuffling():
    scene = sample_grid_scene(np.random.default_rng(0))
    for n in (1, 2, 3, 5, 20):
        question = data.ask(scene, np.random.default_rng(1), n_answers=n)
        canonical = expected_answer(scene, question)
        counts = Counter(question.answers)
        assert len(question.answers) == n and counts.most_common(1)[0][0] == canonical
        assert all(c < counts[canonical] for a, c in counts.items() if a != canonical)
    orders = {data.ask(scene, np.random.default_rng(s)).answers for s in range(10)}
    assert len(orders) > 1
    with pytest.raises(ValueError, match="n_answers"):
        data.ask(scene, np.random.default_rng(1), n_answers=0)


def test_make_set_is_seeded():
    a, b = data.make_set(30, seed=4), data.make_set(30, seed=4)
    assert np.array_equal(a.images, b.images) and a.questions == b.questions and a.answers == b.answers
    assert a.kinds == b.kinds and len(a) == 30 and a.images.shape == (30, 32, 32, 3) and a.images.dtype == np.uint8
    c = data.make_set(30, seed=5)
    assert c.questions != a.questions and not np.array_equal(c.images, a.images)
    small = data.make_set(3, seed=4, image_size=16, n_answers=5)
    assert small.images.shape == (3, 16, 16, 3) and all(len(refs) == 5 for refs in small.answers)


def test_images_are_the_scenes():
    rng = np.random.default_rng(7)
    scene = sample_grid_scene(rng)
    ours = data.make_set(1, seed=7, image_size=24)
    assert np.array_equal(ours.images[0], render_grid(scene, 24))


def test_splits_are_seeded_and_distinct():
    splits = data.make_splits(20, 8, 8, seed=3, image_size=16)
    again = data.make_splits(20, 8, 8, seed=3, image_size=16)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (20, 8, 8)
    assert np.array_equal(again.train.images, splits.train.images) and again.test.answers == splits.test.answers
    assert splits.train.questions[:8] != splits.valid.questions and splits.valid.questions != splits.test.questions
    assert data.make_splits(20, 8, 8, seed=4, image_size=16).train.questions != splits.train.questions
