"""The captioning task's functions end to end at a tiny size: rewards through the registry, ensembles, WiSE."""

import json
from pathlib import Path

import pytest
import torch

from rewarded_soups import stages
from rewarded_soups.registry import build_reward, reward_spec
from rewarded_soups.samples import read as read_samples
from rewarded_soups.tasks import captioning as task
from rewarded_soups.vision_language import encoder_decoder as captioner

CFG = {
    "data": {"image_size": 16, "train_images": 24, "valid_images": 4, "test_images": 6},
    "pretrain": {"model": {"channels": 8, "d_model": 16, "layers": 1, "heads": 2}, "xent_steps": 10},
    "finetune": {"steps": 2, "batch_size": 4},
    "evaluate": {"n_images": 6},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from snakemake.utils import validate

    root = tmp_path_factory.mktemp("captioning")
    cfg = json.loads(json.dumps(CFG))
    cfg["pretrain"] |= {"scst_steps": 1, "scst_batch_size": 4, "batch_size": 8}
    validate(cfg, str(Path(task.__file__).parent / "schema.yaml"), set_default=True)
    task.check_settings(cfg)
    task.pretrain(root / "base", {"data": cfg["data"], "pretrain": cfg["pretrain"]}, seed=0, threads=1)
    ft = {"data": cfg["data"], "finetune": cfg["finetune"]}
    for name, reward in (("bleu1", {"kind": "bleu", "n": 1}), ("rouge", {"kind": "rouge"})):
        stages.finetune(task, root / "base", root / name, {name: reward}, {name: 1.0}, ft, seed=0, threads=1)
    return root, {"data": cfg["data"], "evaluate": cfg["evaluate"]}


def test_reward_options_and_cider_context():
    assert reward_spec("bleu").options() == (set(), {"n": 4, "reference_mode": "multi"})
    # df_references comes from θ0, not the config
    assert reward_spec("cider").options() == (set(), {"reference_mode": "multi"})
    refs = [["a red circle on the left", "one red disc on the left side"]]
    bleu1 = build_reward({"kind": "bleu", "n": 1})
    assert bleu1(["a red circle on the left"], refs) == [pytest.approx(1.0)]
    # n-grams in every document of the corpus weigh 0 (idf = log 1): the corpus must vary.
    corpus = [*refs, ["a blue square at the top"], ["a big green triangle"], ["one white box on the right"]]
    cider = build_reward({"kind": "cider"}, context={"df_references": corpus})
    assert cider(["a red circle on the left"], refs)[0] > cider(["a blue square"], refs)[0]
    with pytest.raises(ValueError, match="bleu n"):
        build_reward({"kind": "bleu", "n": 7})


def test_ensemble_of_one_model_or_one_weight_is_that_models_greedy(tiny):
    root, _ = tiny
    a, b = captioner.load(root / "bleu1"), captioner.load(root / "rouge")
    images = torch.randn(5, 3, 16, 16)
    greedy_a = a.greedy(images, 12)
    assert torch.equal(captioner.ensemble_greedy([a], [1.0], images, 12), greedy_a)
    assert torch.equal(captioner.ensemble_greedy([a, b], [1.0, 0.0], images, 12), greedy_a)
    assert torch.equal(captioner.ensemble_greedy([a, a], [0.5, 0.5], images, 12), greedy_a)


def test_soup_wise_and_ensemble_generate_scored_captions(tiny, tmp_path):
    root, ev = tiny
    stages.merge(task, root / "base", [root / "bleu1", root / "rouge"], [0.5, 0.5], tmp_path / "soup", {})
    stages.merge(task, root / "base", [root / "base", root / "bleu1"], [0.5, 0.5], tmp_path / "wise", {})
    stages.ensemble([root / "bleu1", root / "rouge"], [0.5, 0.5], tmp_path / "ensemble")
    wise = captioner.load(tmp_path / "wise").state_dict()
    base, expert = captioner.load(root / "base").state_dict(), captioner.load(root / "bleu1").state_dict()
    key = next(k for k in wise if wise[k].is_floating_point() and not torch.equal(base[k], expert[k]))
    torch.testing.assert_close(wise[key], 0.5 * base[key] + 0.5 * expert[key])
    for name in ("soup", "wise", "ensemble"):
        stages.generate(
            task, root / "base", tmp_path / name, {"test": tmp_path / "samples" / name}, ev, seed=0, threads=1
        )
        records = read_samples(tmp_path / "samples" / name).records
        assert len(records) == 6 and all(len(r["references"]) == 5 for r in records)
        values = stages.score(
            task, {"test": tmp_path / "samples" / name}, {"kind": "rouge"}, base_dir=root / "base", threads=1
        )["test"]
        assert len(values) == 6 and all(0 <= v <= 1 for v in values)
    table = stages.samples_table(task, {n: tmp_path / "samples" / n for n in ("soup", "ensemble")}, 2)
    assert "### Image 1" in table and "| ensemble |" in table


def test_check_settings_names_the_key():
    bad = json.loads(json.dumps(CFG))
    bad["pretrain"]["model"] |= {"max_len": 8, "heads": 2, "d_model": 16}
    bad["finetune"]["max_len"] = 24
    bad["evaluate"]["max_len"] = 8
    with pytest.raises(ValueError, match=r"finetune\.max_len"):
        task.check_settings(bad)


def test_fisher_and_recipe_soups(tiny, tmp_path):
    """Each expert's Fisher has the captioner's parameters; a Fisher-weighted recipe soup builds in memory."""
    from safetensors.torch import load_file

    root, ev = tiny
    settings = {"data": ev["data"], "finetune": {"max_len": 12}, "merge": {"fisher": {"samples": 3}}}
    for name in ("bleu1", "rouge"):
        assert stages.fisher(task, root / "base", root / name, tmp_path / f"f-{name}", {}, settings, seed=0, threads=1)
    values = load_file(tmp_path / "f-bleu1" / captioner.WEIGHTS_FILE)
    params = dict(captioner.load(root / "bleu1").named_parameters())
    assert values.keys() == params.keys() and all(values[k].shape == params[k].shape for k in params)
    merge = {"method": "fisher", "options": {"fisher_floor": 1e-6}, "store": "recipe"}
    fishers = [tmp_path / "f-bleu1", tmp_path / "f-rouge"]
    experts = [root / "bleu1", root / "rouge"]
    stages.merge(task, root / "base", experts, [0.5, 0.5], tmp_path / "soup", {"merge": merge}, fisher_dirs=fishers)
    assert [p.name for p in (tmp_path / "soup").iterdir()] == ["recipe.json"]
    stages.generate(task, root / "base", tmp_path / "soup", {"test": tmp_path / "samples"}, ev, seed=0, threads=1)
    assert len(read_samples(tmp_path / "samples").records) == 6
