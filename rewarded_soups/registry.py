"""Registries of tasks and reward kinds.

Both map a name to a *module path* so that looking a name up (as config
validation does at DAG-parse time) imports nothing heavy. A task module
implements the :class:`rewarded_soups.tasks.base.Task` protocol; a reward kind
names a factory ``build(settings) -> Reward`` inside its module.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RewardKind:
    module: str
    modality: str  # what the reward scores: "text", "image", "trajectory", ...
    doc: str
    higher_is_better: bool = True
    uses_device: bool = False  # runs a model: its scoring jobs take the evaluation GPUs


TASKS: dict[str, str] = {
    "text": "rewarded_soups.tasks.text",
    "locomotion": "rewarded_soups.tasks.locomotion",
    "diffusion": "rewarded_soups.tasks.image",
    "captioning": "rewarded_soups.tasks.captioning",
}

# Task kind -> the modality of what its models produce (rewards must match it).
TASK_MODALITY: dict[str, str] = {
    "text": "text",
    "locomotion": "episode",
    "diffusion": "image",
    "captioning": "caption",
}

REWARD_KINDS: dict[str, RewardKind] = {
    "vader": RewardKind("rewarded_soups.rewards.text", "text", "positive sentiment: VADER compound score in [-1, 1]"),
    "conciseness": RewardKind(
        "rewarded_soups.rewards.text",
        "text",
        "1 - characters/max_chars, clipped to [0, 1]; fewer than min_chars characters score 0",
    ),
    "classifier": RewardKind(
        "rewarded_soups.rewards.text",
        "text",
        "a sequence-classification reward model (local directory or hub id): logit of one label",
        uses_device=True,
    ),
    "locomotion": RewardKind(
        "rewarded_soups.rewards.locomotion",
        "episode",
        "brax humanoid reward with control cost α = ctrl_cost: forward + alive − α·Σa² per episode",
    ),
    "colourfulness": RewardKind(
        "rewarded_soups.rewards.image", "image", "Hasler–Süsstrunk colourfulness (chroma spread and mean)"
    ),
    "contrast": RewardKind("rewarded_soups.rewards.image", "image", "RMS contrast: standard deviation of luminance"),
    "smoothness": RewardKind(
        "rewarded_soups.rewards.image",
        "image",
        "1 − scale·mean neighbour luminance difference: flat images score high, against both aesthetic rewards",
    ),
    "bleu": RewardKind("rewarded_soups.rewards.captioning", "caption", "BLEU-n (n = 1..4) against the references"),
    "rouge": RewardKind("rewarded_soups.rewards.captioning", "caption", "ROUGE-L F-measure against the references"),
    "meteor": RewardKind(
        "rewarded_soups.rewards.captioning", "caption", "METEOR 1.5 against the references (needs java on PATH)"
    ),
    "cider": RewardKind(
        "rewarded_soups.rewards.captioning", "caption", "CIDEr-D, document frequencies from the training references"
    ),
}

# Quality metrics are evaluated for every model but never trained on.
METRIC_KINDS: dict[str, RewardKind] = {
    "perplexity": RewardKind(
        "rewarded_soups.rewards.text",
        "text",
        "perplexity of the completion under θ0 (lower is better)",
        higher_is_better=False,
        uses_device=True,
    ),
    "velocity": RewardKind(
        "rewarded_soups.rewards.locomotion", "episode", "the forward-velocity term summed over an episode"
    ),
    "action_cost": RewardKind(
        "rewarded_soups.rewards.locomotion", "episode", "Σ a² over an episode (lower is better)", higher_is_better=False
    ),
    "episode_length": RewardKind("rewarded_soups.rewards.locomotion", "episode", "steps before falling"),
}


def reward_kind(kind: str) -> RewardKind:
    """The registered reward or metric kind ``kind``."""
    entry = REWARD_KINDS.get(kind) or METRIC_KINDS.get(kind)
    if entry is None:
        known = sorted(REWARD_KINDS) + sorted(METRIC_KINDS)
        raise KeyError(f"unknown reward kind {kind!r}; registered: {known}")
    return entry


def reward_options(kind: str) -> tuple[set[str], dict[str, Any]]:
    """Required option names and optional options with their defaults, from the constructor."""
    entry = REWARD_KINDS.get(kind) or METRIC_KINDS[kind]
    module = importlib.import_module(entry.module)
    params = inspect.signature(module.CLASSES[kind].__init__).parameters
    names = [p for p in params if p != "self" and p not in getattr(module, "CONTEXT_ARGUMENTS", set())]
    required = {p for p in names if params[p].default is inspect.Parameter.empty}
    return required, {p: params[p].default for p in names if p not in required}


def load_task(kind: str) -> Any:
    """Import and return the task module registered as ``kind``."""
    try:
        return importlib.import_module(TASKS[kind])
    except KeyError:
        raise KeyError(f"unknown task kind {kind!r}; registered: {sorted(TASKS)}") from None


def build_reward(settings: dict[str, Any], *, context: dict[str, Any] | None = None) -> Any:
    """Instantiate a reward (or metric) from its config entry ``{kind: ..., ...}``."""
    kind = settings["kind"]
    entry = reward_kind(kind)
    module = importlib.import_module(entry.module)
    options = {k: v for k, v in settings.items() if k != "kind"}
    return module.build(kind, options, context or {})
