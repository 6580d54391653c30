"""Which models a task's config asks for, and where their artifacts live.

Pure functions of the config: Snakemake's input functions call them, and so
can tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rewarded_soups.grid import as_mix, format_weight, is_vertex, mix_name, normalise, parse_mix, simplex_lattice


@dataclass(frozen=True)
class Model:
    name: str  # unique within a task; used as a wildcard
    kind: str  # init | expert | soup | morl | ensemble | wise | a merge method other than the first
    mix: dict[str, float]  # λ for soups, experts and ensembles, μ for MORL, α toward θ0 for wise, empty for init
    directory: str  # checkpoint directory, relative to results/{task}

    @property
    def weights(self) -> str:
        return mix_name(self.mix) if self.mix else ""


def model_directory(kind: str, weights: str) -> str:
    """Where a model's checkpoint lives, relative to results/{task}, from its kind and weights (mix name)."""
    fixed = {"init": "pretrain/model", "soup": f"soups/{weights}", "morl": f"morl/{weights}"}
    fixed |= {"ensemble": f"ensembles/{weights}", "wise": f"wise/{weights}"}
    if kind == "expert":
        (reward,) = (r for r, w in parse_mix(weights).items() if w == 1)
        return f"experts/{reward}"
    # Any other kind is a merge method beyond the first.
    return fixed.get(kind, f"merges/{kind}/{weights}")


def model_label(name: str) -> str:
    """A model's name as figures title it: θ0 for ``init``, the reward for an expert, the weights of a soup."""
    if name == "init":
        return "θ0"
    if name.startswith("expert-"):
        return name.removeprefix("expert-")
    if name.startswith("soup-"):
        return "\n".join(f"{r} {w:g}" for r, w in parse_mix(name.removeprefix("soup-")).items())
    return name


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


# Which config sections each stage reads: they go through params:, so a change
# reruns exactly the stages (and branches) that read it; a task adds the keys
# its own schema defines in generic sections (TaskSpec.reads). Display-only
# keys (plots) reach only figure and table jobs.
# A "section.key" entry passes one key (deeper paths too): which soups exist (merge.grid_points,
# pairs, subsets) must not make the existing ones stale, only how one is made.
STAGE_SECTIONS = {
    "pretrain": ("data", "pretrain"),
    "finetune": ("data", "finetune"),
    "merge": (),
    "fisher": ("data", "finetune", "merge.fisher.samples"),
    "generate": ("data", "evaluate"),
    "qualitative": ("data", "evaluate"),
}


