"""Plug-in registries of tasks and reward kinds.

A reward is one class decorated with :func:`reward`; a task is one package
that calls :func:`register_task` with its declaration. Plug-ins are found
without naming them here:

* the built-in ones are the modules of :mod:`rewarded_soups.rewards` and the
  packages of :mod:`rewarded_soups.tasks`;
* an external package adds its own through the entry point group
  ``rewarded_soups.plugins``: each entry names a module whose import registers
  its tasks and rewards (``[project.entry-points."rewarded_soups.plugins"]
  my_rewards = "my_package.rewards"`` in its pyproject.toml).

Config validation looks plug-ins up while Snakemake parses the DAG, so a
plug-in module must import nothing heavy at module level (torch, jax,
transformers go inside the functions that need them).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import pkgutil
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

ENTRY_POINT_GROUP = "rewarded_soups.plugins"
BUILTIN_PACKAGES = ("rewarded_soups.rewards", "rewarded_soups.tasks")


class PluginError(ValueError):
    """A plug-in that cannot be registered or found, with what to do about it."""


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def type_schema(hint: Any) -> dict[str, Any]:
    """The JSON schema of a type hint: int, float, str, bool, None, unions, Literal, list[...]; {} if unknown."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [type_schema(arg) for arg in typing.get_args(hint)]
        if any(not part for part in parts):
            return {}
        return {"anyOf": parts}
    if origin is Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin in (list, tuple) or hint in (list, tuple):
        args = typing.get_args(hint)
        return {"type": "array", **({"items": type_schema(args[0])} if args and args[-1] is not Ellipsis else {})}
    if hint in _JSON_TYPES:
        # JSON has one number type: a float option takes 1 as well as 1.0.
        return {"type": _JSON_TYPES[hint]}
    return {}


