"""Writing a safetensors file tensor by tensor, without holding the whole model.

``safetensors.torch.save_file`` needs every tensor of a file in memory at
once, and the library has no incremental writer. A merge knows every output
tensor's name, dtype and shape before it computes any of them (from the
experts' headers), so the header can be written first and the data appended
as each merged tensor is ready, in header order. The layout is the documented
safetensors format: an 8-byte little-endian header length, the JSON header
(padded with spaces to a multiple of 8 bytes), then the tensors' bytes back to
back; files written here are read back with ``safe_open`` in the tests.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import torch

from rewarded_soups.merging.checkpoint import NAMES, TensorInfo

if sys.byteorder != "little":  # pragma: no cover - safetensors stores little-endian data
    raise ImportError("the streaming safetensors writer needs a little-endian machine")


class SafetensorsWriter:
    """Write ``entries`` (name, dtype, shape), in that order, to ``path``; call :meth:`write` once per tensor."""

    def __init__(self, path: Path, entries: Sequence[tuple[str, TensorInfo]], metadata: dict[str, str] | None = None):
        self.path = Path(path)
        header: dict[str, object] = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        offset = 0
        for name, info in entries:
            if info.dtype not in NAMES:
                raise ValueError(f"tensor {name!r}: dtype {info.dtype} cannot be written to safetensors here")
            span = [offset, offset + info.nbytes]
            header[name] = {"dtype": NAMES[info.dtype], "shape": list(info.shape), "data_offsets": span}
            offset += info.nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        self._expected = list(entries)
        self._next = 0
        self._pending: int | None = None  # bytes of the current tensor written so far
        self._fh: IO[bytes] = open(self.path, "wb")
        self._fh.write(struct.pack("<Q", len(encoded)))
        self._fh.write(encoded)
        self.data_bytes = offset

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """The whole tensor ``name`` (the next one in header order)."""
        self.write_block(name, tensor)
        if self._pending is not None:
            raise ValueError(f"tensor {name!r}: got {tensor.dtype} {tuple(tensor.shape)}, the header says otherwise")

    def write_block(self, name: str, block: torch.Tensor) -> None:
        """The next rows of tensor ``name``; blocks of one tensor come in order and add up to it."""
        expected_name, info = self._expected[self._next]
        if name != expected_name:
            raise RuntimeError(f"tensors out of order: got {name!r}, expected {expected_name!r}")
        if block.dtype != info.dtype or (tuple(block.shape[1:]) != info.shape[1:] and block.dim() > 0):
            raise ValueError(
                f"tensor {name!r}: got a block of {block.dtype} {tuple(block.shape)}, the header says "
                f"{info.dtype} {info.shape}"
            )
        data = block.detach().to("cpu").contiguous().reshape(-1)
        done = (self._pending or 0) + data.numel() * data.element_size()
        if done > info.nbytes:
            raise ValueError(f"tensor {name!r}: more data than its header's {info.shape}")
        if data.numel():
            self._fh.write(memoryview(data.view(torch.uint8).numpy()))
        if done == info.nbytes:
            self._next += 1
            self._pending = None
        else:
            self._pending = done

    def close(self) -> None:
        """Finish the file; it is complete only if every tensor was written."""
        self._fh.close()
        if self._next != len(self._expected) or self._pending is not None:
            missing = [n for n, _ in self._expected[self._next :]]
            raise RuntimeError(f"{self.path}: {len(missing)} tensors never written, first {missing[0]!r}")

    def abort(self) -> None:
        self._fh.close()
