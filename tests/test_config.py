import copy
from pathlib import Path

import pytest
import yaml

from rewarded_soups.config import ConfigError, validate_config
from rewarded_soups.plan import models, morl_mixes, soup_mixes


def test_default_config_is_valid_and_gets_defaults(default_config):
    config = validate_config(default_config)
    task = config["tasks"]["text"]
    assert task["enabled"] is True
    assert task["finetune"]["gradient_accumulation_steps"] == 1  # filled from the task schema
    assert task["analysis"]["axes"] == ["sentiment", "concise"]


def test_resources_default_from_the_schema(tiny_config):
    task = validate_config(tiny_config)["tasks"]["text"]
    assert task["resources"]["finetune"] == {"threads": 1, "gpu": 0, "mem_mb": 4000, "runtime": 120, "gpu_model": ""}


def test_misspelled_key_is_named(default_config):
    default_config["tasks"]["text"]["finetune"]["lerning_rate"] = 0.1
    with pytest.raises(ConfigError, match="lerning_rate"):
        validate_config(default_config)


def test_misspelled_top_level_key_is_named(default_config):
    default_config["sed"] = 1
    with pytest.raises(ConfigError, match="sed"):
        validate_config(default_config)


def test_unknown_reward_kind_is_named(default_config):
    default_config["tasks"]["text"]["rewards"]["sentiment"]["kind"] = "vadr"
    with pytest.raises(ConfigError, match=r"rewards\.sentiment\.kind: unknown reward kind 'vadr'.*vader"):
        validate_config(default_config)


def test_unknown_task_kind(default_config):
    default_config["tasks"]["text"]["kind"] = "txt"
    with pytest.raises(ConfigError, match="unknown task kind 'txt'"):
        validate_config(default_config)


def test_axes_must_be_rewards(default_config):
    default_config["tasks"]["text"]["analysis"]["axes"] = ["sentiment", "fluency"]
    with pytest.raises(ConfigError, match=r"axes: \['fluency'\]"):
        validate_config(default_config)


def test_mu_vectors_need_one_weight_per_reward(default_config):
    default_config["tasks"]["text"]["morl"]["mu"] = [[0.2, 0.3, 0.5]]
    with pytest.raises(ConfigError, match=r"morl\.mu\[0\]"):
        validate_config(default_config)


def test_wrong_type_is_named(default_config):
    default_config["tasks"]["text"]["pretrain"]["steps"] = "many"
    with pytest.raises(ConfigError, match="many"):
        validate_config(default_config)


def test_bad_reward_option_is_named(default_config):
    default_config["tasks"]["text"]["rewards"]["concise"]["max_wrds"] = 3
    with pytest.raises(ConfigError, match=r"rewards\.concise: .*max_wrds"):
        validate_config(default_config)


def test_plan_of_the_default(default_config):
    task = validate_config(default_config)["tasks"]["text"]
    names = [m.name for m in models(task)]
    assert names[:3] == ["init", "expert-sentiment", "expert-concise"]
    assert len(soup_mixes(task)) == 9  # 11 grid points minus the two experts
    assert morl_mixes(task) == [{"sentiment": 0.5, "concise": 0.5}]
    assert len(names) == len(set(names)) == 1 + 2 + 9 + 1


def test_three_rewards_plan(default_config):
    config = copy.deepcopy(default_config)
    config["tasks"]["text"]["rewards"]["short"] = {"kind": "conciseness", "max_chars": 40}
    config["tasks"]["text"]["morl"]["mu"] = [[1, 1, 1]]
    config["tasks"]["text"]["merge"]["grid_points"] = 3
    task = validate_config(config)["tasks"]["text"]
    assert len(soup_mixes(task)) == 3 + 1  # three edge midpoints and the uniform soup
    assert morl_mixes(task)[0] == pytest.approx({"sentiment": 1 / 3, "concise": 1 / 3, "short": 1 / 3})


def test_default_sections_are_not_shared_between_tasks():
    config = {
        "tasks": {
            "a": {"kind": "text", "rewards": {"s": {"kind": "vader"}, "c": {"kind": "conciseness"}}},
            "b": {
                "kind": "locomotion",
                "rewards": {
                    "risky": {"kind": "locomotion", "ctrl_cost": 0.0},
                    "safe": {"kind": "locomotion", "ctrl_cost": 1.0},
                },
            },
        }
    }
    validate_config(config)
    assert config["tasks"]["a"]["analysis"]["axes"] == ["s", "c"]
    assert config["tasks"]["b"]["analysis"]["axes"] == ["risky", "safe"]


@pytest.mark.parametrize("name", ["paper-locomotion", "paper-image", "paper-captioning"])
def test_accelerator_configs_validate_over_the_default_and_run_one_task(name):
    """A --configfile is merged over config.yaml (snakemake's update_config): each paper config keeps one task."""
    from snakemake.utils import update_config

    root = Path(__file__).resolve().parent.parent
    config = yaml.safe_load((root / "config.yaml").read_text())
    update_config(config, yaml.safe_load((root / "config" / f"{name}.yaml").read_text()))
    config = validate_config(config)
    enabled = [t for t, task in config["tasks"].items() if task["enabled"]]
    assert enabled == [{"paper-locomotion": "locomotion"}.get(name, name.removeprefix("paper-"))]
    assert all(config["tasks"][enabled[0]]["resources"][stage]["gpu"] == 1 for stage in ("pretrain", "finetune"))
