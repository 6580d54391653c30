"""Shipped θ0s: made from a run's pretrain outputs, refused when the config would train another θ0."""

import json

import pytest

from rewarded_soups import theta0

SETTINGS = {"data": {"min_chars": 30}, "pretrain": {"steps": 800, "n_layer": 4}}


def _shipped(tmp_path, **overrides):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "model.safetensors").write_bytes(b"weights")
    (run / "model" / ".manifest.json").write_text("{}")
    (run / "metrics.json").write_text(json.dumps({"seconds": 474.0, "valid_perplexity": 103.0}))
    made = {"kind": "text", "settings": SETTINGS, "seed": 0, "code": "abc"} | overrides
    out = tmp_path / "theta0" / "text"
    theta0.ship(run / "model", run / "metrics.json", out, command="python tools/ship-theta0.py", task_config={}, **made)
    return out


def test_a_matching_config_uses_it_and_install_copies_it(tmp_path):
    out = _shipped(tmp_path)
    assert theta0.check(out, where="tasks.text", kind="text", settings=SETTINGS, seed=0, code="abc") == []
    metrics = theta0.install(out, tmp_path / "job" / "model", tmp_path / "job" / "metrics.json")
    assert (tmp_path / "job" / "model" / "model.safetensors").read_bytes() == b"weights"
    assert not (tmp_path / "job" / "model" / ".manifest.json").exists()  # the job writes its own
    assert metrics["trained_seconds"] == 474.0 and metrics["seconds"] < 5 and metrics["valid_perplexity"] == 103.0
    assert json.loads((tmp_path / "job" / "metrics.json").read_text())["shipped_from"] == str(out)


def test_other_settings_or_seed_are_refused_naming_the_keys(tmp_path):
    out = _shipped(tmp_path)
    changed = {"data": {"min_chars": 30}, "pretrain": {"steps": 1000, "n_layer": 4, "dropout": 0.1}}
    with pytest.raises(ValueError) as err:
        theta0.check(out, where="tasks.text", kind="text", settings=changed, seed=1, code="abc")
    message = str(err.value)
    assert message.startswith("tasks.text.theta0: ")
    assert "seed: shipped 0, config 1" in message and "pretrain.steps: shipped 800, config 1000" in message
    assert "pretrain.dropout: shipped '(absent)', config 0.1" in message and "theta0: null" in message
    with pytest.raises(ValueError, match="task kind 'text', not 'image'"):
        theta0.check(out, where="tasks.image", kind="image", settings=SETTINGS, seed=0, code="abc")


def test_other_code_warns_and_a_wrong_directory_is_refused(tmp_path):
    out = _shipped(tmp_path)
    (warning,) = theta0.check(out, where="tasks.text", kind="text", settings=SETTINGS, seed=0, code="new")
    assert "other pretrain code" in warning and "tools/ship-theta0.py" in warning
    with pytest.raises(ValueError, match="is not a shipped θ0"):
        theta0.check(tmp_path / "nowhere", where="tasks.text", kind="text", settings=SETTINGS, seed=0, code="abc")


def test_relative_paths_are_the_workflows(tmp_path):
    assert theta0.resolve("theta0/text", tmp_path) == tmp_path / "theta0" / "text"
    assert theta0.resolve(str(tmp_path / "x"), tmp_path / "elsewhere") == tmp_path / "x"
