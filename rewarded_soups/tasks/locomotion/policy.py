"""Policies on disk: the policy network's parameters and the frozen observation normaliser.

One ``policy.safetensors`` per model (never pickle): tensors named by their
path in the parameter tree (``policy/params/hidden_0/kernel``) plus the
normaliser's ``normalizer/mean`` and ``normalizer/std``; ``policy.json`` holds
the network's shape. The value function is not saved: the paper discards it
after pre-training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = "policy.safetensors"
CONFIG = "policy.json"
SEP = "/"


@dataclass(frozen=True)
class PolicySpec:
    env: str
    observation_size: int
    action_size: int
    hidden_sizes: tuple[int, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> PolicySpec:
        data = json.loads(text)
        return cls(data["env"], data["observation_size"], data["action_size"], tuple(data["hidden_sizes"]))


@dataclass
class Policy:
    spec: PolicySpec
    params: dict[str, Any]  # the flax parameter tree of the policy network
    obs_mean: np.ndarray
    obs_std: np.ndarray


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key in sorted(tree):
        if SEP in key:
            raise ValueError(f"parameter name {key!r} contains {SEP!r}")
        value = tree[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + SEP))
        else:
            out[name] = np.asarray(value)
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split(SEP)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def save(policy: Policy, out_dir: Path) -> None:
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"policy{SEP}{k}": v for k, v in flatten(policy.params).items()}
    tensors[f"normalizer{SEP}mean"] = np.asarray(policy.obs_mean, dtype=np.float32)
    tensors[f"normalizer{SEP}std"] = np.asarray(policy.obs_std, dtype=np.float32)
    save_file(tensors, str(out_dir / WEIGHTS))
    (out_dir / CONFIG).write_text(policy.spec.to_json())


def load(model_dir: Path) -> Policy:
    """A saved policy; a soup stored as a recipe is merged in memory."""
    from safetensors.numpy import load_file

    from rewarded_soups.merging.engine import is_recipe, materialize

    model_dir = Path(model_dir)
    if is_recipe(model_dir):
        soup = materialize(model_dir)
        tensors = {k: v.numpy() for k, v in soup.tensors[WEIGHTS].items()}
        model_dir = soup.template
    elif not (model_dir / WEIGHTS).exists():
        raise FileNotFoundError(f"{model_dir} holds no {WEIGHTS}: not a locomotion policy directory")
    else:
        tensors = load_file(str(model_dir / WEIGHTS))
    prefix = f"policy{SEP}"
    params = unflatten({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    spec = PolicySpec.from_json((model_dir / CONFIG).read_text())
    return Policy(spec, params, tensors[f"normalizer{SEP}mean"], tensors[f"normalizer{SEP}std"])
