"""The merge engine: experts' safetensors checkpoints in, a soup out, one tensor at a time.

A task describes *what* to merge with a :class:`MergeSpec` (the experts'
directories, λ, the checkpoint files inside them, files to copy, θ0 for task
vectors, tensors that must be kept as they are). :func:`merge` then streams:
for each tensor, it reads that tensor from every expert (``safe_open``,
lazily), combines them in the accumulation dtype with the chosen method
(:mod:`rewarded_soups.merging.methods`), casts back to the experts' dtype and
appends it to the output file, whose header was written first. Peak memory is
a few tensors, whatever the number of experts and the model size. The output
mirrors the first expert's layout (one file, or the same shards and index).

Two ways to store a soup (``store``):

* ``full`` — the merged files, written into a temporary directory next to
  ``out_dir`` and renamed into place when complete, so that a crash never
  leaves a complete-looking soup;
* ``recipe`` — ``recipe.json`` only: λ, the method, and the experts' paths with
  content hashes. :func:`materialize` builds the soup in memory (on the
  evaluation job's device) when it is needed, refusing experts whose files
  changed since the recipe was written.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from rewarded_soups import fingerprint
from rewarded_soups.merging.checkpoint import Checkpoint, TensorInfo, checkpoint_file
from rewarded_soups.merging.methods import MergeMethod, build
from rewarded_soups.merging.spec import MergeSpec
from rewarded_soups.merging.writer import SafetensorsWriter

log = logging.getLogger(__name__)

RECIPE_FILE = "recipe.json"
RECIPE_FORMAT = "rewarded-soups-recipe/1"
INFO_FILE = "merge.json"
STORES = ("full", "recipe")
ACCUMULATE = ("auto", "float32", "float64")
# Large tensors are merged in blocks of about this many entries (elementwise methods), so that peak
# memory does not grow with the largest tensor (embeddings of big vocabularies).
BLOCK_ELEMENTS = 1 << 23
READ_AHEAD = 1  # tensors whose inputs are read while the current one is merged
LORA_A = re.compile(r"\.lora_A(\.[^.]+)?\.weight$")
LORA_B = re.compile(r"\.lora_B(\.[^.]+)?\.weight$")


@dataclass(frozen=True)
class MergeSettings:
    method: str = "linear"
    options: dict[str, Any] = field(default_factory=dict)
    accumulate: str = "auto"  # auto: float32 for 16-bit experts, float64 for 32/64-bit (the earlier behaviour)

    def __post_init__(self) -> None:
        self.build_method()
        if self.accumulate not in ACCUMULATE:
            raise ValueError(f"unknown accumulation dtype {self.accumulate!r}; choose one of {ACCUMULATE}")

    def build_method(self) -> MergeMethod:
        return build(self.method, self.options)

    @classmethod
    def from_config(cls, merge_settings: dict[str, Any]) -> MergeSettings:
        """The workflow's ``merge`` settings (method, its options, accumulation dtype)."""
        return cls(
            method=merge_settings.get("method", "linear"),
            options=dict(merge_settings.get("options") or {}),
            accumulate=merge_settings.get("accumulate", "auto"),
        )


def accumulation_dtype(setting: str, dtype: torch.dtype) -> torch.dtype:
    if setting == "auto":
        return torch.float64 if dtype in (torch.float32, torch.float64) else torch.float32
    return getattr(torch, setting)


def _open(directory: Path, file: str, stack: ExitStack, device: str) -> Checkpoint:
    return stack.enter_context(Checkpoint(checkpoint_file(directory, file), device=device))


def _check_alike(name: str, members: list[Checkpoint], what: str = "expert") -> list[TensorInfo]:
    infos = []
    for i, ckpt in enumerate(members):
        if name not in ckpt.weight_map:
            raise ValueError(f"tensor {name!r} is in {members[0].path} but not in {what} {i} ({ckpt.path})")
        infos.append(ckpt.info(name))
    first = infos[0]
    for ckpt, info in zip(members[1:], infos[1:]):
        if info.shape != first.shape:
            raise ValueError(
                f"tensor {name!r} has shape {first.shape} in {members[0].path} but {info.shape} in {ckpt.path}"
            )
        if info.dtype != first.dtype:
            raise ValueError(
                f"tensor {name!r} has dtype {first.dtype} in {members[0].path} but {info.dtype} in {ckpt.path}"
            )
    return infos


