"""Which models a task's config asks for, and where their artifacts live.

Pure functions of the config: Snakemake's input functions call them, and so
can tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rewarded_soups.grid import as_mix, is_vertex, mix_name, normalise, simplex_lattice


@dataclass(frozen=True)
class Model:
    name: str  # unique within a task; used as a wildcard
    kind: str  # init | expert | soup | morl
    mix: dict[str, float]  # λ for soups and experts, μ for MORL, empty for init
    directory: str  # checkpoint directory, relative to results/{task}

    @property
    def weights(self) -> str:
        return mix_name(self.mix) if self.mix else ""


def canonical(value: Any) -> Any:
    """Mappings with sorted keys, recursively.

    Snakemake compares params by their text, so key order in config.yaml (or
    after a YAML round trip) must not make a job look stale.
    """
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def rewards(task: dict[str, Any]) -> list[str]:
    return list(task["rewards"])


def morl_mixes(task: dict[str, Any]) -> list[dict[str, float]]:
    names = rewards(task)
    mixes = []
    for mu in task["morl"]["mu"]:
        vector = mu if isinstance(mu, list) else [mu, 1.0 - mu]
        mixes.append(as_mix(names, normalise(vector)))
    return mixes


def soup_mixes(task: dict[str, Any]) -> list[dict[str, float]]:
    """Interior points of the λ lattice; its vertices are the experts themselves."""
    names = rewards(task)
    lattice = simplex_lattice(len(names), task["merge"]["grid_points"])
    return [as_mix(names, w) for w in lattice if not is_vertex(w)]


def models(task: dict[str, Any]) -> list[Model]:
    names = rewards(task)
    out = [Model("init", "init", {}, "pretrain/model")]
    for r in names:
        out.append(Model(f"expert-{r}", "expert", as_mix(names, [float(r == n) for n in names]), f"experts/{r}"))
    for mix in soup_mixes(task):
        out.append(Model(f"soup-{mix_name(mix)}", "soup", mix, f"soups/{mix_name(mix)}"))
    for mix in morl_mixes(task):
        out.append(Model(f"morl-{mix_name(mix)}", "morl", mix, f"morl/{mix_name(mix)}"))
    return out


def model_by_name(task: dict[str, Any], name: str) -> Model:
    for m in models(task):
        if m.name == name:
            return m
    raise KeyError(f"no model {name!r} in this task's config")


def scorers(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every reward and quality metric evaluated on each model."""
    return {**task["rewards"], **task.get("metrics", {})}


def qualitative_models(task: dict[str, Any]) -> list[Model]:
    """θ0 and the models at the λ values of ``plots.qualitative`` (the first reward's weight).

    With more than two rewards, the experts stand in for the λ list.
    """
    names = rewards(task)
    chosen = [m for m in models(task) if m.kind == "init"]
    for m in models(task):
        if m.kind not in ("expert", "soup"):
            continue
        if len(names) == 2:
            if any(abs(m.mix[names[0]] - lam) < 1e-9 for lam in task["plots"]["qualitative"]):
                chosen.append(m)
        elif m.kind == "expert":
            chosen.append(m)
    return sorted(chosen, key=lambda m: -m.mix.get(names[0], 2.0))
