"""Lazy, tensor-by-tensor reading of safetensors checkpoints: one file, or shards with an index.

``save_pretrained`` writes either ``<name>.safetensors`` or shards listed in
``<name>.safetensors.index.json`` (``weight_map``: tensor -> shard file). A
:class:`Checkpoint` opens every shard with ``safetensors.safe_open`` and reads
a tensor only when asked, so reading a model never holds more than the tensor
at hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

INDEX_SUFFIX = ".safetensors.index.json"

# safetensors' dtype names <-> torch dtypes.
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class TensorInfo:
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty((), dtype=self.dtype).element_size()


def checkpoint_file(directory: Path, name: str) -> Path:
    """``name`` (e.g. ``model.safetensors``) in ``directory``, or its shard index when it is sharded."""
    path = Path(directory) / name
    if path.exists():
        return path
    index = Path(directory) / (name.removesuffix(".safetensors") + INDEX_SUFFIX)
    if index.exists():
        return index
    raise FileNotFoundError(f"{directory} has neither {name} nor its shard index {index.name}")


class Checkpoint:
    """The tensors of one safetensors file or sharded checkpoint, read on demand.

    ``path`` is a ``.safetensors`` file or a ``.safetensors.index.json``. Use as
    a context manager (or call :meth:`close`) to release the file handles.
    """

    def __init__(self, path: Path, device: str = "cpu") -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"checkpoint {self.path} does not exist")
        if self.path.name.endswith(INDEX_SUFFIX):
            index = json.loads(self.path.read_text())
            self.weight_map: dict[str, str] = dict(index["weight_map"])
            self.metadata: dict = dict(index.get("metadata", {}))
            shards = list(dict.fromkeys(self.weight_map.values()))
        else:
            shards = [self.path.name]
            self.weight_map = {}
            self.metadata = {}
        self._handles = {}
        try:
            for shard in shards:
                # pread, not mmap: a mapped file counts in the process's memory as it is read.
                handle = safe_open(self.path.parent / shard, framework="pt", device=device, backend="pread")
                self._handles[shard] = handle.__enter__()
        except Exception as err:
            self.close()
            raise ValueError(f"cannot read checkpoint {self.path}: {err}") from err
        # Shard by shard, in the order the tensors lie in each file (keys() would sort them by name).
        listed = self.weight_map
        self.weight_map = {
            name: shard
            for shard in shards
            for name in self._handles[shard].offset_keys()
            if not listed or listed.get(name) == shard
        }
        missing = sorted(set(listed) - set(self.weight_map))
        if missing:
            self.close()
            raise ValueError(f"checkpoint {self.path}: the index lists tensors its shards lack: {missing[:5]}")
        self.file_metadata = self._handles[shards[0]].metadata() or {}

    @property
    def sharded(self) -> bool:
        return self.path.name.endswith(INDEX_SUFFIX)

    def keys(self) -> list[str]:
        """Tensor names in file order (shard by shard), as ``save_pretrained`` wrote them."""
        return list(self.weight_map)

    def shard_of(self, name: str) -> str:
        return self.weight_map[name]

    def info(self, name: str) -> TensorInfo:
        view = self._handles[self.weight_map[name]].get_slice(name)
        dtype = view.get_dtype()
        if dtype not in DTYPES:
            raise ValueError(f"tensor {name!r} of {self.path} has dtype {dtype}, which merging does not handle")
        return TensorInfo(DTYPES[dtype], tuple(view.get_shape()))

    def get(self, name: str) -> torch.Tensor:
        return self._handles[self.weight_map[name]].get_tensor(name)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.__exit__(None, None, None)
        self._handles = {}

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