class _Sources:
    """The open checkpoints of one file of a merge, checked for matching tensors."""

    def __init__(self, spec: MergeSpec, file: str, settings: MergeSettings, stack: ExitStack, device: str):
        self.spec, self.settings, self.device = spec, settings, device
        self.method = settings.build_method()
        self.kept = [(w, i) for i, w in enumerate(spec.weights) if w != 0]
        if not self.kept:
            raise ValueError(f"every weight is zero: {spec.weights}")
        most = self.method.max_experts
        if most is not None and len(self.kept) > most:
            raise ValueError(f"merge method {settings.method} combines at most {most} experts, got {len(self.kept)}")
        self.members = [_open(m, file, stack, "cpu") for m in spec.members]
        names = self.members[0].keys()
        for i, ckpt in enumerate(self.members[1:], start=1):
            extra = sorted(set(ckpt.keys()) - set(names))
            if extra:
                raise ValueError(
                    f"tensor {extra[0]!r} is in expert {i} ({ckpt.path}) but not in {self.members[0].path}"
                )
        self.names = names
        self.infos = {name: _check_alike(name, self.members)[0] for name in names}
        self.base = None
        if self.method.needs_base and spec.base is not None:
            self.base = _open(spec.base, file, stack, "cpu")
            for name in names:
                _check_alike(name, [self.members[0], self.base], what="θ0")
        if self.method.needs_base and spec.base is None and spec.lora is None:
            raise ValueError(f"merge method {settings.method} works on task vectors θ_i − θ0 and needs θ0 (base)")
        self.fishers = None
        if self.method.needs_fisher:
            if not spec.fishers:
                raise ValueError(f"merge method {settings.method} needs each expert's Fisher (spec.fishers)")
            self.fishers = [_open(f, file, stack, "cpu") for f in spec.fishers]
        # LoRA ranks stacked (B A = s Σ λ_i B_i A_i): only for a method linear in the updates.
        self.lora_scale = self.method.exact_lora_scale() if spec.lora == "exact" else None
        if spec.lora == "exact" and self.lora_scale is None:
            raise ValueError(
                f"the exact LoRA combination concatenates ranks; method {settings.method} needs the paper combination"
            )
        self.keep = re.compile(spec.keep) if spec.keep else None

    def output_info(self, name: str) -> TensorInfo:
        info = self.infos[name]
        if self.lora_scale is not None:
            k = len(self.kept)
            if LORA_A.search(name):
                return TensorInfo(info.dtype, (info.shape[0] * k, *info.shape[1:]))
            if LORA_B.search(name):
                return TensorInfo(info.dtype, (info.shape[0], info.shape[1] * k, *info.shape[2:]))
        return info

    def _same_everywhere(self, name: str) -> torch.Tensor:
        first = self.members[0].get(name)
        for i, ckpt in enumerate(self.members[1:], start=1):
            if not torch.equal(ckpt.get(name), first):
                raise ValueError(
                    f"tensor {name!r} must be the same in every expert (it is not interpolated) but expert {i} "
                    f"({ckpt.path}) differs from {self.members[0].path}"
                )
        return first

    def merged(self, name: str) -> torch.Tensor:
        """The soup's tensor ``name``, whole."""
        blocks = list(self.blocks(name))
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks)

    def _row_blocks(self, name: str) -> list[tuple[int, int]] | None:
        """Row ranges to merge a large tensor in, or None to merge it whole."""
        shape = self.infos[name].shape
        if len(shape) == 0 or shape[0] <= 1:
            return None
        rows = shape[0]
        row_size = math.prod(shape[1:])
        if rows * row_size <= BLOCK_ELEMENTS:
            return None
        step = max(1, BLOCK_ELEMENTS // row_size)
        return [(r, min(rows, r + step)) for r in range(0, rows, step)]

    def _mode(self, name: str) -> str:
        """How tensor ``name`` is made: kept as is, copied from one expert, LoRA ranks stacked, or merged."""
        info = self.infos[name]
        if not info.dtype.is_floating_point or (self.keep is not None and self.keep.search(name)):
            return "same"
        if len(self.kept) == 1 and self.kept[0][0] == 1.0 and self.method.returns_expert_at_vertex():
            return "copy"
        if self.lora_scale is not None and (LORA_A.search(name) or LORA_B.search(name)):
            return "lora_a" if LORA_A.search(name) else "lora_b"
        return "merge"

    def read(self, name: str) -> dict[str, Any]:
        """The input tensors of ``name`` in their own dtype (run ahead of the arithmetic by a reader thread)."""
        mode = self._mode(name)
        if mode == "same":
            return {"same": self._same_everywhere(name)}
        members = [self.members[i].get(name) for _, i in self.kept]
        inputs: dict[str, Any] = {"members": members}
        if mode == "merge":
            with_fisher = self.fishers is not None and all(name in self.fishers[i].weight_map for _, i in self.kept)
            inputs["fishers"] = [self.fishers[i].get(name) for _, i in self.kept] if with_fisher else None
            inputs["base"] = self.base.get(name) if self.base is not None else None
        return inputs

    def blocks(self, name: str, inputs: dict[str, Any] | None = None) -> Iterator[torch.Tensor]:
        """The soup's tensor ``name`` as consecutive blocks of rows (peak memory: a block per expert)."""
        info = self.infos[name]
        mode = self._mode(name)
        inputs = self.read(name) if inputs is None else inputs
        if mode == "same":
            yield inputs["same"]
            return
        if mode == "copy":  # one expert: exactly its tensor
            yield inputs["members"][0]
            return
        weights = [w for w, _ in self.kept]
        acc = accumulation_dtype(self.settings.accumulate, info.dtype)
        if mode in ("lora_a", "lora_b"):
            tensors = [t.to(self.device, acc) for t in inputs["members"]]
            scale = self.lora_scale
            if mode == "lora_a":  # A is (r, in): stack the ranks, each scaled by λ_i
                yield torch.cat([t * (w * scale) for t, w in zip(tensors, weights)], dim=0).to(info.dtype)
            else:  # B is (out, r): side by side, so that B A = Σ λ_i B_i A_i
                yield torch.cat(tensors, dim=1).to(info.dtype)
            return
        fishers = inputs["fishers"]  # None for a tensor without Fisher values (a frozen weight, a buffer)
        ranges = self._row_blocks(name) if self.method.elementwise else None

        def part(key: tuple[str, int], tensor: torch.Tensor, start: int | None, stop: int | None) -> torch.Tensor:
            return self._converted(key, name, tensor, start, stop, acc)

        # 16-bit experts summed in float32: a method's one-pass kernel, where it has one, rounds once as well.
        rounded_once = (
            fishers is None
            and inputs["base"] is None
            and info.dtype in (torch.bfloat16, torch.float16)
            and acc == torch.float32
        )
        for start, stop in ranges or [(None, None)]:
            if rounded_once:
                raw = [(t if start is None else t[start:stop]).to(self.device) for t in inputs["members"]]
                merged = self.method.combine_rounded_once(raw, weights)
                if merged is not None:
                    yield merged
                    continue
            # Keyed by the member's index in the spec: a grid's soups keep different members (λ = 0 dropped).
            kept = [i for _, i in self.kept]
            tensors = [part(("member", i), t, start, stop) for i, t in zip(kept, inputs["members"], strict=True)]
            block_fishers = (
                None if fishers is None else [part(("fisher", i), f, start, stop) for i, f in zip(kept, fishers)]
            )
            base = part(("base", 0), inputs["base"], start, stop) if inputs["base"] is not None else None
            # inplace: the tensors were converted for this combination only (unless shared by a grid's soups).
            merged = self.method.combine(
                tensors, weights, base, name=name, fishers=block_fishers, inplace=not self.shares_conversions
            )
            yield merged.to(info.dtype)

    # A grid's soups share their converted inputs (rewarded_soups.merging.grid): combined out of place then.
    shares_conversions = False

    def _converted(
        self, key: tuple[str, int], name: str, tensor: torch.Tensor, start: int | None, stop: int | None, acc
    ) -> torch.Tensor:
        """A block of an input in the accumulation dtype on the device. Inputs are read whole in their own dtype
        (one pread; safetensors' slices are slower) and converted block by block."""
        return (tensor if start is None else tensor[start:stop]).to(self.device, acc)


def _stream(spec: MergeSpec, file: str, settings: MergeSettings, device: str) -> Iterator[tuple[str, Any]]:
    """Yield ("layout", sources) once, then (name, blocks of the merged tensor) in output order.

    A reader thread reads the next tensor's inputs while this one is computed
    (preads release the GIL).
    """
    with ExitStack() as stack:
        sources = _Sources(spec, file, settings, stack, device)
        yield "layout", sources
        if READ_AHEAD == 0:
            for name in sources.names:
                yield name, sources.blocks(name)
            return
        names = iter(sources.names)
        with ThreadPoolExecutor(max_workers=1) as reader:
            ahead: deque = deque()
            for name in itertools.islice(names, READ_AHEAD):
                ahead.append((name, reader.submit(sources.read, name)))
            while ahead:
                name, future = ahead.popleft()
                inputs = future.result()
                following = next(names, None)
                if following is not None:
                    ahead.append((following, reader.submit(sources.read, following)))
                yield name, sources.blocks(name, inputs)
                del inputs


def _write_file(spec: MergeSpec, file: str, settings: MergeSettings, out_dir: Path, device: str) -> int:
    """Merge one checkpoint file of the experts into ``out_dir``, mirroring the first expert's layout.

    A writer thread appends each block to its file while the next is computed
    (file writes release the GIL); at most two blocks wait.
    """
    out_dir = out_dir / Path(file).parent  # e.g. unet/ for unet/diffusion_pytorch_model.safetensors
    out_dir.mkdir(parents=True, exist_ok=True)
    stream = _stream(spec, file, settings, device)
    _, sources = next(stream)
    first = sources.members[0]
    shards = list(dict.fromkeys(first.shard_of(n) for n in sources.names))
    metadata = first.file_metadata or {"format": "pt"}
    writers: dict[str, SafetensorsWriter] = {}
    written = 0
    try:
        for shard in shards:
            entries = [(n, sources.output_info(n)) for n in sources.names if first.shard_of(n) == shard]
            writers[shard] = SafetensorsWriter(out_dir / shard, entries, metadata)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: deque = deque()
            for name, blocks in stream:
                writer = writers[first.shard_of(name)]
                for block in blocks:
                    written += block.numel() * block.element_size()
                    pending.append(pool.submit(writer.write_block, name, block))
                    while len(pending) > 2:
                        pending.popleft().result()
            for future in pending:
                future.result()
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        stream.close()
        raise
    if first.sharded:
        index = json.loads(first.path.read_text())
        total = sum(sources.output_info(n).nbytes for n in sources.names)
        index["metadata"] = {**index.get("metadata", {}), "total_size": total}
        (out_dir / first.path.name).write_text(json.dumps(index, indent=2) + "\n")
    return written


def _copy(spec: MergeSpec, out_dir: Path) -> None:
    for name in spec.copy:
        src = spec.members[0] / name
        dst = out_dir / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if name in spec.json_updates:
            data = json.loads(src.read_text())
            data.update(spec.json_updates[name])
            dst.write_text(json.dumps(data, indent=2) + "\n")
        else:
            shutil.copy2(src, dst)


def _fingerprints(spec: MergeSpec) -> dict[str, dict[str, Any]]:
    paths = [*spec.members, *([spec.base] if spec.base else []), *(spec.fishers or [])]
    out = {}
    for path in paths:
        files = fingerprint.listing(path)
        out[str(path)] = {"files": files, "sha256": fingerprint.content_hash(path, files)}
    return out


def _spec_json(spec: MergeSpec, relative_to: Path) -> dict[str, Any]:
    data = asdict(spec)

    def rel(p: Path | None) -> str | None:
        return None if p is None else os.path.relpath(Path(p).resolve(), relative_to.resolve())

    data["members"] = [rel(m) for m in spec.members]
    data["base"] = rel(spec.base)
    data["fishers"] = [rel(f) for f in spec.fishers] if spec.fishers else None
    return data


def _publish(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        if any(out_dir.iterdir()):
            raise FileExistsError(f"{out_dir} exists and is not empty; remove it to merge again")
        out_dir.rmdir()
    os.replace(tmp, out_dir)


def merge(
    spec: MergeSpec, out_dir: Path, settings: MergeSettings | None = None, *, store: str = "full", device: str = "cpu"
) -> dict[str, Any]:
    """Write the soup of ``spec`` into ``out_dir`` (a new directory); return what was done."""
    settings = settings or MergeSettings()
    if store not in STORES:
        raise ValueError(f"unknown merge store {store!r}; choose one of {STORES}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    start = time.perf_counter()
    info: dict[str, Any] = {"method": settings.method, "options": settings.options, "weights": spec.weights}
    try:
        if store == "recipe":
            # Check now that the experts merge (names, shapes, dtypes), not at evaluation.
            for file in spec.files:
                with ExitStack() as stack:
                    _Sources(spec, file, settings, stack, "cpu")
            recipe = {
                "format": RECIPE_FORMAT,
                "settings": asdict(settings),
                "spec": _spec_json(spec, out_dir),
                "fingerprints": {
                    os.path.relpath(Path(p).resolve(), out_dir.resolve()): fp for p, fp in _fingerprints(spec).items()
                },
            }
            (tmp / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n")
        else:
            written = sum(_write_file(spec, f, settings, tmp, device) for f in spec.files)
            _copy(spec, tmp)
            info["bytes_written"] = written
            (tmp / INFO_FILE).write_text(
                json.dumps({**info, "members": [str(m) for m in spec.members], "base": str(spec.base)}, indent=2)
            )
        _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info["seconds"] = time.perf_counter() - start
    log.info(
        "merged %s with λ %s (%s, store %s) in %.2f s",
        [m.name for m in spec.members],
        spec.weights,
        settings.method,
        store,
        info["seconds"],
    )
    return info


def is_recipe(model_dir: Path | None) -> bool:
    return model_dir is not None and (Path(model_dir) / RECIPE_FILE).exists()


@dataclass
class Materialized:
    """A model directory as loaders see it: ``template`` holds configs; ``tensors`` replace its checkpoint files."""

    template: Path
    tensors: dict[str, dict[str, torch.Tensor]]
    json_updates: dict[str, dict[str, Any]]

    def config(self, name: str) -> dict[str, Any]:
        data = json.loads((self.template / name).read_text())
        data.update(self.json_updates.get(name, {}))
        return data


def read_recipe(model_dir: Path) -> tuple[MergeSpec, MergeSettings]:
    model_dir = Path(model_dir)
    recipe = json.loads((model_dir / RECIPE_FILE).read_text())
    if recipe.get("format") != RECIPE_FORMAT:
        raise ValueError(f"{model_dir / RECIPE_FILE} is not a {RECIPE_FORMAT} recipe")
    data = dict(recipe["spec"])

    def resolve(p: str | None) -> Path | None:
        return None if p is None else (model_dir / p).resolve()

    for rel, fp in recipe["fingerprints"].items():
        path = resolve(rel)
        if not fingerprint.unchanged(path, fp["files"], fp["sha256"]):
            raise RuntimeError(
                f"{path}, a member of the soup recipe {model_dir}, changed or vanished since the recipe was written; "
                "rerun the soup (snakemake reruns it when the workflow rebuilds an expert)"
            )
    data["members"] = [resolve(m) for m in data["members"]]
    data["base"] = resolve(data["base"])
    data["fishers"] = [resolve(f) for f in data["fishers"]] if data.get("fishers") else None
    return MergeSpec(**data), MergeSettings(**recipe["settings"])


def materialize(model_dir: Path, device: str | torch.device = "cpu") -> Materialized:
    """A soup ready to load: a full directory as it is, or a recipe merged in memory on ``device``."""
    model_dir = Path(model_dir)
    if not is_recipe(model_dir):
        return Materialized(model_dir, {}, {})
    spec, settings = read_recipe(model_dir)
    start = time.perf_counter()
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for file in spec.files:
        stream = _stream(spec, file, settings, str(device))
        _, sources = next(stream)
        tensors[file] = {name: sources.merged(name).to(device) for name in sources.names}
        stream.close()
    log.info("built the soup of %s in memory on %s in %.2f s", model_dir, device, time.perf_counter() - start)
    return Materialized(spec.members[0], tensors, spec.json_updates)


def load_state(model_dir: Path, file: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of one checkpoint file of a model directory (full or recipe)."""
    merged = materialize(model_dir, device)
    if merged.tensors:
        return merged.tensors[file]
    with Checkpoint(checkpoint_file(model_dir, file)) as ckpt:
        return {name: ckpt.get(name).to(device) for name in ckpt.keys()}


def run(spec: MergeSpec, out_dir: Path, merge_settings: dict[str, Any]) -> dict[str, Any]:
    """Merge as the workflow's ``merge`` section says (method, its options, store, accumulation dtype).

    The merge runs on the job's GPU when it was given one.
    """
    from rewarded_soups.gpus import torch_device

    settings = MergeSettings.from_config(merge_settings)
    return merge(spec, out_dir, settings, store=merge_settings.get("store", "full"), device=str(torch_device()))
