"""What a task merges (:class:`MergeSpec`): light, so that a task describes its checkpoints without torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class MergeSpec:
    """What a task merges. Paths are directories; ``files`` are checkpoint names inside them."""

    members: list[Path]
    weights: list[float]
    files: list[str]
    copy: list[str] = field(default_factory=list)  # copied from the first member (configs)
    base: Path | None = None  # θ0, holding the same files, for methods on task vectors
    keep: str | None = None  # regex of tensors every member shares, copied unchanged (e.g. a frozen normaliser)
    lora: str | None = None  # LoRA adapters: "paper" (A and B separately) or "exact" (concatenated ranks)
    json_updates: dict[str, dict[str, Any]] = field(default_factory=dict)  # applied to copied JSON files
    fishers: list[Path] | None = None  # each member's diagonal Fisher, same file names (method fisher)

    def __post_init__(self) -> None:
        self.members = [Path(m) for m in self.members]
        self.weights = [float(w) for w in self.weights]
        if len(self.members) != len(self.weights) or not self.members:
            raise ValueError(f"need one weight per expert, got {len(self.weights)} weights for {len(self.members)}")
        if self.lora not in (None, "paper", "exact"):
            raise ValueError(f"unknown LoRA combination {self.lora!r}; choose paper or exact")