def stage_settings(task: dict[str, Any], stage: str, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config entries ``stage`` reads for a task (generic and the task's own), added into ``out``."""
    from rewarded_soups.registry import task_spec

    out = {} if out is None else out
    for entry in (*STAGE_SECTIONS[stage], *task_spec(task["kind"]).reads.get(stage, ())):
        *parents, key = entry.split(".")
        source, target = task, out
        for parent in parents:
            source, target = source[parent], target.setdefault(parent, {})
        target[key] = source[key]
    return out


def rewards(task: dict[str, Any]) -> list[str]:
    return list(task["rewards"])


def preference_weights(mu: Any, names: list[str]) -> list[float]:
    """A preference written like ``morl.mu`` as one weight per reward: a number is the first reward's
    weight (N = 2), a list gives every weight, a mapping names the rewards that weigh."""
    if isinstance(mu, dict):
        return [float(mu.get(r, 0.0)) for r in names]
    return [float(w) for w in (mu if isinstance(mu, list) else [mu, 1.0 - mu])]


def morl_mixes(task: dict[str, Any]) -> list[dict[str, float]]:
    names = rewards(task)
    mixes = []
    for mu in task["morl"]["mu"]:
        mix = as_mix(names, normalise(preference_weights(mu, names)))
        # With many rewards, name only those that weigh (bleu1@0.5+rouge@0.5).
        mixes.append({r: w for r, w in mix.items() if w > 0} if len(names) > 2 else mix)
    return mixes


def preferences(task: dict[str, Any]) -> list[dict[str, float]]:
    """The preferences summary.json reports (Lemma 1): ``analysis.preferences``, else the MORL μ's, else uniform."""
    names = rewards(task)
    out = [dict(zip(names, preference_weights(mu, names))) for mu in task["analysis"].get("preferences") or []]
    if not out:
        out = [{r: float(m.get(r, 0.0)) for r in names} for m in morl_mixes(task)]
    return out or [{r: 1.0 / len(names) for r in names}]


def front_pairs(task: dict[str, Any]) -> list[list[str]]:
    """The pairs of rewards whose fronts are drawn: ``merge.pairs``, else the analysis axes."""
    return [list(p) for p in (task["merge"].get("pairs") or [task["analysis"]["axes"]])]


def _edge(pair: list[str], points: int) -> list[dict[str, float]]:
    """Interior λ points between two experts; the mix names only the pair."""
    return [{pair[0]: w[0], pair[1]: w[1]} for w in simplex_lattice(2, points) if not is_vertex(w)]


def clockwise_subsets(names: list[str], start: str) -> list[list[str]]:
    """The paper's Figure 4: M = 1..N experts taken in reward order, wrapping, from ``start``."""
    i, n = names.index(start), len(names)
    return [[names[(i + k) % n] for k in range(m)] for m in range(1, n + 1)]


def soup_mixes(task: dict[str, Any]) -> list[dict[str, float]]:
    """The soups to build; vertices of the simplex are the experts themselves and are left out.

    Without ``merge.pairs``: every interior point of the simplex lattice. With
    it: the λ grid between each pair, the uniform soup of all experts, and
    the clockwise subsets of ``merge.subsets_from`` (uniform over M < N experts).
    """
    names = rewards(task)
    merge = task["merge"]
    if not merge.get("pairs"):
        lattice = simplex_lattice(len(names), merge["grid_points"])
        return [as_mix(names, w) for w in lattice if not is_vertex(w)]
    mixes = [mix for pair in merge["pairs"] for mix in _edge(list(pair), merge["grid_points"])]
    if len(names) > 2:
        mixes.append(as_mix(names, [1.0 / len(names)] * len(names)))
    for start in merge.get("subsets_from", []):
        for subset in clockwise_subsets(names, start)[1:-1]:
            mixes.append({r: 1.0 / len(subset) for r in names if r in subset})
    return _unique(mixes)


def _unique(mixes: list[dict[str, float]]) -> list[dict[str, float]]:
    """Drop repeated mixes (same name), keeping the first."""
    unique: dict[str, dict[str, float]] = {}
    for mix in mixes:
        unique.setdefault(mix_name(mix), mix)
    return list(unique.values())


GRID_SEPARATOR = "+"


def soup_grids(task: dict[str, Any]) -> dict[str, list[str]]:
    """Soups built together in one pass (rule soup_grid), by the experts they combine (``a+b``): every group of two
    or more soups of the same experts, when soups are stored in full, ``merge.one_pass`` is on and the task's
    first merge method supports it; ``{}`` otherwise (each soup job merges its own soup)."""
    from rewarded_soups.merging import methods as registry

    merge = task["merge"]
    if merge.get("store", "full") != "full" or not merge.get("one_pass", True):
        return {}
    if not getattr(registry.get(merge_methods(task)[0]), "one_pass", False):
        return {}
    groups: dict[str, list[str]] = {}
    for mix in soup_mixes(task):
        members = GRID_SEPARATOR.join(r for r, w in mix.items() if w != 0)
        groups.setdefault(members, []).append(mix_name(mix))
    return {members: mixes for members, mixes in groups.items() if len(mixes) > 1}


def grid_of(task: dict[str, Any], mix: str) -> str | None:
    """The soup grid (its experts, ``a+b``) that builds soup ``mix``, or None when the soup job merges it itself."""
    return next((members for members, mixes in soup_grids(task).items() if mix in mixes), None)


def merge_methods(task: dict[str, Any]) -> list[str]:
    """``merge.method`` as a list: the first makes the soups (kind ``soup``), the others their own curves."""
    method = task["merge"].get("method", "linear")
    return [method] if isinstance(method, str) else list(method)


def extrapolated_mixes(task: dict[str, Any], method: str) -> list[dict[str, float]]:
    """Soups beyond the experts for a method that extrapolates (task arithmetic, the paper's Figure 13g).

    λ of each pair's first expert outside [0, 1], over ``merge.<method>.lambda_range``,
    continuing the λ grid's step; the pair's weights still sum to 1.
    """
    low, high = task["merge"].get(method, {}).get("lambda_range", [0.0, 1.0])
    step = 1.0 / (task["merge"]["grid_points"] - 1)
    outside = []
    k = 1
    while -k * step >= low - 1e-9 or 1 + k * step <= high + 1e-9:
        if -k * step >= low - 1e-9:
            outside.append(round(-k * step, 10))
        if 1 + k * step <= high + 1e-9:
            outside.append(round(1 + k * step, 10))
        k += 1
    mixes = []
    for pair in front_pairs(task):
        for lam in sorted(outside):
            mixes.append({pair[0]: float(format_weight(lam)), pair[1]: float(format_weight(1.0 - lam))})
    return _unique(mixes)


def method_mixes(task: dict[str, Any], method: str) -> list[dict[str, float]]:
    """The λ of a merge method's models: the soup grid, plus the extrapolated ones for a method that extrapolates."""
    from rewarded_soups.merging.methods import get

    mixes = soup_mixes(task)
    if get(method).extrapolates:
        mixes = _unique(mixes + extrapolated_mixes(task, method))
    return mixes


def baseline_mixes(task: dict[str, Any], kind: str) -> list[dict[str, float]]:
    """Mixes of the ``ensemble`` (two experts' predictions) and ``wise`` (expert toward θ0) baselines.

    A WiSE mix names one expert and its weight α; θ0 carries 1 − α.
    """
    baselines = task.get("baselines", {})
    if not baselines.get(kind):
        return []
    points = baselines["grid_points"]
    mixes: list[dict[str, float]] = []
    for pair in front_pairs(task):
        if kind == "ensemble":
            mixes += _edge(pair, points)
        else:
            alphas = [w[0] for w in simplex_lattice(2, points) if not is_vertex(w)]
            mixes += [{r: a} for r in pair for a in alphas]
    return _unique(mixes)


def models(task: dict[str, Any]) -> list[Model]:
    names = rewards(task)

    def model(name: str, kind: str, mix: dict[str, float]) -> Model:
        return Model(name, kind, mix, model_directory(kind, mix_name(mix) if mix else ""))

    out = [model("init", "init", {})]
    out += [model(f"expert-{r}", "expert", as_mix(names, [float(r == n) for n in names])) for r in names]
    primary, *others = merge_methods(task)
    out += [model(f"soup-{mix_name(mix)}", "soup", mix) for mix in method_mixes(task, primary)]
    out += [model(f"{method}-{mix_name(mix)}", method, mix) for method in others for mix in method_mixes(task, method)]
    out += [model(f"morl-{mix_name(mix)}", "morl", mix) for mix in morl_mixes(task)]
    out += [
        model(f"{kind}-{mix_name(mix)}", kind, mix)
        for kind in ("ensemble", "wise")
        for mix in baseline_mixes(task, kind)
    ]
    return out


def advantage_pairs(task: dict[str, Any]) -> list[list[str]]:
    """The front pairs with a MORL run on them: those get Figure 8 (summary.json ``advantage``)."""
    return [
        pair
        for pair in front_pairs(task)
        if any(set(r for r, w in m.items() if w > 0) <= set(pair) for m in morl_mixes(task))
    ]


def scorers(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every reward and quality metric evaluated on each model."""
    return {**task["rewards"], **task.get("metrics", {})}


# The score job of a model's rule-based scorers; reward names match ^[a-z][a-z0-9_]*$, so never one of them.
RULE_BASED = "rule-based"


def score_groups(task: dict[str, Any]) -> dict[str, list[str]]:
    """The score jobs of each model: group name -> the scorers it evaluates.

    A scorer that runs a model (its declaration's ``uses_device``: reward
    models, perplexity) is a job of its own, named after it, so that replacing
    or re-configuring it rescores it alone. The others are functions of the
    samples that take milliseconds to seconds (the captioning metrics, image
    statistics, rollout returns, VADER); one job scores them all
    (:data:`RULE_BASED`), which saves a process, its imports and Snakemake's
    bookkeeping per scorer and model (about 1.5 s each) at the price of
    rescoring them together when one of them changes.
    """
    from rewarded_soups import registry

    groups: dict[str, list[str]] = {}
    for name, spec in scorers(task).items():
        if registry.reward_spec(spec["kind"]).uses_device:
            groups[name] = [name]
        else:
            groups.setdefault(RULE_BASED, []).append(name)
    return groups


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


REPLICATE_OF = "replicate_of"  # keys a replicate task adds to its base task's config entry
REPLICATE_SEED = "replicate_seed"


def replicate_name(task: str, seed: int) -> str:
    """The name of ``task``'s replicate with training seed ``seed`` (its results: results/<name>/)."""
    return f"{task}_seed{seed}"


def with_replicates(tasks: dict[str, dict[str, Any]], seed: int, seeds: list[int] | None) -> dict[str, dict[str, Any]]:
    """``tasks`` and, for every other seed of ``seeds``, a replicate of each: the same config, θ0 copied from
    the task's own, fine-tuning, MORL, soups and evaluation with that training seed (the data keep ``seed``)."""
    import copy

    out = dict(tasks)
    for other in [s for s in seeds or [] if s != seed]:
        for name, task in tasks.items():
            replicate = replicate_name(name, other)
            if replicate in out:
                raise ValueError(f"seeds: the replicate {replicate!r} of task {name!r} is also a task's name")
            out[replicate] = copy.deepcopy(task) | {"theta0": None, REPLICATE_OF: name, REPLICATE_SEED: other}
    return out


def replicates(tasks: dict[str, dict[str, Any]], name: str) -> list[str]:
    """The replicates of task ``name`` among ``tasks`` (none for a replicate itself)."""
    return [n for n, t in tasks.items() if t.get(REPLICATE_OF) == name]
