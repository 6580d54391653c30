"""Configuration checks that run before any job: schema, then meaning.

The JSON schemas catch misspelled keys and wrong types (naming the key); the
checks here catch what a schema cannot see: unknown task or reward kinds,
axes that are not rewards, preference vectors of the wrong length.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

from rewarded_soups import registry

GENERIC_SCHEMA = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"
# Generic sections a task's schema may add its own keys to (declared in TaskSpec.reads for the stages that read them).
EXTENSIBLE_SECTIONS = ("merge", "plots")


class ConfigError(ValueError):
    """A configuration mistake, with the config path of the offending key."""


def _schema_validate(data: dict[str, Any], schema: Path, where: str) -> None:
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(data, str(schema), set_default=True)
    except WorkflowError as err:
        raise ConfigError(_first_error(data, schema, where) or f"{where}: {err}") from None


@functools.cache
def _load_schema(path: Path) -> dict[str, Any]:
    """A schema file, parsed once per process (libyaml's parser when there is one): read for every task."""
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _first_error(data: dict[str, Any], schema: Path, where: str) -> str | None:
    """The most relevant schema error as one line, ``where.key.path: message`` (Snakemake's spans many)."""
    import jsonschema
    from jsonschema.exceptions import best_match

    error = best_match(jsonschema.Draft202012Validator(_load_schema(schema)).iter_errors(data))
    if error is None:
        return None
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{where}{path}: {error.message}"


def validate_config(config: dict[str, Any], schema: Path = GENERIC_SCHEMA) -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults) and return it."""
    _schema_validate(config, schema, "config")
    # The schema's default objects were inserted by reference into every task
    # that lacked the key; unshare them so one task's filled-in defaults never
    # leak into another's.
    config["tasks"] = {name: copy.deepcopy(task) for name, task in config["tasks"].items()}
    if config.get("seeds") and config["seed"] not in config["seeds"]:
        raise ConfigError(
            f"seeds {config['seeds']} must hold seed ({config['seed']}): it trains θ0 and the first replicate"
        )
    if not any(task.get("enabled", True) for task in config["tasks"].values()):
        raise ConfigError(
            f"tasks: every task is off (enabled: false): {sorted(config['tasks'])}; set enabled: true on one"
        )
    # A task that is off is neither run nor checked: its settings' errors would hide those of the tasks that run.
    for task_name, task in config["tasks"].items():
        if task.get("enabled", True):
            validate_task(task, f"tasks.{task_name}")
    return config


def validate_task(task: dict[str, Any], where: str) -> None:
    """One task's entry, section by section (defaults filled in); ``where`` is its config path."""
    spec = _task_spec(task["kind"], where)
    _schema_validate(task, spec.schema, where)
    _check_extension_keys(task, spec.schema, where)
    _check_scorers(task, spec, where)
    _check_preferences(task, where)
    _check_merge(task, where)
    _check_analysis(task, where)
    _check_plots(task, spec, where)
    _check_baselines(task, spec, where)
    _check_merge_methods(task, spec, where)
    _check_task_settings(task, spec, where)


def _task_spec(kind: str, where: str) -> registry.TaskSpec:
    tasks = registry.tasks()
    if kind not in tasks:
        raise ConfigError(f"{where}.kind: unknown task kind {kind!r}; registered: {sorted(tasks)}")
    from rewarded_soups.tasks.base import missing_functions

    missing = missing_functions(tasks[kind].implementation(), tasks[kind].baselines)
    if missing:
        raise ConfigError(
            f"{where}.kind: task kind {kind!r} ({tasks[kind].module}) does not define {missing}, which every task "
            "defines (rewarded_soups/tasks/base.py)"
        )
    return tasks[kind]


def _check_scorers(task: dict[str, Any], spec: registry.TaskSpec, where: str) -> None:
    """Rewards and metrics: registered kinds, their options (defaults written in), the task's modality."""
    # A reward kind may also be a metric: evaluated on every model, never trained on.
    registered = registry.rewards()
    trainable = {k: r for k, r in registered.items() if not r.metric}
    for section, known in (("rewards", trainable), ("metrics", registered)):
        for name, reward in task.get(section, {}).items():
            entry = known.get(reward["kind"])
            if entry is None:
                hint = " (a quality metric: list it under metrics)" if reward["kind"] in registered else ""
                raise ConfigError(
                    f"{where}.{section}.{name}.kind: unknown {section[:-1]} kind {reward['kind']!r}{hint}; "
                    f"registered: {sorted(known)}"
                )
            required, optional = entry.options()
            given = set(reward) - {"kind"}
            if given - required - set(optional) or required - given:
                raise ConfigError(
                    f"{where}.{section}.{name}: kind {reward['kind']!r} takes options "
                    f"{sorted(required)} (required) and {sorted(optional)} (optional); "
                    f"unknown: {sorted(given - required - set(optional))}, missing: {sorted(required - given)}"
                )
            # Written into the config so that the defaults reach params: (and staleness).
            for option, default in optional.items():
                reward.setdefault(option, default)
            _check_options(reward, entry, f"{where}.{section}.{name}")
            if entry.modality != spec.modality:
                raise ConfigError(
                    f"{where}.{section}.{name}: kind {reward['kind']!r} scores {entry.modality}, "
                    f"but task kind {spec.kind!r} produces {spec.modality}"
                )
    clash = set(task["rewards"]) & set(task.get("metrics", {}))
    if clash:
        raise ConfigError(f"{where}: {sorted(clash)} named both as reward and as metric")


