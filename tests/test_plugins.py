"""Tasks and rewards as plug-ins: declarations, errors, and a reward installed from outside the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rewarded_soups import registry
from rewarded_soups.registry import PluginError, reward
from rewarded_soups.tasks.base import missing_functions

ROOT = Path(__file__).resolve().parent.parent

PLUGIN_MODULE = '''
"""An external plug-in: one reward, registered when the module is imported."""
from rewarded_soups.registry import reward


@reward("exclamations", modality="text")
class Exclamations:
    """Exclamation marks per character of the completion, times ``weight``."""

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def __call__(self, prompts, completions):
        return [self.weight * c.count("!") / max(len(c), 1) for c in completions]
'''

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "rs-exclamations"
version = "0.1.0"

[project.entry-points."rewarded_soups.plugins"]
exclamations = "rs_exclamations"

[tool.setuptools]
py-modules = ["rs_exclamations"]
"""


@pytest.fixture
def clean_registry(monkeypatch):
    """The registries as discovered, restored after the test."""
    registry.discover()
    monkeypatch.setattr(registry, "_REWARDS", dict(registry._REWARDS))
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))


def test_builtin_tasks_and_rewards_are_declared_once_with_their_files():
    tasks = registry.tasks()
    assert {"text", "image", "captioning", "locomotion"} <= set(tasks)
    for spec in tasks.values():
        assert spec.schema.is_file() and spec.environment.is_file()
        assert missing_functions(spec.implementation(), spec.baselines) == []
    assert tasks["captioning"].baselines == ("ensemble", "wise") and tasks["captioning"].implements("load_ensemble")
    assert tasks["text"].reads == {"merge": ("merge.lora_mode",)}
    rewards = registry.rewards()
    assert rewards["perplexity"].metric and not rewards["perplexity"].higher_is_better
    assert rewards["perplexity"].context == {"base_model"} and rewards["perplexity"].uses_device
    assert rewards["conciseness"].options() == (set(), {"max_chars": 120, "min_chars": 10})
    assert "VADER" in rewards["vader"].doc
    # Every reward module's kinds score what some task produces.
    assert {r.modality for r in rewards.values()} <= {t.modality for t in tasks.values()}


def test_a_decorated_class_is_a_reward(clean_registry):
    @reward("shouting", modality="text", context=("base_model",))
    class Shouting:
        """Upper-case share of the completion."""

        def __init__(self, base_model: str, floor: float = 0.0) -> None:
            self.floor = floor

        def __call__(self, prompts, completions):
            return [max(self.floor, sum(ch.isupper() for ch in c) / max(len(c), 1)) for c in completions]

    spec = registry.reward_spec("shouting")
    assert spec.options() == (set(), {"floor": 0.0})  # base_model comes from the task
    built = registry.build_reward({"kind": "shouting", "floor": 0.1}, context={"base_model": "x", "other": 1})
    assert built(["p"], ["AB"]) == [1.0] and built(["p"], ["ab"]) == [0.1]
    with pytest.raises(PluginError, match="needs \\['base_model'\\]"):
        registry.build_reward({"kind": "shouting"})


def test_registration_mistakes_are_named(clean_registry):
    with pytest.raises(PluginError, match="registered twice"):

        @reward("vader", modality="text")
        class Impostor:
            """Not VADER."""

    with pytest.raises(PluginError, match="docstring"):

        @reward("undocumented", modality="text")
        class Undocumented:
            pass

    with pytest.raises(PluginError, match=r"schema\.yaml does not exist"):
        registry.register_task("nowhere", module="rewarded_soups.rewards", modality="text")


PIP_OFFLINE = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """A tiny external package installed (pip, offline) into its own directory, not into the environment."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "source"
    source.mkdir()
    (source / "rs_exclamations.py").write_text(PLUGIN_MODULE)
    (source / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    site = root / "site"
    subprocess.run(
        [*PIP_OFFLINE, "--target", str(site), str(source)],
        check=True,
        capture_output=True,
    )
    assert list(site.glob("rs_exclamations-*.dist-info/entry_points.txt"))
    return site


def _with_plugin(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}


def test_an_installed_plugin_registers_through_its_entry_point(plugin_site):
    probe = textwrap.dedent(
        """
        from rewarded_soups.registry import build_reward, reward_spec
        spec = reward_spec("exclamations")
        print(spec.module, spec.modality, build_reward({"kind": "exclamations", "weight": 2.0})(["p"], ["ab!!"]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=_with_plugin(plugin_site), capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["rs_exclamations", "text", "[1.0]"]


@pytest.mark.e2e
def test_a_config_uses_the_plugin_reward_without_editing_the_package(plugin_site, tmp_path):
    """θ0 of a tiny text task scored by the external reward through the workflow (3 jobs)."""
    import yaml

    tiny = yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text())["tasks"]["text"]
    text = {key: tiny[key] for key in ("kind", "rewards", "pretrain", "evaluate")}
    config = {"seed": 0, "tasks": {"text": {**text, "metrics": {"bangs": {"kind": "exclamations", "weight": 10.0}}}}}
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    target = "results/text/scores/init/rule-based.json"  # the plugin's reward declares no model
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2", target]
    result = subprocess.run(
        [*command, "--directory", str(tmp_path)],
        env=_with_plugin(plugin_site),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (score,) = [row for row in json.loads((tmp_path / target).read_text()) if row["reward"] == "bangs"]
    samples = [json.loads(line) for line in (tmp_path / "results/text/samples/init/test/samples.jsonl").open()]
    by_hand = [10.0 * s["completion"].count("!") / max(len(s["completion"]), 1) for s in samples]
    test = score["splits"]["test"]
    assert test["n"] == 16 and test["mean"] == pytest.approx(sum(by_hand) / len(by_hand))

    # Without the plug-in the same config fails before any job, naming the reward and the registered kinds.
    dry = subprocess.run(
        [*command, "--dry-run", "--directory", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path
    )
    assert dry.returncode != 0
    assert "metrics.bangs.kind: unknown metric kind 'exclamations'" in dry.stdout + dry.stderr
