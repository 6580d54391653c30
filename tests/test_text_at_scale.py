"""The paper's text setting on tiny models of its architectures: a LLaMA policy with LoRA,
reward models of other architectures (DeBERTa-v2, ELECTRA), prompts from a local dataset."""

from __future__ import annotations

import copy
import json

import pytest
import tiny_models
import torch
import yaml
from transformers import PreTrainedModel

from rewarded_soups import stages
from rewarded_soups.config import validate_config
from rewarded_soups.samples import read as read_samples
from rewarded_soups.tasks import text
from rewarded_soups.tasks.base import Run
from rewarded_soups.tasks.text import policy
from rewarded_soups.tasks.text.data import load_splits
from rewarded_soups.tasks.text.rl import CompletionLengthSampler, build_trainer


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    return {
        "llama": tiny_models.llama_policy(root / "tiny-llama"),
        "deberta": tiny_models.deberta_reward_model(root / "rm-deberta"),
        "electra": tiny_models.electra_reward_model(root / "rm-electra"),
        "prompts": tiny_models.questions_jsonl(root / "questions.jsonl"),
    }


def llama_task(hub, **finetune) -> dict:
    config = {
        "tasks": {
            "llama": {
                "kind": "text",
                "rewards": {
                    "helpful": {"kind": "classifier", "model": str(hub["deberta"])},
                    "harmless": {"kind": "classifier", "model": str(hub["electra"]), "label": "good"},
                },
                "metrics": {"perplexity": {"kind": "perplexity", "dtype": "bfloat16"}},
                "data": {
                    "source": "datasets",
                    "dataset": str(hub["prompts"]),
                    "template": "Question: {question} Answer:",
                    "min_chars": 5,
                    "valid_fraction": 0.1,
                    "test_fraction": 0.2,
                },
                "pretrain": {"model": str(hub["llama"]), "block_size": 64, "eval_batches": 1, "dtype": "bfloat16"},
                "finetune": {
                    "steps": 2,
                    "num_generations": 2,
                    "per_device_train_batch_size": 2,
                    "gradient_accumulation_steps": 2,
                    "max_completion_length": [4, 8],
                    "dtype": "bfloat16",
                    "bf16": True,
                    "activation_checkpointing": True,
                    "lora": {"r": 4, "alpha": 8},
                    **finetune,
                },
                "evaluate": {"n_prompts": 6, "max_new_tokens": 6, "batch_size": 4, "dtype": "bfloat16"},
            }
        }
    }
    return validate_config(config)["tasks"]["llama"]


@pytest.fixture(scope="module")
def theta0(hub, tmp_path_factory):
    task = llama_task(hub)
    base = tmp_path_factory.mktemp("llama") / "pretrain"
    metrics = text.pretrain(base, task, seed=0, threads=1)
    return task, base, metrics


def test_theta0_is_a_reference_to_the_local_llama(theta0, hub):
    _, base, metrics = theta0
    assert not list(base.glob("*.safetensors"))
    ref = policy.base_model(base)
    assert ref.model == str(hub["llama"].resolve()) and ref.content_sha256
    assert metrics["valid_perplexity"] > 1 and metrics["parameters"] > 0


def test_dataset_prompts_from_a_local_jsonl(hub, theta0):
    task, _, _ = theta0
    splits = load_splits(task["data"], seed=0)
    assert splits.train and splits.valid and splits.test
    assert not set(splits.train) & set(splits.test) and not set(splits.valid) & set(splits.test)
    assert all(p.startswith("Question: ") and p.endswith(" Answer:") for p in splits.test)
    assert load_splits(task["data"], seed=0) == splits  # seeded
    wrong = {**task["data"], "template": "Q: {title}"}
    with pytest.raises(ValueError, match=r"no column\(s\) \['title'\].*question"):
        load_splits(wrong, seed=0)


def test_a_named_held_out_split(tmp_path, theta0):
    task, _, _ = theta0
    (tmp_path / "prompts").mkdir()
    for split, words in (("train", ["alpha", "beta", "gamma", "delta", "epsilon"]), ("test", ["zeta", "eta"])):
        with open(tmp_path / "prompts" / f"{split}.jsonl", "w") as fh:
            for w in words:
                fh.write(json.dumps({"text": f"Tell me about {w}."}) + "\n")
    data = {**task["data"], "dataset": str(tmp_path / "prompts"), "template": None, "column": "text"}
    data["test_split"] = "test"
    splits = load_splits(data, seed=0)
    assert sorted(splits.test) == ["Tell me about eta.", "Tell me about zeta."]
    assert len(splits.train) + len(splits.valid) == 5