def _check_preferences(task: dict[str, Any], where: str) -> None:
    rewards = list(task["rewards"])
    for key, values in (("morl.mu", task["morl"]["mu"]), ("analysis.preferences", task["analysis"]["preferences"])):
        for i, mu in enumerate(values or []):
            _check_weights(mu, rewards, f"{where}.{key}[{i}]")


def _check_merge(task: dict[str, Any], where: str) -> None:
    """Which soups exist: pairs, subsets and the size of the lattice."""
    rewards, merge = list(task["rewards"]), task["merge"]
    for i, pair in enumerate(merge.get("pairs") or []):
        if set(pair) - set(rewards) or pair[0] == pair[1]:
            raise ConfigError(f"{where}.merge.pairs[{i}]: {pair} must be two different rewards of {rewards}")
    unknown_starts = [r for r in merge["subsets_from"] if r not in rewards]
    if unknown_starts:
        raise ConfigError(f"{where}.merge.subsets_from: {unknown_starts} are not rewards of this task ({rewards})")
    if len(rewards) > 3 and not merge.get("pairs") and merge["grid_points"] > 5:
        raise ConfigError(
            f"{where}.merge: the full simplex lattice of {len(rewards)} rewards at grid_points "
            f"{merge['grid_points']} is too many soups; set merge.pairs (and merge.subsets_from) "
            "or lower grid_points"
        )


def _check_analysis(task: dict[str, Any], where: str) -> None:
    """The front's axes (default: the first two rewards, written in) and the hypervolume reference."""
    rewards = list(task["rewards"])
    axes = task["analysis"].get("axes", rewards[:2])
    unknown = [a for a in axes if a not in rewards]
    if unknown:
        raise ConfigError(f"{where}.analysis.axes: {unknown} are not rewards of this task ({rewards})")
    task["analysis"]["axes"] = axes
    ref = task["analysis"]["reference"]
    if ref is not None and len(ref) != len(rewards):
        raise ConfigError(f"{where}.analysis.reference: {len(ref)} values for {len(rewards)} rewards {rewards}")


def _check_plots(task: dict[str, Any], spec: registry.TaskSpec, where: str) -> None:
    """The qualitative figures' λ must be soups of the grid."""
    steps = task["merge"]["grid_points"] - 1
    off_grid = [lam for lam in task["plots"]["qualitative"] if abs(lam * steps - round(lam * steps)) > 1e-9]
    if spec.implements("qualitative") and len(task["rewards"]) == 2 and off_grid:
        raise ConfigError(
            f"{where}.plots.qualitative: {off_grid} are not on the λ grid of {steps + 1} points "
            f"(multiples of 1/{steps}); pick grid values or change merge.grid_points"
        )


def _check_baselines(task: dict[str, Any], spec: registry.TaskSpec, where: str) -> None:
    implemented = spec.baselines
    unsupported = [b for b in ("ensemble", "wise") if task["baselines"][b] and b not in implemented]
    if unsupported:
        raise ConfigError(
            f"{where}.baselines: task kind {spec.kind!r} does not implement {unsupported}; "
            f"it implements {list(implemented) or 'none'}"
        )


def _check_merge_methods(task: dict[str, Any], spec: registry.TaskSpec, where: str) -> None:
    """Every method's ``merge.<method>`` section (defaults written in), and what the chosen methods need."""
    import jsonschema

    from rewarded_soups import plan
    from rewarded_soups.merging import methods

    registered = methods.methods()
    for name, method in registered.items():
        schema = method.section_schema()
        section = task["merge"].setdefault(name, {})
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(section))
        if error is not None:
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            raise ConfigError(f"{where}.merge.{name}{path}: {error.message}")
        for option, entry in schema["properties"].items():
            section.setdefault(option, copy.deepcopy(entry["default"]))
    for name in plan.merge_methods(task):
        if name not in registered:
            raise ConfigError(f"{where}.merge.method: unknown merge method {name!r}; registered: {sorted(registered)}")
        method = registered[name]
        if method.needs_fisher and not spec.implements("fisher"):
            usable = [m for m, c in registered.items() if not c.needs_fisher]
            raise ConfigError(
                f"{where}.merge.method: task kind {spec.kind!r} cannot estimate Fisher matrices (it defines no "
                f"`fisher`), which merge method {name} needs; choose among {', '.join(usable)}"
            )
        if method.extrapolates:
            low, high = task["merge"][name]["lambda_range"]
            if not low <= 0.0 <= 1.0 <= high:
                raise ConfigError(
                    f"{where}.merge.{name}.lambda_range: [{low}, {high}] must contain [0, 1] "
                    "(values beyond it extrapolate)"
                )
        if method.max_experts is not None:
            wide = [m for m in plan.method_mixes(task, name) if sum(w != 0 for w in m.values()) > method.max_experts]
            if wide:
                raise ConfigError(
                    f"{where}.merge.method: merge method {name} combines at most {method.max_experts} experts, but "
                    f"this task's soups include {plan.mix_name(wide[0])}; set merge.pairs (and no uniform "
                    "or subset soups), or choose another method"
                )


