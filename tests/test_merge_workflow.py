"""End to end: soups stored as recipes and three merge methods on one front, through Snakemake.

The reduced text task with ``merge.store: recipe`` and ``merge.method: [linear,
fisher, task_arithmetic]`` (task arithmetic extrapolating to λ = −0.5 and 1.5):
every soup directory holds only its recipe, each expert gets a cached Fisher,
the front draws one curve per method, the summary compares them, and a
recipe soup evaluates exactly like the same soup stored in full.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rewarded_soups import stages
from rewarded_soups.plots import plot_front
from rewarded_soups.samples import read as read_samples

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TEXT = {
    "kind": "text",
    "rewards": {"sentiment": {"kind": "vader"}, "concise": {"kind": "conciseness", "max_chars": 60}},
    "pretrain": {
        "vocab_size": 512,
        "n_layer": 1,
        "n_head": 2,
        "n_embd": 32,
        "block_size": 64,
        "steps": 60,
        "batch_size": 16,
        "eval_batches": 2,
    },
    "finetune": {
        "steps": 4,
        "learning_rate": 0.01,
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 12,
        "lora": {"r": 4, "alpha": 8},
    },
    "morl": {"mu": [0.5]},
    "merge": {
        "grid_points": 3,
        "store": "recipe",
        "method": ["linear", "fisher", "task_arithmetic"],
        "task_arithmetic": {"lambda_range": [-0.5, 1.5]},
        "fisher": {"samples": 4},
    },
    "evaluate": {"n_prompts": 16, "validation_size": 4, "max_new_tokens": 12},
    "plots": {"samples_in_table": 2},
}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2", *args],
        capture_output=True,
        text=True,
        cwd=workdir,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("merge-workflow")
    (workdir / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "tasks": {"text": TEXT}}, sort_keys=False))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir


def test_recipes_fishers_and_one_curve_per_method(run):
    results = run / "results" / "text"
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    scores = scores[scores["split"] == "test"]
    kinds = scores.drop_duplicates("model").groupby("kind")["model"].apply(sorted).to_dict()
    assert kinds["soup"] == ["soup-sentiment@0.5+concise@0.5"]
    assert kinds["fisher"] == ["fisher-sentiment@0.5+concise@0.5"]
    assert kinds["task_arithmetic"] == [
        "task_arithmetic-sentiment@-0.5+concise@1.5",
        "task_arithmetic-sentiment@0.5+concise@0.5",
        "task_arithmetic-sentiment@1.5+concise@-0.5",
    ]
    # Every soup, of every method, is a recipe; each expert has its Fisher.
    for directory in [results / "soups" / "sentiment@0.5+concise@0.5", *(results / "merges").glob("*/*")]:
        assert [p.name for p in directory.iterdir() if not p.name.startswith(".")] == ["recipe.json"], directory
    for reward in ("sentiment", "concise"):
        assert (results / "fisher" / reward / "adapter_model.safetensors").exists()

    summary = json.loads((results / "summary.json").read_text())
    assert set(summary["methods"]) == {"fisher", "task_arithmetic"}
    assert summary["models"]["methods"] == {"fisher": 1, "task_arithmetic": 3}
    assert set(summary["pairs"][0]["hypervolume"]) >= {"rs", "morl", "fisher", "task_arithmetic"}
    # LMC of the soups uses the λ on the simplex only (the extrapolated points are not soups of it).
    assert summary["lmc"]["n_points"] == 1 and summary["methods"]["task_arithmetic"]["lmc"]["n_points"] == 1

    # The front draws the three curves; the task-arithmetic curve runs beyond both experts.
    drawn = plot_front(scores, ["sentiment", "concise"], ["sentiment", "concise"], run / "front-check.png")
    wide = scores.pivot(index="model", columns="reward", values="mean")
    point = lambda m: (wide.loc[m, "sentiment"], wide.loc[m, "concise"])  # noqa: E731
    method_curve = drawn["merge method task_arithmetic (λ)"]
    assert method_curve[0] == pytest.approx(point("task_arithmetic-sentiment@-0.5+concise@1.5"))
    assert method_curve[-1] == pytest.approx(point("task_arithmetic-sentiment@1.5+concise@-0.5"))
    assert point("expert-sentiment") == pytest.approx(method_curve[-2])
    assert drawn["merge method fisher (λ)"][1] == pytest.approx(point("fisher-sentiment@0.5+concise@0.5"))
    assert (results / "figures" / "front-sentiment-concise.png").exists()


def test_a_recipe_soup_scores_like_the_full_soup(run, tmp_path):
    """The same soup stored in full (merge.store: full) gives the same samples, hence the same scores."""
    from rewarded_soups.tasks import text

    results = run / "results" / "text"
    config = yaml.safe_load((run / "config.yaml").read_text())
    from rewarded_soups.config import validate_config

    task = validate_config(config)["tasks"]["text"]
    experts = [results / "experts" / "sentiment", results / "experts" / "concise"]
    settings = {**task, "merge": {**task["merge"], "method": "linear", "options": {}, "store": "full"}}
    stages.merge(text, results / "pretrain" / "model", experts, [0.5, 0.5], tmp_path / "full", settings)
    stages.generate(
        text, results / "pretrain" / "model", tmp_path / "full", {"test": tmp_path / "samples"}, task, seed=0, threads=1
    )
    recipe_samples = read_samples(results / "samples" / "soup-sentiment@0.5+concise@0.5" / "test").records
    assert read_samples(tmp_path / "samples").records == recipe_samples


def test_changing_a_method_option_reruns_only_that_methods_models(run, tmp_path):
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["tasks"]["text"]["merge"]["fisher"]["fisher_floor"] = 1e-3
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(run, "--dry-run", "--configfile", str(changed))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "rule merge_method:" in out and "method=fisher" in out
    assert "method=task_arithmetic" not in out and "rule soup:" not in out and "rule fisher:" not in out


def _planned(workdir: Path) -> list[str]:
    """'rule wildcards' of every job a dry run plans."""
    import re

    out = snakemake(workdir, "--dry-run").stdout
    return re.findall(r"^rule (\w+):", out, flags=re.M)


def test_a_soup_grid_builds_every_soup_of_a_pair_once_and_adding_a_lambda_reruns_no_existing_soup(tmp_path):
    """merge.one_pass: one soup_grid job reads each expert once and the soup jobs move their soups into place;
    the soups equal the per-soup merges bit for bit; a new λ builds only the new soup, and nothing computed
    from the existing ones runs again."""
    text = {**TEXT, "merge": {"grid_points": 4}}  # λ 1/3, 2/3 and MORL's μ = 1/2: three soups of the same experts
    grid_run, plain_run = tmp_path / "grid", tmp_path / "plain"
    for workdir, one_pass in ((grid_run, True), (plain_run, False)):
        workdir.mkdir()
        task = {**text, "merge": {**text["merge"], "one_pass": one_pass}}
        (workdir / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "tasks": {"text": task}}, sort_keys=False))
        result = snakemake(workdir, "results/text/scores.csv")
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    soups = sorted(p.name for p in (grid_run / "results/text/soups").iterdir())
    assert len(soups) == 3
    grid_log = (grid_run / "logs/text/soup-grids/sentiment+concise.log").read_text()
    assert "3 of 3 soups to build" in grid_log
    for soup in soups:
        assert "taken from the soup grid" in (grid_run / f"logs/text/soups/{soup}.log").read_text()
        for file in ("adapter_model.safetensors", "adapter_config.json"):
            got = (grid_run / "results/text/soups" / soup / file).read_bytes()
            assert got == (plain_run / "results/text/soups" / soup / file).read_bytes(), (soup, file)
    assert (grid_run / "results/text/scores.csv").read_bytes() == (plain_run / "results/text/scores.csv").read_bytes()
    left = [p.name for p in (grid_run / "results/text/soup-grids/sentiment+concise").iterdir()]
    assert left == [".snakemake_timestamp"]  # every soup taken; Snakemake's date of the grid stays

    # grid_points 7 keeps λ 1/3, 1/2 and 2/3 (same names) and adds 1/6 and 5/6.
    config = yaml.safe_load((grid_run / "config.yaml").read_text())
    config["tasks"]["text"]["merge"]["grid_points"] = 7
    (grid_run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    planned = _planned(grid_run)
    assert planned.count("soup") == 2 and planned.count("soup_grid") == 1, planned
    assert planned.count("generate") == 2  # the new soups only: the existing ones are up to date
    result = snakemake(grid_run, "results/text/scores.csv")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "2 of 5 soups to build" in (grid_run / "logs/text/soup-grids/sentiment+concise.log").read_text()
