"""A whole λ grid in one pass: each expert tensor is read once and that tensor of every soup written.

:func:`merge_grid` takes the specs of several soups of the same experts (a
pair's λ grid, a simplex lattice) and streams the experts' files once,
instead of once per soup as :func:`~rewarded_soups.merging.engine.merge`
does. Memory stays bounded by a few tensors times the number of soups,
whatever the model size. Each soup is written to its own ``.partial``
directory and published (renamed) only once every soup is complete, so a
crash mid-grid leaves no complete-looking soup. The soups are bit for bit the
per-soup merges' (tests/test_merge_grid.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from rewarded_soups.merging.engine import (
    INFO_FILE,
    MergeSettings,
    _copy,
    _publish,
    _Sources,
)
from rewarded_soups.merging.spec import MergeSpec
from rewarded_soups.merging.writer import SafetensorsWriter

log = logging.getLogger(__name__)

# What every soup of a grid must share: the same expert files, read once for all of them.
SHARED = ("members", "files", "copy", "base", "lora", "keep", "fishers")


class _SharedReads(_Sources):
    """A soup's sources whose input tensors, and their blocks in the accumulation dtype, come from caches shared
    by every soup of the grid: each expert tensor is read once and each of its blocks converted once."""

    fetched: dict[tuple[str, int], torch.Tensor]
    converted: dict[tuple, torch.Tensor]
    shares_conversions = True

    def _converted(self, key, name, tensor, start, stop, acc):
        # The soups advance block by block together (merge_grid): only the current block's conversions are kept.
        block = (name, start, stop, str(acc))
        if self.converted.get("block") != block:
            self.converted.clear()
            self.converted["block"] = block
        if key not in self.converted:
            self.converted[key] = super()._converted(key, name, tensor, start, stop, acc)
        return self.converted[key]

    def _get(self, kind: str, index: int, name: str) -> torch.Tensor:
        key = (kind, index)
        if key not in self.fetched:
            source = {"member": self.members, "fisher": self.fishers}[kind][index] if kind != "base" else self.base
            self.fetched[key] = source.get(name)
        return self.fetched[key]

    def read(self, name: str) -> dict[str, Any]:
        mode = self._mode(name)
        if mode == "same":
            return {"same": self._same_everywhere(name)}
        members = [self._get("member", i, name) for _, i in self.kept]
        inputs: dict[str, Any] = {"members": members}
        if mode == "merge":
            with_fisher = self.fishers is not None and all(name in self.fishers[i].weight_map for _, i in self.kept)
            inputs["fishers"] = [self._get("fisher", i, name) for _, i in self.kept] if with_fisher else None
            inputs["base"] = self._get("base", 0, name) if self.base is not None else None
        return inputs


def _check_grid(specs: Sequence[MergeSpec]) -> None:
    if not specs:
        raise ValueError("an empty grid: give at least one soup")
    for key in SHARED:
        values = {json.dumps(str(getattr(s, key))) for s in specs}
        if len(values) > 1:
            raise ValueError(f"the soups of a grid must share their {key}; got {sorted(values)}")


def merge_grid(
    specs: Sequence[MergeSpec],
    out_dirs: Sequence[Path],
    settings: MergeSettings | None = None,
    *,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Write the soup of each spec into its out_dir (new directories), reading each expert tensor once."""
    settings = settings or MergeSettings()
    specs, out_dirs = list(specs), [Path(d) for d in out_dirs]
    if len(specs) != len(out_dirs):
        raise ValueError(f"{len(specs)} soups but {len(out_dirs)} output directories")
    _check_grid(specs)
    start = time.perf_counter()
    tmps = []
    for out_dir in out_dirs:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        tmps.append(tmp)
    written = [0] * len(specs)
    writers: list[dict[str, SafetensorsWriter]] = []
    try:
        for file in specs[0].files:
            with ExitStack() as stack:
                fetched: dict[tuple[str, int], torch.Tensor] = {}
                converted: dict[tuple, torch.Tensor] = {}
                sources = []
                for spec in specs:
                    source = _SharedReads(spec, file, settings, stack, device)
                    source.fetched, source.converted = fetched, converted
                    sources.append(source)
                first = sources[0].members[0]
                shards = list(dict.fromkeys(first.shard_of(n) for n in sources[0].names))
                metadata = first.file_metadata or {"format": "pt"}
                writers = []
                for source, tmp in zip(sources, tmps):
                    folder = tmp / Path(file).parent
                    folder.mkdir(parents=True, exist_ok=True)
                    writers.append(
                        {
                            shard: SafetensorsWriter(
                                folder / shard,
                                [(n, source.output_info(n)) for n in source.names if first.shard_of(n) == shard],
                                metadata,
                            )
                            for shard in shards
                        }
                    )
                # A writer thread appends each block while the next is computed (file writes release the GIL);
                # at most two blocks wait, as in the engine's per-soup path.
                with ThreadPoolExecutor(max_workers=1) as pool:
                    pending: deque = deque()
                    for name in sources[0].names:
                        fetched.clear()
                        converted.clear()
                        # Block by block, every soup's block in turn: each input block is converted once. A soup
                        # that copies an expert (λ = 1) gives its tensor as one block: it runs out first.
                        for blocks in itertools.zip_longest(*(source.blocks(name) for source in sources)):
                            for k, block in enumerate(blocks):
                                if block is None:
                                    continue
                                written[k] += block.numel() * block.element_size()
                                pending.append(pool.submit(writers[k][first.shard_of(name)].write_block, name, block))
                                while len(pending) > 2 * len(sources):
                                    pending.popleft().result()
                    for future in pending:
                        future.result()
                for soup_writers in writers:
                    for writer in soup_writers.values():
                        writer.close()
                writers = []
                if first.sharded:
                    index = json.loads(first.path.read_text())
                    for source, tmp in zip(sources, tmps):
                        total = sum(source.output_info(n).nbytes for n in source.names)
                        entry = {**index, "metadata": {**index.get("metadata", {}), "total_size": total}}
                        (tmp / Path(file).parent / first.path.name).write_text(json.dumps(entry, indent=2) + "\n")
        infos = []
        for spec, tmp, nbytes in zip(specs, tmps, written):
            _copy(spec, tmp)
            info = {"method": settings.method, "options": settings.options, "weights": spec.weights}
            info |= {"bytes_written": nbytes, "grid": len(specs)}
            (tmp / INFO_FILE).write_text(
                json.dumps({**info, "members": [str(m) for m in spec.members], "base": str(spec.base)}, indent=2)
            )
            infos.append(info)
        # Published only now: a crash above leaves partial directories, never a complete-looking soup.
        for tmp, out_dir in zip(tmps, out_dirs):
            _publish(tmp, out_dir)
    except BaseException:
        for soup_writers in writers:
            for writer in soup_writers.values():
                writer.abort()
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    log.info("merged a grid of %d soups of %s in %.2f s", len(specs), [m.name for m in specs[0].members], seconds)
    return [info | {"seconds": seconds} for info in infos]


def run(specs: Sequence[MergeSpec], out_dirs: Sequence[Path], merge_settings: dict[str, Any]) -> list[dict[str, Any]]:
    """:func:`merge_grid` as the workflow's ``merge`` section says (method, options, accumulation dtype), on the
    job's GPU when it was given one (the soups are stored in full: a recipe has nothing to merge ahead)."""
    from rewarded_soups.gpus import torch_device

    if merge_settings.get("store", "full") != "full":
        raise ValueError("a soup grid writes full soups; with merge.store: recipe each soup job writes its recipe")
    return merge_grid(specs, out_dirs, MergeSettings.from_config(merge_settings), device=str(torch_device()))
