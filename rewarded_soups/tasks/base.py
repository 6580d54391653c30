"""The interface every task implements, and what the workflow does around it.

A task is one package: an ``__init__`` that declares it with
:func:`rewarded_soups.registry.register_task` (kind, modality of what its
models produce, ``schema.yaml`` for its config sections, ``environment.yaml``
for its jobs, the baselines it implements, the keys it adds to generic
sections and which stage reads them) and defines the functions of
:class:`Task`: only what the task alone knows. The workflow
(:mod:`rewarded_soups.stages`) owns the rest: the loop over the evaluation
splits, writing and reading sample files, the merge engine, the WiSE and
ensemble baselines, the train-metrics file, the Fisher files.

A task imports heavy libraries inside its functions: the workflow imports
every task package while it checks the config. A function may be imported
from shared code below the tasks (:mod:`rewarded_soups.vision_language`) rather
than defined in the package. A package outside this one registers through the
``rewarded_soups.plugins`` entry point group (see :mod:`rewarded_soups.registry`).

All paths are directories that the calling rule owns; every function is
deterministic given its ``seed``. The workflow hashes the code each stage can
run (:mod:`rewarded_soups.codedigest`, :data:`STAGE_FUNCTIONS`), so editing a
task's function reruns that stage's jobs and what depends on them.

Optional hooks (a task defines them or not; the workflow asks
:meth:`rewarded_soups.registry.TaskSpec.implements`):

* ``check_settings(task) -> None`` raises ``ValueError("key.path: what is
  wrong and how to fix it")`` for what the schema cannot say; it runs before
  any job.
* ``local_inputs(task, stage, rewards) -> list[str]``: local files named by
  the task's config (a local θ0, reward models, data files) that a stage
  (``pretrain``, ``finetune``, ``generate``, ``score``) reads; the rules
  declare them as inputs, so replacing one reruns what read it.
  ``rewards``: the rewards the job trains on or scores.
* ``reward_context(base_dir) -> dict``: constructor arguments of rewards that
  the task supplies (θ0's directory, CIDEr's training references), for
  scoring and for its own training.
* ``qualitative(samples, out_dir, settings)``: figures of θ0 and the models
  at the λ of ``plots.qualitative`` (label -> :class:`~rewarded_soups.samples.Samples`
  of the test split; ``settings`` holds the data and evaluate sections and
  the ``plots`` keys the task declared for its qualitative stage).
* ``fisher(run)``: the diagonal Fisher of the expert that ``run`` trained
  (in ``run.out_dir``), ``{checkpoint file: {tensor name: values}}``; tasks
  that define it support merge methods that need Fisher matrices.
* ``load_ensemble(base_dir, member_dirs, weights, settings, *, threads)``: a
  prediction ensemble that :func:`Task.generate` accepts as its model, for
  the ``"ensemble"`` baseline (paper Figure 5c). The ``"wise"`` baseline
  (Figure 14e) needs only that :func:`Task.merge_spec` accepts θ0's
  directory as a member.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rewarded_soups.merging.spec import MergeSpec
    from rewarded_soups.samples import Samples

TRAIN_METRICS = "train_metrics.json"
# Held-out splits every model is evaluated on; ``test`` is the one reported.
EVALUATION_SPLITS = ("validation", "test")

# The task functions each stage of the workflow calls (rewarded_soups.stages): a job's code digest covers
# the stage's generic code and these.
STAGE_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "pretrain": ("pretrain",),
    "finetune": ("finetune",),
    "merge": ("merge_spec",),
    "merge_grid": ("merge_spec",),
    "ensemble": (),
    "fisher": ("fisher",),
    "generate": ("load_model", "load_ensemble", "generate"),
    "score": ("reward_context", "reward_inputs"),
    "samples_table": ("samples_table",),
    "qualitative": ("qualitative",),
}


# What every task defines (the functions of Task below); a baseline needs its hook too.
REQUIRED = ("pretrain", "finetune", "merge_spec", "load_model", "generate", "reward_inputs", "samples_table")
BASELINE_HOOKS = {"ensemble": ("load_ensemble",), "wise": ()}


@dataclass(frozen=True)
class Run:
    """One RL run from θ0 on Σ weights[r]·R_r: an expert (one weight 1) or a MORL run.

    ``rewards``: the config entries of the rewards that weigh; ``settings``:
    the config sections the fine-tuning stage reads (data, finetune, the
    task's own keys); ``threads``: the job's CPU threads. Every run of a task
    has the same settings and seed: only the rewards and weights differ.

    ``seed`` drives the training's randomness; ``data_seed`` (default ``seed``)
    the data: which inputs are training, validation and test. A replicate of a
    task with another seed (config ``seeds``) trains from the same θ0 on the
    same data, so its held-out inputs stay held out.
    """

    base_dir: Path
    out_dir: Path
    rewards: dict[str, dict[str, Any]]
    weights: dict[str, float]
    settings: dict[str, Any]
    seed: int
    threads: int = 1
    data_seed: int | None = None

    def __post_init__(self) -> None:
        if self.data_seed is None:
            object.__setattr__(self, "data_seed", self.seed)

    def describe(self) -> str:
        """``1·bleu1``, ``0.5·bleu1 + 0.5·rouge``: what the run trains on, for logs."""
        return " + ".join(f"{w:g}·{r}" for r, w in self.weights.items())


def missing_functions(module: Any, baselines: tuple[str, ...] = ()) -> list[str]:
    """The functions of the protocol (:data:`REQUIRED`, and the hooks of ``baselines``) that ``module`` lacks."""
    needed = [*REQUIRED, *(hook for baseline in baselines for hook in BASELINE_HOOKS[baseline])]
    return [name for name in needed if not callable(getattr(module, name, None))]


def split_samples(samples_dir: Path, split: str = "test") -> Path:
    """Where a generate job put one split's samples: ``samples/{model}/{split}``."""
    return Path(samples_dir) / split


class Task(Protocol):
    def pretrain(self, out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
        """Train θ0 into ``out_dir``; return metrics (``seconds`` included), written next to θ0."""

    def finetune(self, run: Run) -> dict[str, Any]:
        """Train ``run`` into ``run.out_dir``; return metrics (``seconds`` included).

        :class:`rewarded_soups.rewards.Scalarised` builds Σ weights[r]·R_r for tasks that scalarise themselves.
        """

    def merge_spec(
        self, base_dir: Path, member_dirs: list[Path], weights: list[float], settings: dict[str, Any]
    ) -> MergeSpec:
        """The checkpoint files of the members (experts, or θ0 for WiSE) and how the engine combines them.

        Loading a model directory must accept a soup stored as a recipe
        (:func:`rewarded_soups.merging.engine.materialize`).
        """

    def load_model(self, base_dir: Path, model_dir: Path | None, settings: dict[str, Any], *, threads: int) -> Any:
        """The model to generate with: θ0 when ``model_dir`` is None, else the expert, soup or MORL run there."""

    def generate(self, model: Any, split: str, settings: dict[str, Any], *, seed: int) -> Samples:
        """The model's outputs on one held-out split (:data:`EVALUATION_SPLITS`).

        ``test`` is what the figures and summaries report; ``validation``
        (``evaluate.validation_size`` inputs, disjoint from training and test)
        is where λ is selected for a preference (Lemma 1, Figure 8). The same
        inputs, in the same order, and the same sampling seeds for every model.
        """

    def reward_inputs(self, samples: Samples) -> tuple[Any, ...]:
        """The arguments a reward of the task's modality is called with on these samples."""

    def samples_table(self, samples: dict[str, Samples], n: int) -> str:
        """Markdown showing the first ``n`` test samples of each model (label -> samples)."""
