"""The interface every task implements (a structural protocol), and its contracts.

A task is one package: an ``__init__`` that declares it with
:func:`rewarded_soups.registry.register_task` (kind, modality of what its
models produce, ``schema.yaml`` for its config sections, ``environment.yaml``
for its jobs, the baselines it implements, the keys it adds to generic
sections and which stage reads them) and defines the functions of
:class:`Task`. It imports heavy libraries inside those functions: the
workflow imports every task package while it checks the config. A package
outside this one registers through the ``rewarded_soups.plugins`` entry
point group (see :mod:`rewarded_soups.registry`).

All paths are directories or files that the calling rule owns; every function
is deterministic given its ``seed``. The workflow hashes the code each
function can run (:mod:`rewarded_soups.codedigest`), so editing a task's
function reruns that function's jobs and what depends on them.

Contracts:

* ``finetune`` returns its metrics; the workflow writes them to
  ``TRAIN_METRICS`` in the run's directory, and the summary reads their
  ``seconds``.
* ``pretrain`` returns its metrics (``seconds`` included); the workflow writes
  them next to θ0 (``pretrain/metrics.json``).
* ``generate`` writes every model's outputs on two held-out splits
  (:data:`EVALUATION_SPLITS`): ``test``, which the figures and summaries
  report, and ``validation`` (``evaluate.validation_size`` inputs, disjoint
  from training and test), on which λ is selected for a preference (Lemma 1,
  Figure 8). The same inputs (and sampling seeds) for every model.

Optional hooks (a task defines them or not; the workflow asks
:meth:`rewarded_soups.registry.TaskSpec.implements`):

* ``check_settings(task) -> None`` raises ``ValueError("key.path: what is
  wrong and how to fix it")`` for what the schema cannot say; it runs before
  any job.
* ``qualitative(samples, out_dir, settings)``: figures of θ0 and the models
  at the λ of ``plots.qualitative`` (label -> samples directory; ``settings``
  holds the data and evaluate sections and the ``plots`` keys the task
  declared for its qualitative stage). The workflow then adds the rule.
* ``local_inputs(task, stage, rewards) -> list[str]``: local files named by
  the task's config (a local θ0, reward models, data files) that a stage
  (``pretrain``, ``finetune``, ``generate``, ``score``) reads; the rules
  declare them as inputs, so replacing one reruns what read it.
  ``rewards``: the rewards the job trains on or scores.
* ``fisher(base_dir, expert_dir, out_dir, rewards, settings, *, seed,
  threads)`` writes the expert's diagonal Fisher with the checkpoint's file
  and tensor names; tasks that define it support ``merge.method: fisher``.
* Baselines (paper Figures 5c and 14e), declared with ``baselines=``:
  ``"wise"`` needs :func:`merge` to accept θ0's directory as a member;
  ``"ensemble"`` needs ``ensemble(base_dir, expert_dirs, weights, out_dir,
  settings)``, whose output directory :func:`generate` then accepts as
  ``model_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

TRAIN_METRICS = "train_metrics.json"
# Held-out splits every model is evaluated on; ``test`` is the one reported.
EVALUATION_SPLITS = ("validation", "test")


def split_samples(samples_dir: Path, split: str = "test") -> Path:
    """Where a generate job put one split's samples: ``samples/{model}/{split}``."""
    return Path(samples_dir) / split


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
        """RL from θ0 on Σ weights[r]·R_r (an expert when one weight is 1); return metrics (``seconds`` included).

        :func:`rewarded_soups.rewards.weighted_sum` computes Σ weights[r]·R_r for tasks that scalarise themselves.
        """

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
        out_dirs: dict[str, Path],
        settings: dict[str, Any],
        *,
        seed: int,
        threads: int,
    ) -> None:
        """Write the model's outputs on each held-out split into ``out_dirs[split]`` (``model_dir`` None: θ0).

        The model is loaded once for every split in ``out_dirs`` (:data:`EVALUATION_SPLITS`).
        """

    def score(
        self, samples_dirs: dict[str, Path], reward: dict[str, Any], *, base_dir: Path, threads: int
    ) -> dict[str, list[float]]:
        """One reward value per held-out sample, for each split's samples directory (split -> values).

        The reward is built once for every split (a reward model loaded, a
        METEOR Java process started, once per job).
        """

    def samples_table(self, samples: dict[str, Path], n: int) -> str:
        """Markdown showing the first ``n`` samples of each model (label -> samples directory)."""
