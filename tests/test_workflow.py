"""End to end: the reduced config through snakemake in a temporary directory.

Runs the whole DAG once (about a minute on 2 CPU cores), checks every
artifact, then checks staleness with dry runs: a no-op rerun plans nothing,
and changing one reward's parameter plans exactly the branch that depends on it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rewarded_soups.samples import read as read_samples

ROOT = Path(__file__).resolve().parent.parent
# The run works on its own copy of the workflow (workdir/workflow), so that a test may edit the code.
COPY_IGNORED = (".git", ".venv", "results", "logs", "benchmarks", ".snakemake", "__pycache__", "*.egg-info", ".*_cache")

pytestmark = pytest.mark.e2e
ALL_TASKS = ("text", "locomotion", "image", "captioning", "grounding", "vqa")


def snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    copy = workdir / "workflow" / "Snakefile"
    snakefile = copy if copy.exists() else ROOT / "Snakefile"
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--cores", "2"]
    return subprocess.run(
        # Targets and flags first: --configfile takes every word after it.
        [*command, *args, "--directory", str(workdir), "--configfile", str(config)],
        capture_output=True,
        text=True,
        cwd=workdir,
    )


def planned_jobs(workdir: Path, config: Path) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans, 'all' excluded."""
    result = snakemake(workdir, config, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs, rule = [], None
    for line in (result.stdout + result.stderr).splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line.strip()):
            rule = m.group(1)
            if rule != "all":
                jobs.append((rule, ""))
        elif rule and rule != "all" and (m := re.match(r"^wildcards: (.*)$", line.strip())):
            jobs[-1] = (rule, m.group(1))
    return jobs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copytree(ROOT, workdir / "workflow", ignore=shutil.ignore_patterns(*COPY_IGNORED))
    config = workdir / "config.yaml"
    shutil.copy(ROOT / "tests" / "data" / "tiny.yaml", config)
    result = snakemake(workdir, config)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir, config