def test_chat_template_prompts_keep_a_single_bos(theta0):
    _, base, _ = theta0
    tokenizer = policy.load_tokenizer(policy.base_model(base))
    (prompt,) = policy.policy_prompts(["Hi there?"], tokenizer, "auto")
    assert prompt == "[user] Hi there? [assistant] "
    ids = tokenizer(prompt)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert policy.policy_prompts(["Hi there?"], tokenizer, False) == ["Hi there?"]


@pytest.fixture(scope="module")
def trainer(theta0, tmp_path_factory):
    task, base, _ = theta0
    splits = load_splits(task["data"], seed=0)
    weights = {"helpful": 0.5, "harmless": 0.5}
    scratch = tmp_path_factory.mktemp("scratch")
    return build_trainer(Run(base, scratch, task["rewards"], weights, task, seed=0), scratch, splits)


def test_reward_models_reach_trl_as_models(trainer):
    kinds = [type(f).__name__ for f in trainer.reward_funcs]
    assert kinds == ["DebertaV2ForSequenceClassification", "ElectraForSequenceClassification"]
    assert all(isinstance(f, PreTrainedModel) for f in trainer.reward_funcs)
    # Placed by trl (accelerate) on the trainer's device.
    assert {next(f.parameters()).device for f in trainer.reward_funcs} == {trainer.accelerator.device}
    assert trainer.reward_weights.tolist() == [0.5, 0.5]


def test_trl_scores_reward_models_as_evaluation_does(trainer, theta0, hub, tmp_path):
    """The reward a policy is trained on is the reward it is evaluated on (special tokens, chosen label)."""
    from rewarded_soups.registry import build_reward

    _, base, _ = theta0
    task = llama_task(hub, bf16=False, dtype="float32")
    splits = load_splits(task["data"], seed=0)
    weights = {"helpful": 0.5, "harmless": 0.5}
    full_precision = build_trainer(Run(base, tmp_path, task["rewards"], weights, task, seed=0), tmp_path, splits)
    prompts = ["Question: Why? Answer:", "Question: How long? Answer:"]
    completions = [" Because it is.", " About nine minutes, then cool it."]
    inputs = [{"prompt": p} for p in prompts]
    in_training = full_precision._calculate_rewards(inputs, prompts, completions, [[0]] * 2)
    # Under bf16 mixed precision accelerate runs the reward models in bf16 autocast as well.
    in_bf16_training = trainer._calculate_rewards(inputs, prompts, completions, [[0]] * 2)
    for i, name in enumerate(("helpful", "harmless")):
        evaluated = build_reward(task["rewards"][name])(prompts, completions)
        assert in_training[:, i].tolist() == pytest.approx(evaluated, abs=1e-4)
        assert in_bf16_training[:, i].tolist() == pytest.approx(evaluated, rel=3e-2, abs=3e-2)
    # The encoder classifiers read their [CLS] first, although trl asks for no special tokens.
    electra = trainer.reward_processing_classes[1]
    ids = electra(text=["a b"], add_special_tokens=False)["input_ids"][0]
    assert ids[0] == electra.cls_token_id and ids[-1] == electra.sep_token_id


def test_policy_is_loaded_by_trl_with_its_kwargs_and_peft_defaults(trainer):
    model = trainer.model
    assert type(model).__name__ == "PeftModelForCausalLM"
    lora = model.peft_config["default"]
    assert set(lora.target_modules) == {"q_proj", "v_proj"}  # peft's default for LLaMA
    base = model.get_base_model()
    assert base.dtype == torch.bfloat16 and type(base).__name__ == "LlamaForCausalLM"
    assert trainer.args.bf16 and trainer.args.activation_checkpointing
    assert trainer.args.gradient_accumulation_steps == 2 and trainer.args.generation_batch_size == 4


def test_completion_length_is_drawn_per_step(theta0, tmp_path):
    task, base, _ = theta0
    splits = load_splits(task["data"], seed=0)
    trainer = build_trainer(Run(base, tmp_path, task["rewards"], {"helpful": 1.0}, task, seed=0), tmp_path, splits)
    (sampler,) = [c for c in trainer.callback_handler.callbacks if isinstance(c, CompletionLengthSampler)]
    trainer.train()
    assert len(sampler.drawn) == 2 and all(4 <= n <= 8 for n in sampler.drawn)
    assert trainer.generation_config.max_new_tokens == sampler.drawn[-1]


