"""The interface every task module implements (a structural protocol).

All paths are directories or files that the calling rule owns; every function
is deterministic given its ``seed``.

Optional: a task module may also define ``qualitative(samples, out_dir,
settings)`` (label -> samples directory, for θ0 and the λ values of
``plots.qualitative``; ``settings`` holds the data and evaluate sections);
the workflow then adds the ``qualitative`` rule for it.

Optional: ``local_inputs(task, stage, rewards) -> list[str]``, the local files
named by the task's config (a local θ0, reward models, data files) that a stage
(``pretrain``, ``finetune``, ``generate``, ``score``) reads; the rules declare
them as inputs, so replacing one reruns what read it. ``rewards``: the rewards
the job trains on or scores.

Optional: ``fisher(base_dir, expert_dir, out_dir, rewards, settings, *, seed,
threads)`` writes the expert's diagonal Fisher with the checkpoint's file and
tensor names; tasks that define it support ``merge.method: fisher``.

Optional baselines (paper Figures 5c and 14e), listed in a module-level
``BASELINES`` tuple: ``"wise"`` needs :func:`merge` to accept θ0's
directory as a member; ``"ensemble"`` needs ``ensemble(base_dir,
expert_dirs, weights, out_dir, settings)``, whose output directory
:func:`generate` then accepts as ``model_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Task(Protocol):
    def pretrain(self, out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
        """Train θ0 into ``out_dir``; return metrics (e.g. held-out perplexity, seconds)."""

    def finetune(
        self,
        base_dir: Path,
        out_dir: Path,
        rewards: dict[str, dict[str, Any]],
        weights: dict[str, float],
        settings: dict[str, Any],
        *,
        seed: int,
        threads: int,
    ) -> dict[str, Any]:
        """RL from θ0 on Σ weights[r]·R_r (an expert when one weight is 1); return metrics."""

    def merge(
        self,
        base_dir: Path,
        expert_dirs: list[Path],
        weights: list[float],
        out_dir: Path,
        settings: dict[str, Any],
        *,
        fisher_dirs: list[Path] | None = None,
    ) -> None:
        """Write the soup into ``out_dir`` with :func:`rewarded_soups.merging.run`.

        Describe the checkpoint files with a :class:`~rewarded_soups.merging.MergeSpec`;
        ``settings["merge"]`` says the method, its options and the store. Loading
        a model directory must accept a recipe (:func:`rewarded_soups.merging.materialize`).
        """

    def generate(
        self,
        base_dir: Path,
        model_dir: Path | None,
        out_dir: Path,
        settings: dict[str, Any],
        *,
        seed: int,
        threads: int,
    ) -> None:
        """Produce the model's outputs on the held-out inputs (``model_dir`` None means θ0)."""

    def score(self, samples_dir: Path, reward: dict[str, Any], *, base_dir: Path, threads: int) -> list[float]:
        """One reward value per held-out sample."""

    def samples_table(self, samples: dict[str, Path], n: int) -> str:
        """Markdown showing the first ``n`` samples of each model (label -> samples directory)."""
