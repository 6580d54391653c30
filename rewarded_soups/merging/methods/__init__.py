"""Merge methods: how the experts' tensors and their weights λ become one tensor of the soup.

A method is one class in one module of this package, registered with
:func:`merge_method`; the engine (:mod:`rewarded_soups.merging.engine`) only
asks it what it declares:

* its options: the keyword arguments of its constructor, with their type
  hints and defaults (the config's ``merge.<method>`` section; ``bounds``
  adds JSON-schema keywords);
* what it needs: θ0 (``needs_base``: methods on task vectors τ_i = θ_i − θ0),
  each expert's diagonal Fisher (``needs_fisher``; the workflow then
  estimates them), the workflow's seed (``needs_seed``: its constructor
  takes ``seed``), at most ``max_experts`` experts;
* how it behaves: ``elementwise`` (entry by entry, so that a large tensor may
  be merged in blocks of rows), :meth:`MergeMethod.returns_expert_at_vertex`
  (with one weight 1 the engine copies that expert's tensor exactly),
  :meth:`MergeMethod.exact_lora_scale` (a method linear in the experts'
  updates can merge LoRA adapters exactly, ``lora_mode: exact``; the others
  combine the A and B factors entry by entry and need ``lora_mode: paper``),
  ``extrapolates`` (λ outside the simplex makes sense: the config's
  ``lambda_range`` adds such soups).

Methods on task vectors derive from :class:`TaskVectorMethod`, which computes
the τ_i (the tensors themselves for LoRA adapters, which already are updates
of θ0) and adds θ0 back: a method of that kind only combines the τ_i.

Modules here must not import torch at module level: the workflow reads the
catalogue while Snakemake parses the DAG.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch


class MergeMethod:
    """The base of every method: options are constructor arguments; :meth:`combine` makes one tensor."""

    name: ClassVar[str] = ""
    needs_base: ClassVar[bool] = False
    needs_fisher: ClassVar[bool] = False
    needs_seed: ClassVar[bool] = False
    elementwise: ClassVar[bool] = False
    # Whether a λ grid of this method can be built in one pass over the experts (rewarded_soups.merging.grid),
    # bit for bit the per-soup merges (tests/test_merge_grid.py checks each method that says so).
    one_pass: ClassVar[bool] = False
    extrapolates: ClassVar[bool] = False
    max_experts: ClassVar[int | None] = None
    bounds: ClassVar[dict[str, dict[str, Any]]] = {}

    def returns_expert_at_vertex(self) -> bool:
        """Whether, with one weight 1 and the others 0, the method gives that expert (the engine copies it)."""
        return self.exact_lora_scale() == 1.0

    def combine_rounded_once(self, tensors: list[torch.Tensor], weights: Sequence[float]) -> torch.Tensor | None:
        """The combination computed straight on 16-bit tensors with one rounding to their dtype (float32 inside),
        or None when the method has no such kernel: the engine then converts to float32 and back.

        Within one rounding of the float32 sum, not bit for bit: used only where the accumulation is float32
        (``accumulate: auto`` or ``float32`` on 16-bit experts), where the soup is rounded once anyway.
        """
        return None

    def exact_lora_scale(self) -> float | None:
        """s when the soup is θ0 + s · Σ λ_i τ_i (linear in the updates), else None.

        Such a method merges LoRA adapters exactly by stacking their ranks,
        each A_i scaled by s λ_i (``lora_mode: exact``).
        """
        return None

    def combine(
        self,
        tensors: list[torch.Tensor],
        weights: Sequence[float],
        base: torch.Tensor | None = None,
        *,
        name: str = "",
        fishers: list[torch.Tensor] | None = None,
        inplace: bool = False,
    ) -> torch.Tensor:
        """The soup's tensor from the experts' ``tensors`` (in the accumulation dtype) and their ``weights``.

        ``base``: θ0's tensor for methods that need it (None for LoRA
        adapters). ``name``: the tensor's name. ``fishers``: the experts'
        Fisher tensors (methods that need them; None where a tensor has
        none). ``inplace``: the tensors were read for this call only and may
        be overwritten.
        """
        raise NotImplementedError

    @classmethod
    def options(cls) -> dict[str, Any]:
        """The options a config may give, with their defaults (the constructor's keyword arguments)."""
        params = inspect.signature(cls.__init__).parameters
        hidden = {"self", "seed"}
        return {
            name: param.default
            for name, param in params.items()
            if name not in hidden and param.kind is inspect.Parameter.KEYWORD_ONLY
        }

    @classmethod
    def doc(cls) -> str:
        """The first paragraph of the class docstring, as one line."""
        text = inspect.getdoc(cls) or ""
        return " ".join(text.split("\n\n")[0].split())

    @classmethod
    def section_schema(cls) -> dict[str, Any]:
        """JSON schema of ``merge.<name>``: the options, plus the keys the workflow adds for what the method needs.

        ``lambda_range`` for a method that extrapolates (which soups exist, not
        how one is made); ``samples`` for one that needs Fisher matrices (how
        many inputs each expert's Fisher is estimated on).
        """
        from rewarded_soups.registry import type_schema

        try:
            hints = typing.get_type_hints(cls.__init__)
        except Exception:  # an annotation that cannot be evaluated: options stay untyped
            hints = {}
        properties: dict[str, Any] = {}
        for option, default in cls.options().items():
            properties[option] = {**type_schema(hints.get(option)), **cls.bounds.get(option, {}), "default": default}
        if cls.extrapolates:
            properties["lambda_range"] = {
                "type": "array",
                "items": {"type": "number"},
                "minItems": 2,
                "maxItems": 2,
                "default": [0.0, 1.0],
                "description": "λ of each pair's first expert; beyond [0, 1] it extrapolates on the grid's step",
            }
        if cls.needs_fisher:
            properties["samples"] = {
                "type": "integer",
                "minimum": 1,
                "default": 64,
                "description": "fine-tuning inputs each expert's diagonal Fisher is estimated on",
            }
        return {"type": "object", "additionalProperties": False, "default": {}, "properties": properties}


def weighted_sum(tensors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Σ λ_i θ_i: multiply, then add (not add_ with alpha, which may fuse), the rounding of the sum as written."""
    acc = tensors[0] * float(weights[0])
    for tensor, weight in zip(tensors[1:], weights[1:]):
        acc += tensor * float(weight)
    return acc


def weighted_sum_(tensors: list[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """:func:`weighted_sum` in place, overwriting ``tensors`` (the same rounding, a third of the memory)."""
    acc = tensors[0].mul_(float(weights[0]))
    for i in range(1, len(tensors)):
        acc += tensors[i].mul_(float(weights[i]))
        tensors[i] = None  # type: ignore[call-overload]
    return acc


class TaskVectorMethod(MergeMethod):
    """A method on task vectors: θ0 + combine_updates(τ_1 … τ_N); LoRA adapters are their own τ."""

    needs_base: ClassVar[bool] = True

    def combine_updates(self, vectors: list[torch.Tensor], weights: Sequence[float], *, name: str) -> torch.Tensor:
        raise NotImplementedError

    def combine(self, tensors, weights, base=None, *, name="", fishers=None, inplace=False):
        vectors = list(tensors) if base is None else [t - base for t in tensors]
        update = self.combine_updates(vectors, weights, name=name)
        return update if base is None else update.add_(base)


_METHODS: dict[str, type[MergeMethod]] = {}
_discovered = False


def merge_method(
    name: str, *, bounds: dict[str, dict[str, Any]] | None = None
) -> Callable[[type[MergeMethod]], type[MergeMethod]]:
    """Class decorator registering a :class:`MergeMethod` under ``name`` (the config's ``merge.method``).

    ``bounds``: JSON-schema keywords per option, checked before any job
    (``{"density": {"exclusiveMinimum": 0, "maximum": 1}}``).
    """

    def register(cls: type[MergeMethod]) -> type[MergeMethod]:
        if not cls.doc():
            raise ValueError(f"merge method {name!r} ({cls.__qualname__}): give the class a docstring")
        existing = _METHODS.get(name)
        if existing is not None and (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"merge method {name!r} is registered twice: {existing.__module__} and {cls.__module__}")
        unknown = set(bounds or {}) - set(cls.options())
        if unknown:
            raise ValueError(f"merge method {name!r}: bounds for options {sorted(unknown)} it does not take")
        cls.name = name
        cls.bounds = dict(bounds or {})
        _METHODS[name] = cls
        return cls

    return register


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True
        for info in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
            importlib.import_module(info.name)


def methods() -> dict[str, type[MergeMethod]]:
    """Every registered merge method, by name."""
    _discover()
    return dict(_METHODS)


def get(name: str) -> type[MergeMethod]:
    """The method registered as ``name``."""
    registered = methods()
    if name not in registered:
        raise KeyError(f"unknown merge method {name!r}; available: {sorted(registered)}")
    return registered[name]


def build(name: str, options: dict[str, Any] | None = None) -> MergeMethod:
    """An instance of method ``name`` with ``options`` (unknown options are an error naming them)."""
    cls = get(name)
    options = dict(options or {})
    known = set(cls.options()) | ({"seed"} if cls.needs_seed else set())
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"merge method {name!r} takes options {sorted(known)}, not {unknown}")
    return cls(**options)