@pytest.fixture(scope="module")
def experts(theta0, tmp_path_factory):
    task, base, _ = theta0
    out = tmp_path_factory.mktemp("llama-experts")
    for reward in task["rewards"]:
        stages.finetune(text, base, out / reward, task["rewards"], {reward: 1.0}, task, seed=0, threads=1)
    return [out / r for r in task["rewards"]]


def test_experts_start_from_one_adapter_initialisation(experts, theta0, tmp_path):
    """trl seeds the adapter with the run's seed: every expert starts from the same A matrices."""
    task, base, _ = theta0
    splits = load_splits(task["data"], seed=0)
    starts = [
        {
            k: v.clone()
            for k, v in build_trainer(Run(base, tmp_path, task["rewards"], {r: 1.0}, task, seed=0), tmp_path, splits)
            .model.state_dict()
            .items()
            if "lora_A" in k
        }
        for r in task["rewards"]
    ]
    assert starts[0].keys() == starts[1].keys() and all(torch.equal(starts[0][k], starts[1][k]) for k in starts[0])


def test_a_soup_of_llama_adapters_loads_and_generates(theta0, experts, tmp_path):
    task, base, _ = theta0
    stages.merge(text, base, experts, [0.5, 0.5], tmp_path / "soup", task)
    adapter = json.loads((tmp_path / "soup" / text.ADAPTER_CONFIG).read_text())
    assert adapter["base_model_name_or_path"].endswith("tiny-llama")
    stages.generate(text, base, tmp_path / "soup", {"test": tmp_path / "samples"}, task, seed=0, threads=1)
    rows = read_samples(tmp_path / "samples").records
    assert len(rows) == task["evaluate"]["n_prompts"] and all(r["prompt"].startswith("[user] ") for r in rows)
    # The same seed gives the same completions.
    stages.generate(text, base, tmp_path / "soup", {"test": tmp_path / "again"}, task, seed=0, threads=1)
    assert read_samples(tmp_path / "again").records == rows
    for name in ("helpful", "harmless", "perplexity"):
        scorer = {**task["rewards"], **task["metrics"]}[name]
        values = stages.score(text, {"test": tmp_path / "samples"}, scorer, base_dir=base, threads=1)["test"]
        assert len(values) == len(rows) and all(v == v for v in values)


def test_batched_perplexity_equals_one_at_a_time(theta0):
    from rewarded_soups.registry import build_reward

    _, base, _ = theta0
    prompts = ["Question: Why? Answer:", "Q:", "Question: How long should it boil? Answer:"]
    completions = [" Because.", " A long and winding answer here.", ""]
    batched = build_reward({"kind": "perplexity", "batch_size": 8}, context={"base_model": str(base)})
    single = build_reward({"kind": "perplexity", "batch_size": 1}, context={"base_model": str(base)})
    assert batched(prompts, completions) == pytest.approx(single(prompts, completions), rel=1e-4)


def test_paper_config_plans_the_papers_dag_on_gpus(default_config):
    """config/paper-text.yaml merged over config.yaml: only the text task, every model job on a GPU."""
    from pathlib import Path

    from snakemake.utils import update_config

    from rewarded_soups import plan

    root = Path(__file__).resolve().parent.parent
    config = copy.deepcopy(default_config)
    update_config(config, yaml.safe_load((root / "config" / "paper-text.yaml").read_text()))
    config = validate_config(config)
    enabled = [name for name, t in config["tasks"].items() if t["enabled"]]
    assert enabled == ["reuters"]
    task = config["tasks"]["reuters"]
    assert {r["kind"] for r in task["rewards"].values()} == {"classifier"}
    assert task["data"]["source"] == "datasets" and "summary" in task["data"]["template"]
    assert all(task["resources"][stage]["gpu"] == 1 for stage in ("pretrain", "finetune", "evaluate"))
    ft = task["finetune"]
    assert ft["per_device_train_batch_size"] * ft["gradient_accumulation_steps"] == 128
    assert ft["max_completion_length"] == [16, 32] and ft["beta"] == 0.05
    assert len(plan.models(task)) == 1 + 2 + 9 + len(task["morl"]["mu"])