def _check_task_settings(task: dict[str, Any], spec: registry.TaskSpec, where: str) -> None:
    """The task's own checks (its ``check_settings`` hook), for what its schema cannot say."""
    check = getattr(spec.implementation(), "check_settings", None)
    if check is not None:
        try:
            check(task)
        except ValueError as err:
            raise ConfigError(f"{where}.{err}") from None


def _check_extension_keys(task: dict[str, Any], task_schema: Path, where: str) -> None:
    """Keys of the extensible generic sections must be generic or declared by the task's schema."""
    generic = _load_schema(GENERIC_SCHEMA)["$defs"]["task"]["properties"]
    own = _load_schema(task_schema).get("properties", {})
    from rewarded_soups.merging.methods import methods

    added = {"merge": set(methods())}  # each merge method's own section
    for section in EXTENSIBLE_SECTIONS:
        known = set(generic[section]["properties"]) | set(own.get(section, {}).get("properties", {}))
        known |= added.get(section, set())
        unknown = sorted(set(task.get(section, {})) - known)
        if unknown:
            raise ConfigError(
                f"{where}.{section}: unknown keys {unknown} for task kind {task['kind']!r}; known: {sorted(known)}"
            )


def _check_options(reward: dict[str, Any], spec: registry.RewardSpec, where: str) -> None:
    """A reward's options: types and bounds from its declaration, then its own cross-option checks."""
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(spec.options_schema()).iter_errors(reward), key=str)
    if errors:
        error = errors[0]
        path = ".".join(str(p) for p in error.absolute_path)
        raise ConfigError(f"{where}{'.' + path if path else ''}: {error.message} (reward kind {spec.kind!r})")
    try:
        spec.check_options({k: v for k, v in reward.items() if k != "kind"})
    except ValueError as err:
        raise ConfigError(f"{where}.{err}") from None


def _check_weights(mu: Any, rewards: list[str], where: str) -> None:
    """A preference (MORL μ or user μ̂): a mapping of rewards, a list with one weight each, or a number (N = 2)."""
    if isinstance(mu, dict):
        if set(mu) - set(rewards) or sum(mu.values()) <= 0:
            raise ConfigError(f"{where}: {mu} must name rewards of {rewards} with a positive sum of weights")
    elif isinstance(mu, list):
        if len(mu) != len(rewards) or sum(mu) <= 0:
            raise ConfigError(
                f"{where}: {mu} must have one non-negative weight per reward {rewards} with a positive sum"
            )
    elif len(rewards) != 2:
        raise ConfigError(f"{where}: a single number only works for two rewards; give a list of {len(rewards)} weights")


def merged_config_warnings(config: dict[str, Any], overrides: dict[str, Any] | None, replaced: bool) -> list[str]:
    """What ``--configfile`` left in from config.yaml that a user may not expect (Snakemake merges mappings).

    ``config`` is the merged config, ``overrides`` what the command line gave.
    """
    if replaced or not overrides or not isinstance(overrides.get("tasks"), dict):
        return []
    given = overrides["tasks"]
    warnings = []
    for name, task in config.get("tasks", {}).items():
        if not isinstance(task, dict):
            continue
        if name not in given:
            if task.get("enabled", True):
                warnings.append(
                    f"tasks.{name}: not in your --configfile but enabled in config.yaml, so it runs too; "
                    f"set tasks.{name}.enabled: false in your file to leave it out"
                )
            continue
        for section in ("rewards", "metrics"):
            mine = given[name].get(section) if isinstance(given[name], dict) else None
            if isinstance(mine, dict) and set(task.get(section) or {}) - set(mine):
                warnings.append(
                    f"tasks.{name}.{section}: your --configfile lists {sorted(mine)}; Snakemake merged them with "
                    f"config.yaml's, giving {list(task[section])}. To use only yours, run with "
                    "--replace-workflow-config (your file must then be a complete config)"
                )
    return warnings


def check_yaml_syntax(path: Path) -> None:
    """Raise :class:`ConfigError` naming the file, line and column of a YAML syntax error in ``path`` (if it exists).

    Snakemake's own message for a config file it cannot parse names neither.
    """
    path = Path(path)
    if not path.is_file():
        return
    try:
        yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(p) for p in (err.context, err.problem) if p)
        hint = " (YAML indents with spaces, never tabs)" if "'\\t'" in problem else ""
        raise ConfigError(f"{where}: not valid YAML: {problem}{hint}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
