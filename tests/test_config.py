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


@pytest.mark.parametrize(
    "name",
    [
        *("paper-locomotion", "paper-image", "paper-captioning", "paper-vg", "paper-vqa", "shapes-image"),
        *("shapes-captioning", "shapes-vg", "shapes-vqa", "grounding-vqa"),
    ],
)
def test_accelerator_configs_validate_over_the_default_and_run_one_task(name):
    """A --configfile is merged over config.yaml (snakemake's update_config): each paper config keeps one task."""
    from snakemake.utils import update_config

    root = Path(__file__).resolve().parent.parent
    config = yaml.safe_load((root / "config.yaml").read_text())
    update_config(config, yaml.safe_load((root / "config" / f"{name}.yaml").read_text()))
    config = validate_config(config)
    enabled = [t for t, task in config["tasks"].items() if task["enabled"]]
    expected = {
        "paper-vg": ["grounding"],
        "shapes-vg": ["grounding"],
        "grounding-vqa": ["grounding", "vqa"],
        "paper-image": ["sd15"],
        "shapes-image": ["image"],
    }
    assert enabled == expected.get(name, [name.removeprefix("paper-").removeprefix("shapes-")])
    gpus = {config["tasks"][t]["resources"][stage]["gpu"] for t in enabled for stage in ("pretrain", "finetune")}
    assert gpus == ({0} if name == "grounding-vqa" else {1})  # the CPU default's sizes, or the accelerator's


def test_the_default_config_runs_all_six_tasks_from_shipped_theta0s():
    root = Path(__file__).resolve().parent.parent
    config = validate_config(yaml.safe_load((root / "config.yaml").read_text()))
    enabled = [t for t, task in config["tasks"].items() if task["enabled"]]
    assert enabled == ["text", "locomotion", "image", "captioning", "grounding", "vqa"]
    assert all(config["tasks"][t]["theta0"] == f"theta0/{t}" for t in enabled)


# Issue 18's table: each bad input fails before any job, naming the key, in one line.
@pytest.mark.parametrize(
    ("task", "section", "name", "options", "message"),
    [
        (
            "text",
            "rewards",
            "concise",
            {"max_chars": "sixty"},
            r"rewards\.concise\.max_chars: 'sixty' is not of type 'integer'",
        ),
        (
            "locomotion",
            "rewards",
            "cautious",
            {"ctrl_cost": "one"},
            r"rewards\.cautious\.ctrl_cost: 'one' is not of type 'number'",
        ),
        ("captioning", "rewards", "bleu4", {"n": "four"}, r"rewards\.bleu4\.n: 'four' is not of type 'integer'"),
        (
            "locomotion",
            "rewards",
            "cautious",
            {"ctrl_cost": -1},
            r"rewards\.cautious\.ctrl_cost: -1 is less than the minimum of 0",
        ),
        (
            "text",
            "rewards",
            "concise",
            {"min_chars": 80, "max_chars": 60},
            r"rewards\.concise\.min_chars: 80 is above max_chars \(60\)",
        ),
        ("captioning", "rewards", "bleu4", {"n": 7}, r"rewards\.bleu4\.n: 7 is greater than the maximum of 4"),
        ("text", "metrics", "perplexity", {"dtype": "float8"}, r"metrics\.perplexity\.dtype: 'float8' is not one of"),
    ],
)
def test_reward_options_are_typed_and_bounded(default_config, task, section, name, options, message):
    default_config["tasks"][task][section][name].update(options)
    with pytest.raises(ConfigError, match=message) as err:
        validate_config(default_config)
    assert "\n" not in str(err.value)


def test_local_model_paths_must_exist_and_be_model_directories(default_config, tmp_path):
    rewards = default_config["tasks"]["text"]["metrics"]  # a metric: the MORL μ stays valid
    rewards["helpful"] = {"kind": "classifier", "model": str(tmp_path / "no-such-model")}
    with pytest.raises(ConfigError, match=r"metrics\.helpful\.model: .*no-such-model does not exist"):
        validate_config(copy.deepcopy(default_config))
    (tmp_path / "empty").mkdir()
    rewards["helpful"]["model"] = str(tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"metrics\.helpful\.model: .*empty has no config\.json"):
        validate_config(copy.deepcopy(default_config))
    rewards["helpful"]["model"] = "models/reward/deberta"  # two slashes: a path, not a hub id
    with pytest.raises(ConfigError, match=r"models/reward/deberta does not exist"):
        validate_config(copy.deepcopy(default_config))
    rewards["helpful"]["model"] = "OpenAssistant/reward-model-deberta-v3-base"  # a hub id: checked when loaded
    validate_config(copy.deepcopy(default_config))
    del rewards["helpful"]
    default_config["tasks"]["text"]["pretrain"] = {"model": "./llama-7b"}
    with pytest.raises(ConfigError, match=r"pretrain\.model: \./llama-7b does not exist"):
        validate_config(default_config)


def test_a_hub_id_that_cannot_load_says_so_in_one_line():
    from rewarded_soups.paths import hub_load_error, loading

    with pytest.raises(OSError, match=r"^someone/missing: not found locally and could not be downloaded: ") as err:
        with loading("someone/missing"):
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")
    assert "\n" not in str(err.value)
    assert (
        str(hub_load_error("x/y", ValueError(""))) == "x/y: not found locally and could not be downloaded: ValueError"
    )


def test_nothing_enabled_is_an_error(default_config):
    for task in default_config["tasks"].values():
        task["enabled"] = False
    with pytest.raises(ConfigError, match="every task is off"):
        validate_config(default_config)


def test_a_partial_configfile_warns_about_what_config_yaml_adds(default_config):
    from rewarded_soups.config import merged_config_warnings

    override = {"tasks": {"text": {"rewards": {"sentiment": {"kind": "vader"}}}, "image": {"enabled": False}}}
    warnings = merged_config_warnings(default_config, override, replaced=False)
    assert any("tasks.text.rewards: your --configfile lists ['sentiment']" in w and "concise" in w for w in warnings)
    assert any(w.startswith("tasks.locomotion: not in your --configfile but enabled") for w in warnings)
    assert not any("tasks.image" in w for w in warnings)
    assert merged_config_warnings(default_config, override, replaced=True) == []


def test_a_task_that_is_off_is_not_checked(default_config):
    """Its settings' errors would hide those of the tasks that run (captioning's validation_size was one)."""
    default_config["tasks"]["captioning"]["enabled"] = False
    default_config["tasks"]["captioning"]["evaluate"] = {"validation_size": 10**9}
    validate_config(default_config)
    default_config["tasks"]["captioning"]["enabled"] = True
    with pytest.raises(ConfigError, match=r"tasks\.captioning"):
        validate_config(default_config)


def test_locomotion_experts_need_at_least_one_step(default_config):
    default_config["tasks"]["locomotion"]["finetune"]["steps"] = 0
    with pytest.raises(ConfigError, match=r"tasks\.locomotion\.finetune\.steps"):
        validate_config(default_config)


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path):
    from rewarded_soups.config import check_yaml_syntax

    path = tmp_path / "config.yaml"
    path.write_text("seed: 0\ntasks:\n  text:\n\tkind: text\n")
    with pytest.raises(ConfigError, match=r"config.yaml:4:1: not valid YAML: .*never tabs"):
        check_yaml_syntax(path)
    path.write_text("seed: 0\n")
    check_yaml_syntax(path)
    check_yaml_syntax(tmp_path / "absent.yaml")  # Snakemake says what is missing itself
