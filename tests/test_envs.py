"""Conda env files cannot be solved here (no conda channels): check them by parsing."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_env_files_parse_and_match_requirements():
    requirements = _pins((ROOT / "requirements.txt").read_text().splitlines())
    from rewarded_soups.registry import tasks

    envs = sorted((ROOT / "envs").glob("*.yaml")) + [spec.environment for spec in tasks().values()]
    assert {e.stem for e in envs} >= {"environment", "analysis"}
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        assert "conda-forge" in spec["channels"]
        deps = spec["dependencies"]
        assert any(str(d).startswith("python=3.11") for d in deps)
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        pins = _pins(pip)
        assert pins, env
        for name, version in pins.items():
            assert requirements.get(name) == version, f"{env}: {name}=={version} vs requirements.txt"


def test_every_task_kind_declares_its_env_and_schema():
    from rewarded_soups.registry import tasks

    registered = tasks()
    assert set(registered) >= {"text", "image", "captioning", "locomotion"}
    for spec in registered.values():
        assert spec.environment.is_file() and spec.schema.is_file(), spec