@dataclass(frozen=True)
class RewardSpec:
    """A registered reward or quality metric: the class and what the workflow needs to know of it."""

    kind: str
    cls: type
    modality: str  # what it scores; must be what the task produces (TaskSpec.modality)
    metric: bool = False  # a quality metric only: evaluated on every model, never trained on
    higher_is_better: bool = True
    uses_device: bool = False  # runs a model: its scoring jobs take the evaluation GPUs
    context: frozenset[str] = frozenset()  # constructor arguments the task supplies, not the config
    bounds: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # extra JSON-schema keywords per option

    @property
    def doc(self) -> str:
        """The first paragraph of the class docstring, as one line."""
        text = inspect.getdoc(self.cls) or ""
        return " ".join(text.split("\n\n")[0].split())

    @property
    def module(self) -> str:
        return self.cls.__module__

    def options(self) -> tuple[set[str], dict[str, Any]]:
        """Required option names, and optional options with their defaults, from the constructor."""
        params = inspect.signature(self.cls.__init__).parameters
        names = [p for p in params if p != "self" and p not in self.context]
        names = [
            p for p in names if params[p].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        required = {p for p in names if params[p].default is inspect.Parameter.empty}
        return required, {p: params[p].default for p in names if p not in required}

    def options_schema(self) -> dict[str, Any]:
        """JSON schema of the reward's config entry: each option's type from its hint, with the declared bounds."""
        required, optional = self.options()
        try:
            hints = typing.get_type_hints(self.cls.__init__)
        except Exception:  # an annotation that cannot be evaluated: options stay untyped
            hints = {}
        properties: dict[str, Any] = {"kind": {"const": self.kind}}
        for name in sorted(required | set(optional)):
            properties[name] = {**type_schema(hints.get(name)), **self.bounds.get(name, {})}
        return {
            "type": "object",
            "properties": properties,
            "required": ["kind", *sorted(required)],
            "additionalProperties": False,
        }

    def check_options(self, options: Mapping[str, Any]) -> None:
        """The class's own checks across options (``check_options`` classmethod), before any job; ValueError."""
        check = getattr(self.cls, "check_options", None)
        if check is not None:
            check(dict(options))

    def build(self, options: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
        params = inspect.signature(self.cls.__init__).parameters
        needed = {n for n in self.context if params[n].default is inspect.Parameter.empty}
        missing = sorted(needed - set(context))
        if missing:
            raise PluginError(f"reward kind {self.kind!r} needs {missing} from its task, which did not supply them")
        return self.cls(**options, **{name: context[name] for name in self.context if name in context})


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: the package implementing :class:`rewarded_soups.tasks.base.Task` and its files.

    ``reads``: keys of the generic config sections that the task itself adds
    (through its schema) and that a stage reads, as dotted paths per stage,
    e.g. ``{"merge": ("merge.my_option",)}``. They reach only those stages'
    jobs, so changing one reruns exactly what reads it.
    """

    kind: str
    module: str
    modality: str  # what its models produce; its rewards must score this
    schema: Path
    environment: Path  # conda environment file of its jobs
    baselines: tuple[str, ...] = ()  # "ensemble", "wise" (paper Figures 5c, 14e)
    reads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def implementation(self) -> ModuleType:
        return importlib.import_module(self.module)

    def implements(self, hook: str) -> bool:
        """Whether the task defines an optional hook (``qualitative``, ``fisher``, ``check_settings``, ...)."""
        return callable(getattr(self.implementation(), hook, None))


_REWARDS: dict[str, RewardSpec] = {}
_TASKS: dict[str, TaskSpec] = {}
_discovered = False


def _same_definition(a: Any, b: Any) -> bool:
    # A module imported twice (e.g. as a script and as a module) defines equal, not identical, objects.
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def reward(
    kind: str,
    *,
    modality: str,
    metric: bool = False,
    higher_is_better: bool = True,
    uses_device: bool = False,
    context: tuple[str, ...] = (),
    bounds: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[[type], type]:
    """Class decorator registering a reward (or, with ``metric=True``, a quality metric) as ``kind``.

    The class is called as ``cls(**options, **context)`` and its instances as
    the task's modality requires (for generated text, ``reward(prompts, completions)``).
    Its constructor's keyword arguments are the options a config may give
    (type hints and defaults document them); ``context`` names those the task
    supplies at run time instead (θ0's directory, the training references).
    The docstring's first paragraph is the reward's description.

    Options are checked before any job: their types from the constructor's
    type hints, ``bounds`` adds JSON-schema keywords per option (``{"n":
    {"minimum": 1, "maximum": 4}}``), and a ``check_options(cls, options)``
    classmethod raising ``ValueError("option: what is wrong")`` checks
    options against each other (it must not load anything heavy).
    """

    def register(cls: type) -> type:
        spec = RewardSpec(
            kind, cls, modality, metric, higher_is_better, uses_device, frozenset(context), dict(bounds or {})
        )
        unknown = set(spec.bounds) - set(inspect.signature(cls.__init__).parameters)
        if unknown:
            raise PluginError(f"reward kind {kind!r}: bounds for options {sorted(unknown)} it does not take")
        if not spec.doc:
            raise PluginError(
                f"reward kind {kind!r} ({cls.__qualname__}): give the class a docstring saying what it scores"
            )
        existing = _REWARDS.get(kind)
        if existing is not None and not _same_definition(existing.cls, cls):
            raise PluginError(
                f"reward kind {kind!r} is registered twice: {existing.module}.{existing.cls.__qualname__} "
                f"and {cls.__module__}.{cls.__qualname__}; rename one"
            )
        _REWARDS[kind] = spec
        return cls

    return register


def register_task(
    kind: str,
    *,
    module: str,
    modality: str,
    schema: str | Path = "schema.yaml",
    environment: str | Path = "environment.yaml",
    baselines: tuple[str, ...] = (),
    reads: Mapping[str, tuple[str, ...]] | None = None,
) -> TaskSpec:
    """Register the task package ``module`` (call it from the package's ``__init__``: ``module=__name__``).

    ``schema`` and ``environment`` are relative to the package's directory:
    the JSON schema of the task's own config sections (data, pretrain,
    finetune, evaluate, and keys it adds to merge or plots) and the conda
    environment its jobs run in.
    """
    found = importlib.util.find_spec(module)
    if found is None or not found.origin:
        raise PluginError(f"task kind {kind!r}: module {module} not found")
    root = Path(found.origin).parent
    spec = TaskSpec(
        kind=kind,
        module=module,
        modality=modality,
        schema=(root / schema).resolve(),
        environment=(root / environment).resolve(),
        baselines=tuple(baselines),
        reads=dict(reads or {}),
    )
    for path in (spec.schema, spec.environment):
        if not path.is_file():
            raise PluginError(f"task kind {kind!r}: {path} does not exist")
    unknown = set(spec.baselines) - {"ensemble", "wise"}
    if unknown:
        raise PluginError(f"task kind {kind!r}: unknown baselines {sorted(unknown)}; known: ensemble, wise")
    existing = _TASKS.get(kind)
    if existing is not None and existing.module != module:
        raise PluginError(f"task kind {kind!r} is registered twice: {existing.module} and {module}; rename one")
    _TASKS[kind] = spec
    return spec


def discover() -> None:
    """Import every built-in plug-in module and every entry point of ``rewarded_soups.plugins`` (once)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for package_name in BUILTIN_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__, prefix=f"{package_name}."):
            importlib.import_module(info.name)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as err:
            raise PluginError(
                f"plug-in {entry.name!r} ({entry.value}, entry point group {ENTRY_POINT_GROUP}) failed to load: {err}"
            ) from err


def rewards() -> dict[str, RewardSpec]:
    """Every registered reward and metric kind."""
    discover()
    return dict(_REWARDS)


def tasks() -> dict[str, TaskSpec]:
    """Every registered task kind."""
    discover()
    return dict(_TASKS)


def reward_spec(kind: str) -> RewardSpec:
    """The registered reward or metric kind ``kind``."""
    registered = rewards()
    if kind not in registered:
        raise KeyError(f"unknown reward kind {kind!r}; registered: {sorted(registered)}")
    return registered[kind]


def task_spec(kind: str) -> TaskSpec:
    registered = tasks()
    if kind not in registered:
        raise KeyError(f"unknown task kind {kind!r}; registered: {sorted(registered)}")
    return registered[kind]


def load_task(kind: str) -> Any:
    """The module implementing task kind ``kind``."""
    return task_spec(kind).implementation()


def build_reward(settings: Mapping[str, Any], *, context: Mapping[str, Any] | None = None) -> Any:
    """Instantiate a reward (or metric) from its config entry ``{kind: ..., options...}``.

    ``context``: what the task can supply (a reward takes the entries it declares).
    """
    spec = reward_spec(settings["kind"])
    return spec.build({k: v for k, v in settings.items() if k != "kind"}, context or {})
