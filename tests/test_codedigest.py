"""Code digests: which edits change which job's digest (the workflow test checks the reruns themselves)."""

from __future__ import annotations

import textwrap

import pytest

from rewarded_soups import codedigest


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package whose task module imports one module per function, lazily (as the tasks do)."""
    root = tmp_path / "dgpkg"
    root.mkdir()
    files = {
        "__init__.py": """
            CONSTANT = 1


            def _helper():
                return CONSTANT


            def train():
                from dgpkg import training

                return training.run() + _helper()


            def plot():
                from dgpkg.drawing import draw

                return draw()
            """,
        "training.py": "from dgpkg import maths\n\n\ndef run():\n    return maths.add(1, 2)\n",
        "maths.py": "def add(a, b):\n    return a + b\n",
        "drawing.py": "def draw():\n    return 'figure'\n",
    }
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    codedigest.clear_caches()
    yield root
    codedigest.clear_caches()


def _edit(path, old, new):
    path.write_text(path.read_text().replace(old, new))
    codedigest.clear_caches()


def test_closure_follows_lazy_imports_of_the_function_only(package):
    assert set(codedigest.closure(["dgpkg:train"])) == {"dgpkg.training", "dgpkg.maths"}
    assert set(codedigest.closure(["dgpkg:plot"])) == {"dgpkg.drawing"}


def test_an_edit_changes_exactly_the_digests_of_code_that_can_run_it(package):
    train, plot = codedigest.digest(["dgpkg:train"]), codedigest.digest(["dgpkg:plot"])
    _edit(package / "maths.py", "a + b", "b + a")  # imported by training, two levels down
    assert codedigest.digest(["dgpkg:train"]) != train and codedigest.digest(["dgpkg:plot"]) == plot
    train = codedigest.digest(["dgpkg:train"])
    _edit(package / "drawing.py", "'figure'", "'figure 2'")
    assert codedigest.digest(["dgpkg:train"]) == train and codedigest.digest(["dgpkg:plot"]) != plot
    plot = codedigest.digest(["dgpkg:plot"])
    _edit(package / "__init__.py", "CONSTANT = 1", "CONSTANT = 2")  # top-level code: every function
    assert codedigest.digest(["dgpkg:train"]) != train and codedigest.digest(["dgpkg:plot"]) != plot


def test_a_function_edit_reaches_only_that_function_and_its_callers(package):
    train, plot = codedigest.digest(["dgpkg:train"]), codedigest.digest(["dgpkg:plot"])
    _edit(package / "__init__.py", "return CONSTANT", "return CONSTANT + 1")  # the helper train calls
    assert codedigest.digest(["dgpkg:train"]) != train and codedigest.digest(["dgpkg:plot"]) == plot


def test_comments_and_formatting_change_nothing(package):
    train = codedigest.digest(["dgpkg:train"])
    _edit(package / "maths.py", "    return a + b\n", "    # the sum\n    return (a\n            + b)\n")
    assert codedigest.digest(["dgpkg:train"]) == train


def test_the_text_task_stages_import_what_they_run():
    pretrain = codedigest.closure(["rewarded_soups.tasks.text:pretrain"])
    finetune = codedigest.closure(["rewarded_soups.tasks.text:finetune"])
    assert "rewarded_soups.tasks.text.model" in pretrain and "rewarded_soups.tasks.text.rl" not in pretrain
    assert "rewarded_soups.tasks.text.rl" in finetune and "rewarded_soups.tasks.text.model" not in finetune
    assert not any(name.startswith("rewarded_soups.tasks.image") for name in finetune)
    assert "rewarded_soups.plots" not in finetune


def test_the_disk_cache_gives_the_same_digests_and_sees_edits(package, tmp_path, monkeypatch):
    cold = {entry: codedigest.digest([entry]) for entry in ("dgpkg:train", "dgpkg:plot", "dgpkg")}
    cache_file = tmp_path / "cache" / "code-digests.json"
    monkeypatch.setattr(codedigest, "_disk_file", None)
    monkeypatch.setattr(codedigest, "_disk", {})
    monkeypatch.setattr(codedigest, "_disk_changed", False)
    codedigest.use_disk_cache(cache_file)
    codedigest.clear_caches()
    assert {entry: codedigest.digest([entry]) for entry in cold} == cold
    codedigest._save_disk_cache()
    assert str(package / "maths.py") in cache_file.read_text()

    # A later process: everything comes from the file, nothing is parsed.
    codedigest.use_disk_cache(cache_file)
    codedigest.clear_caches()
    with monkeypatch.context() as patched:
        patched.setattr(codedigest, "_tree", lambda path: pytest.fail(f"parsed {path}"))
        assert {entry: codedigest.digest([entry]) for entry in cold} == cold

    # An edit changes the file's size and time: its entry is recomputed.
    codedigest.use_disk_cache(cache_file)
    _edit(package / "maths.py", "a + b", "b + a")
    assert codedigest.digest(["dgpkg:train"]) != cold["dgpkg:train"]
    assert codedigest.digest(["dgpkg:plot"]) == cold["dgpkg:plot"]
