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
        "maths.py": """
            import json


            def add(a, b):
                \"\"\"The sum.\"\"\"
                return a + b


            def dumps(value):
                return json.dumps(value)
            """,
        "drawing.py": "def draw():\n    return 'figure'\n",
        "shared.py": """
            from typing import TYPE_CHECKING

            from dgpkg.maths import add as plus

            if TYPE_CHECKING:
                from dgpkg import drawing


            def evaluate(figure: drawing.Figure) -> int:
                import numpy

                return plus(1, 1) + int(numpy.zeros(1)[0])
            """,
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
    assert set(codedigest.closure(["dgpkg:train"])) == {"dgpkg", "dgpkg.training", "dgpkg.maths"}
    assert set(codedigest.closure(["dgpkg:plot"])) == {"dgpkg", "dgpkg.drawing"}


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


def test_comments_formatting_and_docstrings_change_nothing(package):
    train = codedigest.digest(["dgpkg:train"])
    _edit(package / "maths.py", "    return a + b\n", "    # the sum\n    return (a\n            + b)\n")
    _edit(package / "maths.py", '"""The sum."""', '"""The sum of two numbers, reworded."""')
    assert codedigest.digest(["dgpkg:train"]) == train


def test_only_the_functions_a_job_calls_count_across_modules(package):
    train = codedigest.digest(["dgpkg:train"])
    _edit(package / "maths.py", "json.dumps(value)", "json.dumps(value, indent=1)")  # maths.dumps: train never calls it
    assert codedigest.digest(["dgpkg:train"]) == train
    units, _ = codedigest.reach(["dgpkg:train"])
    assert ("dgpkg.maths", "add") in units and ("dgpkg.maths", "dumps") not in units


def test_re_exports_are_followed_and_type_checking_imports_are_not(package):
    units, packages = codedigest.reach(["dgpkg.shared:evaluate"])
    assert ("dgpkg.maths", "add") in units  # through `from dgpkg.maths import add as plus`
    assert not any(module == "dgpkg.drawing" for module, _ in units)  # an annotation's import, never run
    assert "numpy" in packages and "typing" in packages


def test_the_versions_of_imported_packages_count(package, monkeypatch):
    shared, plot = codedigest.digest(["dgpkg.shared:evaluate"]), codedigest.digest(["dgpkg:plot"])
    installed = codedigest.package_versions("numpy")
    assert installed[0].startswith("numpy==") and codedigest.package_versions("json") == ()  # stdlib: no version
    real = codedigest._lookup_versions
    upgraded = {"numpy": ["numpy==0.0.1"]}
    monkeypatch.setattr(codedigest, "_lookup_versions", lambda name: upgraded.get(name) or real(name))
    codedigest.clear_caches()
    assert codedigest.digest(["dgpkg.shared:evaluate"]) != shared  # it imports numpy
    assert codedigest.digest(["dgpkg:plot"]) == plot  # it does not


def test_the_text_task_stages_import_what_they_run():
    pretrain, _ = codedigest.reach(["rewarded_soups.tasks.text:pretrain"])
    finetune, packages = codedigest.reach(["rewarded_soups.tasks.text:finetune"])
    modules = {m for m, _ in pretrain}, {m for m, _ in finetune}
    assert "rewarded_soups.tasks.text.model" in modules[0] and "rewarded_soups.tasks.text.rl" not in modules[0]
    assert "rewarded_soups.tasks.text.rl" in modules[1] and "rewarded_soups.tasks.text.model" not in modules[1]
    assert not any(name.startswith("rewarded_soups.tasks.image") for name in modules[1])
    assert "rewarded_soups.plots" not in modules[1]
    assert {"trl", "peft", "transformers", "torch"} <= packages and "matplotlib" not in packages
    # The generic modules count function by function: fine-tuning never runs the GPU claiming code.
    assert ("rewarded_soups.gpus", "torch_threads") in finetune and ("rewarded_soups.gpus", "claim") not in finetune


def test_the_disk_cache_gives_the_same_digests_and_sees_edits(package, tmp_path, monkeypatch):
    cold = {entry: codedigest.digest([entry]) for entry in ("dgpkg:train", "dgpkg:plot", "dgpkg")}
    monkeypatch.setattr(codedigest, "_lookup_versions", lambda name: [])
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