def test_every_artifact_is_written(run):
    workdir, _ = run
    results = workdir / "results" / "text"
    both = pd.read_csv(results / "scores.csv", keep_default_na=False)
    assert list(both.columns) == ["model", "kind", "weights", "reward", "split", "mean", "std", "n"]
    assert len(both) == 5 * 3 * 2  # init, 2 experts, 1 soup (grid of 3), 1 MORL; x 3 scorers x 2 splits
    scores = both[both["split"] == "test"]
    assert set(scores["kind"]) == {"init", "expert", "soup", "morl"}
    assert set(scores["reward"]) == {"sentiment", "concise", "perplexity"}
    assert (scores["n"] == 16).all() and (both.loc[both["split"] == "validation", "n"] == 8).all()
    # Validation prompts are held out from the test prompts (and from training: the data's validation share).
    samples = {
        s: (results / "samples" / "init" / s / "samples.jsonl").read_text().splitlines() for s in ("test", "validation")
    }
    prompts = {s: {json.loads(line)["prompt"] for line in lines} for s, lines in samples.items()}
    assert len(samples["validation"]) == 8 and not prompts["test"] & prompts["validation"]

    summary = json.loads((results / "summary.json").read_text())
    lmc = summary["lmc"]
    assert lmc["n_points"] == 1 and len(lmc["classes"]) == 1 and lmc["classes"][0] in ("holds", "within noise", "fails")
    # The one soup's margins as summary.json reports them, recomputed from scores.csv.
    wide = scores.pivot(index="model", columns="reward", values="mean")
    point = lmc["points"][0]
    line = 0.5 * (wide.loc["expert-sentiment"] + wide.loc["expert-concise"])
    for reward in ("sentiment", "concise"):
        assert point["margins"][reward] == pytest.approx(wide.loc[point["model"], reward] - line[reward], abs=2e-6)
    assert lmc["holds_fraction"] == float(lmc["classes"] == ["holds"])
    # Per-sample scores (sample i = input i for every model) and the paired intervals built from them.
    per_sample = pd.read_csv(results / "scores_per_sample.csv.gz")
    assert len(per_sample) == 5 * 3 * (16 + 8)
    mean = per_sample.query("model == 'init' and reward == 'concise' and split == 'test'")["value"].mean()
    assert mean == pytest.approx(wide.loc["init", "concise"], abs=2e-6)
    paired = summary["paired"]
    margin = paired["lmc"]["points"][0]["margins"]["concise"]
    assert margin["estimate"] == pytest.approx(point["margins"]["concise"], abs=1e-5)
    assert margin["low"] <= margin["estimate"] <= margin["high"]
    assert paired["lmc"]["points"][0]["class"] in ("holds", "undecided", "fails")
    assert {e["expert"] for e in paired["experts"]} == {"expert-sentiment", "expert-concise"}
    assert set(paired["hypervolume"]) == {"rs", "morl", "rs_minus_morl"}
    assert lmc["holds_within_noise_fraction"] == float(lmc["classes"] != ["fails"])
    assert len(summary["hypervolume"]["reference"]) == 2
    assert summary["pretrain"]["valid_perplexity"] > 1
    assert set(summary["timings"]) == {
        "pretrain",
        "experts/sentiment",
        "experts/concise",
        "morl/sentiment@0.5+concise@0.5",
    }
    # Lemma 1 for the MORL μ, λ chosen on validation; Figure 8 over the pool {2 experts, MORL}.
    (pref,) = summary["preferences"]
    assert pref["preference"] == {"sentiment": 0.5, "concise": 0.5} and pref["selected"]["selected_on"] == "validation"
    assert pref["morl"]["model"] == "morl-sentiment@0.5+concise@0.5"
    assert pref["at_preference"]["model"] == "soup-sentiment@0.5+concise@0.5"
    chosen = pref["selected"]["model"]
    assert pref["selected"]["test"]["sentiment"] == pytest.approx(wide.loc[chosen, "sentiment"], abs=2e-6)
    (figure,) = summary["advantage"]
    assert figure["M"] == [1, 2, 3] and len(figure["morl"]) == 3
    assert figure["morl_pool"] == ["expert-sentiment", "expert-concise", "morl-sentiment@0.5+concise@0.5"]
    assert (results / "figures" / "advantage-sentiment-concise.png").read_bytes()[:4] == b"\x89PNG"
    # The same answer from the command line, from the cached scores.
    answer = subprocess.run(
        [sys.executable, "-m", "rewarded_soups", "select", "--task", "text", "--preference", "sentiment=1,concise=1"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert answer.returncode == 0, answer.stderr
    assert f"chosen on validation: {chosen} " in answer.stdout and "not on disk" not in answer.stdout

    for name in ("front-sentiment-concise.png", "lambda_curves-sentiment-concise.png"):
        png = results / "figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    table = (results / "figures" / "samples.md").read_text()
    assert "soup-sentiment@0.5+concise@0.5" in table and "### Prompt 2" in table

    for expert in ("sentiment", "concise"):
        assert (results / "experts" / expert / "adapter_model.safetensors").exists()
    assert not list(results.rglob("*.bin")) and not list(results.rglob("*.pt"))
    assert (workdir / "logs" / "text" / "pretrain.log").stat().st_size > 0
    assert (workdir / "benchmarks" / "text" / "pretrain.tsv").exists()


def test_locomotion_artifacts(run):
    workdir, _ = run
    results = workdir / "results" / "locomotion"
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    assert set(scores["kind"]) == {"init", "expert", "soup", "morl"}
    assert set(scores["reward"]) == {"risky", "cautious", "action_cost"}
    assert len(scores) == 5 * 3 * 2 and (scores["n"] == 4).all()
    scores = scores[scores["split"] == "test"]
    wide = scores.pivot(index="model", columns="reward", values="mean")
    # Both rewards share the forward and alive terms: risky − cautious is exactly Σa² (α 0 vs 1).
    assert ((wide["risky"] - wide["cautious"]) - wide["action_cost"]).abs().max() < 1e-3  # scores.csv rounds
    summary = json.loads((results / "summary.json").read_text())
    assert summary["lmc"]["n_points"] == 1 and len(summary["lmc"]["classes"]) == 1 and summary["hypervolume"]["rs"] > 0
    assert (results / "figures" / "front-risky-cautious.png").read_bytes()[:4] == b"\x89PNG"
    viewers = sorted(p.name for p in (results / "figures" / "qualitative").glob("*.html"))
    assert viewers == sorted(
        f"{m}.html" for m in ("init", "expert-risky", "expert-cautious", "soup-risky@0.5+cautious@0.5")
    )
    assert "brax" in (results / "figures" / "qualitative" / "init.html").read_text()
    assert "| episode | steps |" in (results / "figures" / "samples.md").read_text()
    for directory in ("pretrain/model", "experts/risky", "soups/risky@0.5+cautious@0.5"):
        assert (results / directory / "policy.safetensors").exists()
    assert not list(results.rglob("*.pkl")) and not list(results.rglob("*.pickle"))


def test_image_artifacts(run):
    workdir, _ = run
    results = workdir / "results" / "image"
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    assert set(scores["kind"]) == {"init", "expert", "soup", "morl"}
    assert set(scores["reward"]) == {"colourful", "contrast", "smooth"}
    assert len(scores) == 5 * 3 * 2
    assert list(scores.groupby("split")["n"].unique().map(list)) == [[6], [4]]  # test, validation
    summary = json.loads((results / "summary.json").read_text())
    assert summary["lmc"]["n_points"] == 1 and len(summary["lmc"]["classes"]) == 1 and summary["hypervolume"]["rs"] > 0
    assert set(summary["timings"]) >= {"pretrain", "experts/colourful", "experts/contrast"}
    grid = results / "figures" / "qualitative" / "grid.png"
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and grid.stat().st_size > 10_000
    for directory in ("pretrain/model", "experts/colourful", "soups/colourful@0.5+contrast@0.5"):
        assert list((results / directory / "unet").glob("*.safetensors")), directory
    assert (results / "pretrain" / "model" / "text_encoder" / "model.safetensors").exists()
    assert not list(results.rglob("*.bin")) and not list(results.rglob("*.pkl"))


def test_captioning_artifacts(run):
    workdir, _ = run
    results = workdir / "results" / "captioning"
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    assert set(scores["kind"]) == {"init", "expert", "soup", "morl", "ensemble", "wise"}
    assert set(scores["reward"]) == {"bleu1", "bleu4", "rouge", "meteor", "cider"}
    # θ0, 5 experts, 5 soups (pair λ=0.5, uniform, clockwise M=2..4), MORL, 1 ensemble, 2 WiSE; × 5 metrics.
    assert len(scores) == 15 * 5 * 2 and (scores["n"] == 8).all()  # validation: all of data.valid_images
    assert ((scores["mean"] >= 0) & (scores["mean"] <= 10)).all()
    summary = json.loads((results / "summary.json").read_text())
    pair = summary["pairs"][0]
    assert pair["rewards"] == ["bleu1", "rouge"] and pair["lmc"]["n_points"] == 1
    assert set(pair["hypervolume"]) >= {"rs", "morl", "ensemble", "wise"}
    assert summary["uniform_soup"]["model"] == "soup-bleu1@0.2+bleu4@0.2+rouge@0.2+meteor@0.2+cider@0.2"
    spider = results / "figures" / "spider.png"
    assert spider.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and spider.stat().st_size > 20_000
    assert "| expert-bleu1 |" in (results / "figures" / "samples.md").read_text()
    ensemble = json.loads((results / "ensembles" / "bleu1@0.5+rouge@0.5" / "ensemble.json").read_text())
    assert ensemble["weights"] == [0.5, 0.5] and len(ensemble["members"]) == 2
    for directory in ("pretrain/model", "experts/meteor", "wise/rouge@0.5", "morl/bleu1@0.5+rouge@0.5"):
        assert (results / directory / "model.safetensors").exists(), directory


def test_grounding_artifacts(run):
    workdir, _ = run
    results = workdir / "results" / "grounding"
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    assert set(scores["kind"]) == {"init", "expert", "soup", "morl", "wise"}
    assert set(scores["reward"]) == {"small", "medium", "large", "iou"}
    # Each size's accuracy is over the targets of that size only; the IoU metric over all of them.
    test = scores[scores["split"] == "test"]
    sizes = read_samples(results / "samples" / "init" / "test").column("size")
    for reward in ("small", "medium", "large"):
        assert (test.loc[test["reward"] == reward, "n"] == sizes.count(reward)).all(), reward
    assert (test.loc[test["reward"] == "iou", "n"] == 12).all()
    # θ0, 3 experts, the small–large soup and the uniform soup, MORL, 2 × 1 WiSE points.
    assert set(test["model"]) >= {"soup-small@0.5+large@0.5", "soup-small@0.3333+medium@0.3333+large@0.3333"}
    assert len(set(test["model"])) == 9
    summary = json.loads((results / "summary.json").read_text())
    assert summary["pairs"][0]["rewards"] == ["small", "large"]
    assert (results / "figures" / "spider.png").read_bytes()[:4] == b"\x89PNG"
    assert (results / "figures" / "qualitative" / "boxes.png").read_bytes()[:4] == b"\x89PNG"
    assert "IoU" in (results / "figures" / "samples.md").read_text()


def test_vqa_artifacts(run):
    workdir, _ = run
    results = workdir / "results" / "vqa"
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    assert set(scores["kind"]) == {"init", "expert", "soup", "morl"}
    assert set(scores["reward"]) == {"bleu1", "meteor", "accuracy"}
    assert ((scores["mean"] >= 0) & (scores["mean"] <= 1)).all()
    records = read_samples(results / "samples" / "expert-bleu1" / "test").records
    assert len(records) == 8 and all(r["question"] and len(r["references"]) == 4 for r in records)
    summary = json.loads((results / "summary.json").read_text())
    assert summary["lmc"]["n_points"] == 1 and len(summary["hypervolume"]["reference"]) == 2
    assert (results / "figures" / "front-bleu1-meteor.png").exists()


def test_noop_rerun_plans_nothing(run):
    workdir, config = run
    assert planned_jobs(workdir, config) == []


def test_changing_one_reward_reruns_only_its_branch(run):
    workdir, config = run
    changed = workdir / "changed.yaml"
    data = yaml.safe_load(config.read_text())
    data["tasks"]["text"]["rewards"]["concise"]["max_chars"] = 40
    changed.write_text(yaml.safe_dump(data, sort_keys=False))
    jobs = planned_jobs(workdir, changed)
    rules = [rule for rule, _ in jobs]
    assert "pretrain" not in rules
    assert [w for r, w in jobs if r == "expert"] == ["task=text, reward=concise"]
    assert rules.count("morl") == 1 and rules.count("soup") == 1
    # Regenerated: the three models that contain the concise expert; never θ0 or the other expert.
    new_models = ("expert-concise", "soup-sentiment@0.5+concise@0.5", "morl-sentiment@0.5+concise@0.5")
    generated = sorted(w for r, w in jobs if r == "generate")
    assert generated == sorted(f"task=text, model={m}" for m in new_models)
    # Rescored: every model's rule-based scorers (concise is one: 5 jobs), and perplexity (a model of its own)
    # of the 3 new models only.
    scored = sorted(w for r, w in jobs if r == "score")
    assert scored == sorted(
        [f"task=text, model={m}, scorers=rule-based" for m in ("init", "expert-sentiment")]
        + [f"task=text, model={m}, scorers={s}" for m in new_models for s in ("rule-based", "perplexity")]
    )
    assert sorted(set(rules) - {"expert", "morl", "soup", "generate", "score"}) == [
        "advantage",
        "explorer",
        "figures",
        "samples_table",
        "scores_table",
        "summary",
    ]
    print(f"staleness: {len(jobs)} jobs planned after changing concise.max_chars: {sorted(set(rules))}")


def _planned_after_edit(run, module: str, old: str, new: str) -> list[tuple[str, str]]:
    """The jobs a dry run plans once ``old`` is replaced by ``new`` in the copy's ``module``; the edit is undone."""
    workdir, config = run
    path = workdir / "workflow" / module
    text = path.read_text()
    assert old in text, (module, old)
    path.write_text(text.replace(old, new, 1))
    try:
        return planned_jobs(workdir, config)
    finally:
        path.write_text(text)


def test_editing_a_plotting_function_reruns_only_the_figures(run):
    jobs = _planned_after_edit(run, "rewarded_soups/plots.py", "def plot_front(", "EDITED = True\n\n\ndef plot_front(")
    assert {rule for rule, _ in jobs} == {"figures", "spider", "advantage"}
    assert {w.split(",")[0] for r, w in jobs if r == "figures"} == {f"task={t}" for t in ALL_TASKS}


def test_editing_a_tasks_training_code_reruns_its_training_and_downstream_only(run):
    jobs = _planned_after_edit(
        run, "rewarded_soups/tasks/text/rl.py", "def finetune(", "EDITED = True\n\n\ndef finetune("
    )
    assert jobs and all(w.startswith("task=text") for _, w in jobs if w)
    rules = [rule for rule, _ in jobs]
    assert "pretrain" not in rules  # θ0's code did not change
    assert sorted(w for r, w in jobs if r == "expert") == ["task=text, reward=concise", "task=text, reward=sentiment"]
    assert rules.count("morl") == 1 and rules.count("soup") == 1
    assert {"generate", "score", "scores_table", "summary", "figures"} <= set(rules)
    # Comments only: the code's syntax tree is unchanged, nothing reruns.
    assert _planned_after_edit(run, "rewarded_soups/tasks/text/rl.py", "def finetune(", "# note\ndef finetune(") == []


def test_code_digests_follow_functions_not_files_nor_docstrings(run):
    # A docstring reworded: the code's behaviour cannot have changed, nothing reruns.
    assert (
        _planned_after_edit(
            run,
            "rewarded_soups/tasks/text/rl.py",
            '"""Train the run\'s LoRA adapter',
            '"""Reworded: train the run\'s LoRA adapter',
        )
        == []
    )
    # One plotting function's body: only the jobs that draw with it (spider maps), not every figure.
    jobs = _planned_after_edit(
        run,
        "rewarded_soups/plots.py",
        '    shapes compare models rather than metric scales.\n    """\n',
        ('    shapes compare models rather than metric scales.\n    """\n    edited = True  # noqa: F841\n'),
    )
    assert {rule for rule, _ in jobs} == {"spider"}
    # A generic module's function that no job runs (claiming GPUs happens around the job, not in it).
    assert (
        _planned_after_edit(
            run,
            "rewarded_soups/gpus.py",
            "    devices = machine_devices()\n",
            ("    devices = list(machine_devices())\n"),
        )
        == []
    )


def test_editing_a_reward_module_reruns_only_what_used_its_rewards(run):
    jobs = _planned_after_edit(
        run, "rewarded_soups/rewards/image.py", "_LUMA = np.array(", "EDITED = 1\n_LUMA = np.array("
    )
    # The module holds the image task's three rewards: its experts and MORL retrain and every image score is
    # redone; θ0 and the other tasks are untouched.
    assert jobs and all(w.startswith("task=image") for _, w in jobs if w)
    assert "pretrain" not in [r for r, _ in jobs]
    assert sorted(w for r, w in jobs if r == "expert") == [
        "task=image, reward=colourful",
        "task=image, reward=contrast",
    ]


def test_changing_the_cautious_penalty_reruns_only_its_locomotion_branch(run):
    workdir, config = run
    changed = workdir / "changed_locomotion.yaml"
    data = yaml.safe_load(config.read_text())
    data["tasks"]["locomotion"]["rewards"]["cautious"]["ctrl_cost"] = 2.0
    changed.write_text(yaml.safe_dump(data, sort_keys=False))
    jobs = planned_jobs(workdir, changed)
    assert all("task=locomotion" in w for r, w in jobs if w)
    assert [w for r, w in jobs if r == "expert"] == ["task=locomotion, reward=cautious"]
    assert "pretrain" not in [r for r, _ in jobs]
    generated = sorted(w.split("model=")[1] for r, w in jobs if r == "generate")
    assert generated == sorted(["expert-cautious", "soup-risky@0.5+cautious@0.5", "morl-risky@0.5+cautious@0.5"])


def test_changing_an_image_metric_only_rescores(run):
    workdir, config = run
    changed = workdir / "changed_image.yaml"
    data = yaml.safe_load(config.read_text())
    data["tasks"]["image"]["metrics"]["smooth"]["scale"] = 2.0
    changed.write_text(yaml.safe_dump(data, sort_keys=False))
    jobs = planned_jobs(workdir, changed)
    # The image task's scorers are all rule-based: one job per model scores them.
    assert sorted(w for r, w in jobs if r == "score") == sorted(
        f"task=image, model={m}, scorers=rule-based"
        for m in (
            "init",
            "expert-colourful",
            "expert-contrast",
            "soup-colourful@0.5+contrast@0.5",
            "morl-colourful@0.5+contrast@0.5",
        )
    )
    assert {r for r, _ in jobs} == {"score", "scores_table", "summary", "figures", "advantage", "explorer"}


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_scores(run, tmp_path):
    """Train every θ0 and expert again: θ0's scores on every reward and each expert's on its own are identical.

    The randomness is in pre-training, RL and sampling; soups and MORL run the same code, so
    rerunning them too (the whole tiny run) doubled the test's time for no further check.
    """
    workdir, config = run
    shutil.copy(config, tmp_path / "config.yaml")
    init = [str(p.relative_to(workdir)) for p in workdir.glob("results/*/scores/init/*.json")]
    experts = [str(p.relative_to(workdir)) for p in workdir.glob("results/*/scores/expert-*/rule-based.json")]
    # 2 + 2 + 2 + 5 + 3 + 2 experts, on every rule-based reward (their own among them); θ0's score jobs:
    # text's rule-based scorers and perplexity, and one job of rule-based scorers for each other task.
    assert len(experts) == 16 and len(init) == 7, (experts, init)
    result = snakemake(tmp_path, tmp_path / "config.yaml", *init, *experts)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not (tmp_path / "results/text/soups").exists()  # only what the targets need ran
    for target in init + experts:
        assert (tmp_path / target).read_text() == (workdir / target).read_text(), target


def test_bad_config_fails_before_any_job_and_names_the_key(run, tmp_path):
    workdir, config = run
    data = yaml.safe_load(config.read_text())
    data["tasks"]["text"]["finetune"]["lerning_rate"] = 0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    before = sorted(p.relative_to(workdir) for p in (workdir / "results").rglob("*"))
    result = snakemake(workdir, bad, "--dry-run")
    assert result.returncode != 0
    assert "lerning_rate" in result.stdout + result.stderr
    assert sorted(p.relative_to(workdir) for p in (workdir / "results").rglob("*")) == before


ANALYSIS_RULES = {"summary", "figures", "advantage", "samples_table", "qualitative", "spider", "explorer", "regenerate"}

# Where the front point of a model is on the page, for a real mouse click (Plotly's axes map data to pixels).
POINT_ON_FRONT = """name => {
  const gd = document.getElementById("front"), layout = gd._fullLayout, box = gd.getBoundingClientRect();
  for (const trace of gd._fullData) {
    const i = (trace.customdata || []).indexOf(name);
    if (i >= 0) return [box.left + layout._size.l + layout.xaxis.l2p(trace.x[i]),
                        box.top + layout._size.t + layout.yaxis.l2p(trace.y[i])];
  }
  return null;
}"""


def _set_slider(page, selector: str, value: int) -> None:
    page.eval_on_selector(selector, f"el => {{ el.value = '{value}'; el.dispatchEvent(new Event('input')); }}")


def test_explorers_open_offline_and_show_the_cached_scores_and_samples(run, tmp_path):
    """Each task's explorer in a real browser: λ slider, preference slider, a click on the front; what it shows
    equals scores.csv, the per-sample scores and the samples files; no request leaves file://, no console error.
    Screenshots go to $TEST_ARTIFACTS (else the test's temporary folder)."""
    from browser import opened

    from rewarded_soups.selection import select

    workdir, _ = run
    artifacts = Path(os.environ.get("TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    clicked = 0
    for task in ALL_TASKS:
        results = workdir / "results" / task
        html = results / "explorer.html"
        assert html.stat().st_size < 15e6
        scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
        test = scores[scores["split"] == "test"].set_index(["model", "reward"])["mean"]
        per_sample = pd.read_csv(results / "scores_per_sample.csv.gz")
        per_sample = per_sample[per_sample["split"] == "test"].set_index(["model", "reward", "sample"])["value"]
        with opened(html) as (page, errors, requests):
            # The λ slider's middle position: a soup of the first pair.
            _set_slider(page, "#lambda", 1)
            chosen = page.get_attribute("#selected-name", "data-model")
            assert chosen.startswith("soup-"), (task, chosen)
            rows = page.query_selector_all("#selected-scores tr[data-reward]")
            assert len(rows) == len(scores["reward"].unique())
            for row in rows:
                reward = row.get_attribute("data-reward")
                shown = row.query_selector("td.score").get_attribute("data-value")
                assert float(shown) == pytest.approx(float(test[(chosen, reward)]), rel=1e-12), (task, reward)
            # The chosen model's outputs and their per-sample rewards are the samples file's and the scores'.
            records = read_samples(results / "samples" / chosen / "test").records
            cell = page.query_selector(f"[id='out-0-{chosen}']")
            shown = cell.inner_text() + page.inner_text("#samples-table tr:nth-child(2) td:first-child")
            for key, value in records[0].items():  # every text field, as the model's output or as the input
                if isinstance(value, str) and value.strip():
                    assert value.strip() in shown, (task, key, value)
            for span in cell.query_selector_all(".sample-reward"):
                reward, value = span.get_attribute("data-reward"), span.get_attribute("data-value")
                expected = per_sample.get((chosen, reward, 0))
                if value:
                    assert float(value) == pytest.approx(float(expected), rel=1e-12), (task, reward)
            # The preference slider: Lemma 1's choice is `select`'s.
            a, b = page.eval_on_selector("#pair", "el => el.options[el.selectedIndex].text").split(" – ")
            _set_slider(page, "#mu", 4)
            lemma = page.get_attribute("#lemma-table a.pick", "data-model")
            assert lemma == select(scores, {a: 0.2, b: 0.8}, None)["selected"]["model"], task
            # A real click on the front chooses a model at that point: one away from the chosen soup, where the task
            # has one (the tiny run's models often coincide).
            point = {m: (test.get((m, a)), test.get((m, b))) for m in scores["model"].unique()}
            target = next((m for m in point if point[m] != point[chosen]), "init")
            x, y = page.evaluate(POINT_ON_FRONT, target)
            page.mouse.move(x, y)
            page.mouse.click(x, y)
            if point[target] != point[chosen]:
                page.wait_for_function(f"document.getElementById('selected-name').dataset.model !== '{chosen}'")
                clicked += 1
            assert point[page.get_attribute("#selected-name", "data-model")] == point[target], task
            page.screenshot(path=str(artifacts / f"explorer-{task}.png"), full_page=True)
        assert not errors, (task, errors)
        assert not requests, (task, requests)
    assert clicked, "no task had two models at different points to click between"


def test_plot_settings_change_no_training_or_evaluation(run, tmp_path):
    workdir, config = run
    data = yaml.safe_load(config.read_text())
    for task in data["tasks"].values():
        task["plots"] = {"format": "svg", "dpi": 80, "qualitative": [0.0, 1.0]}
        task["analysis"] = {"reference": [-100.0] * len(task["rewards"])}
    data["tasks"]["text"]["analysis"]["axes"] = ["concise", "sentiment"]
    changed = tmp_path / "plots.yaml"
    changed.write_text(yaml.safe_dump(data, sort_keys=False))
    rules = {rule for rule, _ in planned_jobs(workdir, changed)}
    assert rules and rules <= ANALYSIS_RULES, rules


def test_report_has_every_task_with_captions(run):
    workdir, config = run
    report = workdir / "report.html"
    result = snakemake(workdir, config, "--report", str(report))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = report.read_text()
    # Captions are rendered per task (the Jinja template names the task).
    for task in ALL_TASKS:
        assert f'Pareto front</strong> of task <tt class=\\"docutils literal\\">{task}</tt>' in html, task
    for text in ("Hypothesis 1 (linear", "Qualitative samples", "rewards against", "Spider maps", "Front explorer"):
        assert text in html, text


def test_regenerate_rebuilds_figures_from_cached_scores_only(run):
    """Last in this module: it deletes the figures (and rebuilds them)."""
    workdir, config = run
    for figures in (workdir / "results").glob("*/figures"):
        shutil.rmtree(figures)
    for explorer in (workdir / "results").glob("*/explorer.html"):
        explorer.unlink()
    result = snakemake(workdir, config, "regenerate", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = re.findall(r"^(?:local)?rule (\w+):", result.stdout + result.stderr, flags=re.M)
    expected = {"figures", "advantage", "samples_table", "qualitative", "spider", "explorer", "regenerate"}
    assert set(jobs) == expected, jobs
    result = snakemake(workdir, config, "regenerate")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (workdir / "results" / "locomotion" / "figures" / "front-risky-cautious.png").exists()
    assert planned_jobs(workdir, config) == []


def test_a_partial_configfile_elsewhere_fails_saying_where_config_yaml_was_looked_for(tmp_path):
    partial = tmp_path / "mine.yaml"
    partial.write_text("tasks:\n  text:\n    rewards:\n      sentiment: {kind: vader}\n")
    result = snakemake(tmp_path, partial, "--dry-run")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    line = next(line for line in out.splitlines() if line.startswith("invalid configuration"))
    assert "tasks.text: 'kind' is a required property" in line and f"no config.yaml in {tmp_path}" in line
    # With --replace-workflow-config already given, the error does not suggest giving it.
    result = snakemake(tmp_path, partial, "--dry-run", "--replace-workflow-config")
    out = result.stdout + result.stderr
    line = next(line for line in out.splitlines() if line.startswith("invalid configuration"))
    assert "tasks.text: 'kind' is a required property" in line and "--replace-workflow-config" not in line


def test_a_yaml_syntax_error_in_config_yaml_names_the_file_line_and_column(tmp_path):
    """The workflow's own config.yaml (the Snakefile's configfile:, read where Snakemake runs); a --configfile is
    parsed by Snakemake before the workflow and keeps Snakemake's message."""
    (tmp_path / "config.yaml").write_text("seed: 0\ntasks:\n  text:\n\tkind: text\n")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--dry-run"]
    result = subprocess.run([*command, "--directory", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0
    assert "config.yaml:4:1: not valid YAML" in result.stdout + result.stderr


def test_a_partial_configfile_warns_that_config_yaml_rewards_stay(run):
    workdir, _ = run
    mine = workdir / "mine.yaml"
    mine.write_text("tasks:\n  text:\n    rewards:\n      sentiment: {kind: vader}\n")
    # Snakemake merges it over the tiny config.yaml: concise stays, and the other tasks run too.
    result = snakemake(workdir, mine, "--dry-run")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "warning: tasks.text.rewards: your --configfile lists ['sentiment']" in out
    assert "--replace-workflow-config" in out


# Last in the module: they damage results of the run (and repair them).
def test_a_corrupted_expert_is_reported_and_never_merged(run):
    workdir, config = run
    expert = Path("results/text/experts/concise")
    adapter = workdir / expert / "adapter_model.safetensors"
    original = adapter.read_bytes()
    scores = (workdir / "results/text/scores.csv").read_bytes()
    soup = "results/text/soups/sentiment@0.5+concise@0.5"
    for attempt, damaged in enumerate((original[: len(original) // 2], bytes(reversed(original)))):
        adapter.write_bytes(damaged)  # truncated; same-size garbage
        # Snakemake sees nothing to do: the corruption is after the job and keeps the directory's time.
        assert planned_jobs(workdir, config) == []
        check = subprocess.run(
            [sys.executable, "-m", "rewarded_soups", "verify"], capture_output=True, text=True, cwd=workdir
        )
        assert check.returncode == 1, check.stdout
        assert f"CORRUPTED {expert} (rule expert)" in check.stdout
        assert f"rebuild: snakemake --forcerun {expert}" in check.stdout
        # The refused --forcerun below deleted the soup first: verify lists what the DAG expects and is gone.
        assert (f"MISSING {soup} (rule soup)" in check.stdout) is (attempt == 1), check.stdout
        forced = snakemake(workdir, config, soup, "--forcerun", soup)
        assert forced.returncode != 0
        assert f"{expert} was modified or corrupted after it was written" in forced.stdout + forced.stderr
        assert "inf, nan" not in forced.stdout + forced.stderr
        assert (workdir / "results/text/scores.csv").read_bytes() == scores  # nothing downstream touched
    adapter.write_bytes(original)
    repaired = snakemake(workdir, config)
    assert repaired.returncode == 0, repaired.stdout[-3000:] + repaired.stderr[-3000:]
    assert planned_jobs(workdir, config) == []
    assert (workdir / "results/text/scores.csv").read_bytes() == scores
    # Nothing downstream needed the soup again (its samples and scores are up to date), so the repaired run
    # did not rebuild it: verify still lists it, with the command that does.
    verify = [sys.executable, "-m", "rewarded_soups", "verify"]
    check = subprocess.run(verify, capture_output=True, text=True, cwd=workdir)
    assert check.returncode == 1 and f"MISSING {soup} (rule soup)" in check.stdout, check.stdout
    assert f"one: snakemake {soup}" in check.stdout
    rebuilt = snakemake(workdir, config, soup)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
    check = subprocess.run(verify, capture_output=True, text=True, cwd=workdir)
    assert check.returncode == 0 and "0 outputs the workflow expects under results are missing" in check.stdout
    assert (workdir / "results/text/scores.csv").read_bytes() == scores


@pytest.mark.slow
def test_a_shipped_theta0_gives_the_same_results_as_pretraining(run, tmp_path):
    """Ship the run's text θ0 with the tool, start a new run from it: same scores, no training of θ0."""
    workdir, config = run
    shipped = tmp_path / "theta0-text"
    tool = [sys.executable, str(ROOT / "tools" / "ship-theta0.py"), "--run", str(workdir), "--task", "text"]
    made = subprocess.run([*tool, "--config", str(config), "--out", str(shipped)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert json.loads((shipped / "made_by.json").read_text())["settings"]["pretrain"]["steps"] == 60

    data = yaml.safe_load(config.read_text())
    text = {**data["tasks"]["text"], "theta0": str(shipped)}
    new = tmp_path / "new"
    new.mkdir()
    (new / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "tasks": {"text": text}}, sort_keys=False))
    result = snakemake(new, new / "config.yaml", "results/text/scores.csv", "--replace-workflow-config")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((new / "results/text/pretrain/metrics.json").read_text())
    assert metrics["shipped_from"] == str(shipped) and metrics["seconds"] < metrics["trained_seconds"]
    before = (workdir / "results/text/scores.csv").read_text()
    assert (new / "results/text/scores.csv").read_text() == before

    # A config that would train another θ0 is refused before any job, naming the key and the switch.
    text["pretrain"] = {**text["pretrain"], "steps": 61}
    (new / "other.yaml").write_text(yaml.safe_dump({"seed": 0, "tasks": {"text": text}}, sort_keys=False))
    dry = snakemake(new, new / "other.yaml", "--dry-run", "--replace-workflow-config")
    assert dry.returncode != 0
    out = dry.stdout + dry.stderr
    assert "tasks.text.theta0:" in out and "pretrain.steps: shipped 60, config 61" in out
