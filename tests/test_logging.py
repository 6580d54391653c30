"""A job's log file receives its Python logging and the output of C/C++ libraries; artifacts carry manifests."""

import logging
import os
from types import SimpleNamespace

import pytest

from rewarded_soups import manifest
from rewarded_soups.workflow import logged


def _job(tmp_path, inputs=(), outputs=()):
    log = [str(tmp_path / "logs" / "job.log")]
    return SimpleNamespace(log=log, rule="demo", wildcards={}, threads=1, input=list(inputs), output=list(outputs))


def test_logged_captures_python_and_file_descriptor_output(tmp_path, capfd):
    smk = _job(tmp_path)
    with logged(smk):
        print("from print")
        logging.getLogger("x").info("from logging")
        os.system("echo from-a-subprocess >&2")  # what XLA's C++ logging does: write to fd 2
    os.write(2, b"after\n")
    text = (tmp_path / "logs" / "job.log").read_text()
    assert "rule demo" in text and "from print" in text and "from logging" in text
    assert "from-a-subprocess" in text and "after" not in text
    assert "after" in capfd.readouterr().err


def test_each_attempt_starts_a_fresh_log(tmp_path):
    with pytest.raises(RuntimeError), logged(_job(tmp_path)):
        print("first attempt")
        raise RuntimeError("boom")
    with logged(_job(tmp_path)):
        print("second attempt")
    text = (tmp_path / "logs" / "job.log").read_text()
    assert "second attempt" in text and "first attempt" not in text


def _write_model(directory):
    with logged(_job(directory.parent, outputs=[str(directory)])):
        directory.mkdir()
        (directory / "weights.safetensors").write_bytes(bytes(range(256)) * 4)
        (directory / "config.json").write_text("{}")


def test_outputs_get_a_manifest_and_inputs_are_verified(tmp_path):
    model = tmp_path / "expert"
    _write_model(model)
    assert manifest.writer_rule(model) == "demo" and manifest.problems(model) == []
    with logged(_job(tmp_path, inputs=[str(model)])):
        pass  # an intact input passes


@pytest.mark.parametrize("damage", ["truncate", "same_size_garbage", "delete", "add"])
def test_a_damaged_input_fails_the_job_naming_it(tmp_path, damage):
    model = tmp_path / "expert"
    _write_model(model)
    weights = model / "weights.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "same_size_garbage":
        weights.write_bytes(bytes(reversed(weights.read_bytes())))
    elif damage == "delete":
        weights.unlink()
    else:
        (model / "extra.bin").write_bytes(b"x")
    ran = []
    with pytest.raises(manifest.CorruptArtifact, match="modified or corrupted after it was written") as err:
        with logged(_job(tmp_path, inputs=[str(model)], outputs=[str(tmp_path / "soup")])):
            ran.append(True)
    assert not ran  # the job's work never started
    assert f"snakemake --forcerun {model}" in str(err.value)
    assert not (tmp_path / "soup").exists()
    assert "job failed" in (tmp_path / "logs" / "job.log").read_text()
