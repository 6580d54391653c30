# Shared by every rule: config validation, wildcard constraints, input functions.
import functools
import os
import sys

sys.path.insert(0, workflow.basedir)

from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from rewarded_soups import codedigest, jobserver, plan, registry, resume, stages, theta0
from rewarded_soups.config import ConfigError, merged_config_warnings, validate_config
from rewarded_soups.grid import parse_mix, renormalise
from rewarded_soups.merging import methods as merge_methods
from rewarded_soups.scheduling import cancel_replanning_timers
from rewarded_soups.services import stop_all as stop_shared_services

for warning in merged_config_warnings(
    config, workflow.config_settings.overwrite_config, workflow.config_settings.replace_workflow_config
):
    logger.warning(f"warning: {warning}")

try:
    validate_config(config)
except ConfigError as err:
    hint = ""
    if not Path("config.yaml").exists() and not workflow.config_settings.replace_workflow_config:
        hint = (
            f" (no config.yaml in {Path.cwd()}, where Snakemake runs (--directory), so only the --configfile "
            "files were read: copy config.yaml there, or give a complete config with --replace-workflow-config)"
        )
    raise WorkflowError(f"invalid configuration: {err}{hint}") from None

# Jobs die with this Snakemake process, even one that dies before they start watching it
# (rewarded_soups/jobserver.py: die_with_parent).
os.environ[jobserver.SNAKEMAKE_PID_ENV] = str(os.getpid())

# What each source file gave the code digests, kept between runs (a no-op run parses nothing).
codedigest.use_disk_cache(Path(".snakemake") / "rewarded_soups" / "code-digests.json")

SEED = config["seed"]
# Each enabled task, and one replicate per other seed of `seeds` (plan.with_replicates).
TASKS = plan.with_replicates(
    {name: task for name, task in config["tasks"].items() if task["enabled"]}, SEED, config["seeds"]
)
SPECS = {name: registry.task_spec(task["kind"]) for name, task in TASKS.items()}


def configure_jobs():
    """Called on start (the Snakefile's onstart: Snakemake knows its executor only then, not while parsing).

    Jobs on this machine: warm jobs (rewarded_soups/jobserver.py) where the config asks for them (the
    default profile does); the jobs read the switch from their environment, and an explicit
    REWARDED_SOUPS_WARM_JOBS=0 keeps them off. On a cluster: a job that hits its time limit is
    submitted again and resumes from its last checkpoint (docs/resume.md), only if it wrote one
    before the limit.
    """
    if workflow.local_exec:
        if config.get("warm_jobs") and os.environ.get(jobserver.ENABLE_ENV) != "0":
            os.environ[jobserver.ENABLE_ENV] = "1"
        return
    for warning in resume.time_limit_warnings(TASKS, config):
        logger.warning(f"warning: {warning}")


def task_seed(wildcards):
    """The training seed of a task's jobs: the config's seed, or a replicate's own."""
    return TASKS[wildcards.task].get(plan.REPLICATE_SEED, SEED)


def replicated_theta0(wildcards):
    """A replicate's θ0: its base task's, copied (inputs of its pretrain job)."""
    base = TASKS[wildcards.task].get(plan.REPLICATE_OF)
    return [f"results/{base}/pretrain/model", f"results/{base}/pretrain/metrics.json"] if base else []


# Computed once per (task kind, stage, rewards, modules): hundreds of jobs share a few dozen digests.
_stage_code = functools.cache(stages.code_digest)


def shipped_theta0(name):
    """A task's shipped θ0 directory (``theta0``), or None when θ0 is pre-trained here."""
    value = TASKS[name]["theta0"]
    return theta0.resolve(value, Path(workflow.basedir)) if value else None


for _name, _task in TASKS.items():
    if shipped_theta0(_name) is None:
        continue
    try:
        for warning in theta0.check(
            shipped_theta0(_name),
            where=f"tasks.{_name}",
            kind=_task["kind"],
            settings=plan.canonical(plan.stage_settings(_task, "pretrain")),
            seed=SEED,
            code=_stage_code(_task["kind"], "pretrain"),
        ):
            logger.warning(f"warning: {warning}")
    except ValueError as err:
        raise WorkflowError(f"invalid configuration: {err}") from None


wildcard_constraints:
    task="|".join(TASKS) or "no_task_enabled",
    reward=r"[a-z][a-z0-9_]*",
    scorers=rf"[a-z][a-z0-9_]*|{plan.RULE_BASED}",
    mix=r"[a-z][a-z0-9_@.+-]*",
    members=r"[a-z][a-z0-9_]*(\+[a-z][a-z0-9_]*)+",
    method="|".join(merge_methods.methods()),
    model=r"[a-z][a-z0-9_@.+-]*",
    fmt="png|pdf|svg",
    pair=r"[a-z][a-z0-9_]*-[a-z][a-z0-9_]*",


def _read(task_name, stage, out=None):
    return plan.stage_settings(TASKS[task_name], stage, out)


def settings(stage):
    def get(wildcards):
        return plan.canonical(_read(wildcards.task, stage))

    return get


def _method_name(wildcards, method):
    """None: the task's first merge method (the soups); "method": the wildcard's; else the name given."""
    if method is None:
        return plan.merge_methods(TASKS[wildcards.task])[0]
    return wildcards.method if method == "method" else method


def merge_settings(method):
    """What makes one merge (params): its method and options, how it is stored and summed, the task's own keys.

    ``method``: a name, "method" for the wildcard, None for the task's first
    method (the soups). Which soups exist (grid, pairs, extrapolation range)
    is not part of it, so adding soups leaves the existing ones up to date.
    """

    def get(wildcards):
        merge = TASKS[wildcards.task]["merge"]
        name = _method_name(wildcards, method)
        method_class, section = merge_methods.get(name), merge.get(name, {})
        options = {k: section[k] for k in method_class.options() if k in section}
        if method_class.needs_seed:
            options["seed"] = task_seed(wildcards)
        chosen = {k: merge[k] for k in ("store", "accumulate")}
        return plan.canonical(_read(wildcards.task, "merge", {"merge": {"method": name, "options": options, **chosen}}))

    return get


def fisher_inputs(method):
    """Each merged expert's Fisher, when the merge is Fisher-weighted."""

    def get(wildcards):
        if not merge_methods.get(_method_name(wildcards, method)).needs_fisher:
            return []
        mix = parse_mix(wildcards.mix)
        return [f"results/{wildcards.task}/fisher/{r}" for r, w in mix.items() if w != 0]

    return get


def task_kind(wildcards):
    return TASKS[wildcards.task]["kind"]


def resource(stage, key):
    """A stage's resource from the task's config (threads, gpu, mem_mb)."""

    def get(wildcards):
        # Defaults come from config/schema.yaml ($defs/resources).
        return TASKS[wildcards.task]["resources"][stage][key]

    return get


def pretrain_resource(key):
    """Pre-training's threads or GPUs; a shipped θ0 (or a seed replicate's, its task's) is only copied: one core,
    no GPU.

    (A two-core copy job would wait for a moment when both cores are free, which a
    stream of one-core jobs rarely leaves: it held back the task's whole branch.)
    """
    configured = resource("pretrain", key)

    def get(wildcards):
        if shipped_theta0(wildcards.task) is not None or TASKS[wildcards.task].get(plan.REPLICATE_OF):
            return {"threads": 1, "gpu": 0}[key]
        return configured(wildcards)

    return get


def stage_resources(stage, **override):
    """A stage's Snakemake resources (``resources: **stage_resources("finetune")``); threads go in ``threads:``."""
    return {key: resource(stage, key) for key in ("gpu", "mem_mb", "runtime", "gpu_model")} | override


def job_rewards(wildcards, stage):
    """The rewards a job trains on or scores: its reward, its mix's, or its score group's."""
    task = TASKS[wildcards.task]
    if "reward" in wildcards.keys():
        return [wildcards.reward]
    if "scorers" in wildcards.keys():
        return plan.score_groups(task)[wildcards.scorers]
    if stage == "finetune" and "mix" in wildcards.keys():
        return [r for r, m in parse_mix(wildcards.mix).items() if m > 0]
    return []


def score_gpu(wildcards):
    """Scoring holds the evaluation GPUs only for rewards that run a model (reward models, perplexity)."""
    task = TASKS[wildcards.task]
    kinds = [plan.scorers(task)[r]["kind"] for r in job_rewards(wildcards, "score")]
    uses_device = any(registry.reward_spec(kind).uses_device for kind in kinds)
    return task["resources"]["evaluate"]["gpu"] if uses_device else 0


def task_code(stage, method=False):
    """Digest of the code a task job runs (params): the stage's code, the task's functions, the rewards it uses,
    and for merges the method's module (``method`` as in :func:`merge_settings`).

    Editing that code reruns the job and what depends on it; editing another
    task, or code the job never runs, reruns nothing.
    """

    def get(wildcards):
        task = TASKS[wildcards.task]
        scorers = plan.scorers(task)
        kinds = tuple(sorted({scorers[r]["kind"] for r in job_rewards(wildcards, stage)}))
        modules = ()
        if method is not False:
            modules = (merge_methods.get(_method_name(wildcards, method)).__module__,)
        return _stage_code(task["kind"], stage, kinds, modules)

    return get


@functools.cache
def package_code(*entries):
    """Digest of the generic functions an analysis job calls (``module:function``) and of what they run."""
    return codedigest.digest(entries)


def local_inputs(stage):
    """Local files (models, data) named by the config that a stage reads: inputs, so replacing one reruns it.

    A task module declares them with ``local_inputs(task, stage, rewards)``;
    ``rewards`` are the rewards the job trains on or scores.
    """

    def get(wildcards):
        task = TASKS[wildcards.task]
        if not SPECS[wildcards.task].implements("local_inputs"):
            return []
        declared = SPECS[wildcards.task].implementation().local_inputs
        return declared(task, stage, job_rewards(wildcards, stage))

    return get


def conda_env(wildcards):
    """The task's environment file, declared with the task (TaskSpec.environment)."""
    return str(SPECS[wildcards.task].environment)


@functools.cache
def _models_by_name(name):
    # Listed once per task: building the list for each of hundreds of jobs took 0.5 s of every DAG build.
    return {m.name: m for m in plan.models(TASKS[name])}


def model_entry(wildcards):
    try:
        return _models_by_name(wildcards.task)[wildcards.model]
    except KeyError:
        raise WorkflowError(f"{wildcards.task}: no model {wildcards.model!r} in this task's config") from None


def shipped_files(wildcards):
    """A shipped θ0's files (inputs of pretrain: replacing one reruns it and what follows)."""
    directory = shipped_theta0(wildcards.task)
    if directory is None:
        return []
    # Relative to the working directory, so that moving the whole tree changes no input path.
    return sorted(os.path.relpath(p) for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))


def model_checkpoint(wildcards):
    """The directory to load for a model; θ0 needs none beyond the base."""
    model = model_entry(wildcards)
    if model.kind == "init":
        return []
    return f"results/{wildcards.task}/{model.directory}"


def soup_experts(wildcards):
    """The experts a soup interpolates, in reward order (zero weights dropped)."""
    mix = parse_mix(wildcards.mix)
    unknown = [r for r in mix if r not in TASKS[wildcards.task]["rewards"]]
    if unknown:
        raise WorkflowError(f"{wildcards.task}: soup {wildcards.mix} names unknown rewards {unknown}")
    return [f"results/{wildcards.task}/experts/{r}" for r, w in mix.items() if w != 0]


def soup_grid_input(wildcards):
    """The grid job that builds this soup with the other soups of its experts (rules/merge.smk), if any.

    For a soup already built, ancient: a grid rebuilt for a new λ does not make it stale; it is rerun by its
    own params, experts and code, as without a grid. For a soup not built yet, a plain input: Snakemake never
    looks at the missing output of a job whose only link to a job that runs is an ancient file.
    """
    members = plan.grid_of(TASKS[wildcards.task], wildcards.mix)
    if not members:
        return []
    grid = f"results/{wildcards.task}/soup-grids/{members}"
    return ancient(grid) if os.path.exists(f"results/{wildcards.task}/soups/{wildcards.mix}") else grid


def grid_experts(wildcards):
    """The experts of a soup grid, in its name's order (``a+b``)."""
    return [f"results/{wildcards.task}/experts/{r}" for r in wildcards.members.split(plan.GRID_SEPARATOR)]


def grid_soups(wildcards):
    """Soup name -> λ (renormalised, zeros dropped) of every soup the grid builds."""
    mixes = plan.soup_grids(TASKS[wildcards.task]).get(wildcards.members)
    if not mixes:
        raise WorkflowError(f"{wildcards.task}: no soup grid of experts {wildcards.members}")
    return {mix: weights_of(mix) for mix in mixes}


def weights_of(mix):
    """A soup's or ensemble's λ, zeros dropped; names round λ to 4 decimals (1/3 -> 0.3333): renormalised.

    Extrapolated task-arithmetic soups have a negative λ; their weights still sum to 1.
    """
    return list(renormalise([m for m in parse_mix(mix).values() if m != 0]))


def mix_weights(wildcards):
    return weights_of(wildcards.mix)


def wise_members(wildcards):
    """θ0 and the expert a WiSE model moves it toward (its mix names one reward)."""
    (reward,) = parse_mix(wildcards.mix)
    return [f"results/{wildcards.task}/pretrain/model", f"results/{wildcards.task}/experts/{reward}"]


def wise_weights(wildcards):
    """1 − α for θ0, α for the expert."""
    (alpha,) = parse_mix(wildcards.mix).values()
    return [1.0 - alpha, alpha]


def score_files(wildcards):
    task = TASKS[wildcards.task]
    return [
        f"results/{wildcards.task}/scores/{m.name}/{group}.json"
        for m in plan.models(task)
        for group in plan.score_groups(task)
    ]


def training_dirs(wildcards):
    task = TASKS[wildcards.task]
    return [f"results/{wildcards.task}/{m.directory}" for m in plan.models(task) if m.kind in ("expert", "morl")]


def sample_dirs(wildcards):
    return {m.name: f"results/{wildcards.task}/samples/{m.name}" for m in plan.models(TASKS[wildcards.task])}


def qualitative_dirs(wildcards):
    task = TASKS[wildcards.task]
    return {m.name: f"results/{wildcards.task}/samples/{m.name}" for m in plan.qualitative_models(task)}


def has_qualitative(name):
    """Whether the task draws qualitative figures (defines the optional ``qualitative`` hook)."""
    return SPECS[name].implements("qualitative")


# Drawn once per pair of rewards (merge.pairs, else analysis.axes): figures/<figure>-<a>-<b>.<fmt>.
FIGURES = ("front", "lambda_curves")


def analysis_targets():
    """Summaries and figures of every task: all computed from cached scores and samples."""
    targets = []
    for name, task in TASKS.items():
        fmt = task["plots"]["format"]
        targets += [
            f"results/{name}/summary.json",
            *(
                f"results/{name}/figures/{figure}-{a}-{b}.{fmt}"
                for a, b in plan.front_pairs(task)
                for figure in FIGURES
            ),
            *(f"results/{name}/figures/advantage-{a}-{b}.{fmt}" for a, b in plan.advantage_pairs(task)),
            *([f"results/{name}/figures/spider.{fmt}"] if len(task["rewards"]) > 2 else []),
            f"results/{name}/figures/samples.md",
            f"results/{name}/explorer.html",
        ]
        if has_qualitative(name):
            targets.append(f"results/{name}/figures/qualitative")
    return targets


def seed_tasks(name):
    """Task ``name`` and its seed replicates: the config's seed first, then the order of ``seeds``."""
    return [name, *plan.replicates(TASKS, name)]


def seeds_targets():
    """seeds.json and the seeds' fronts of every task replicated over seeds."""
    targets = []
    for name, task in TASKS.items():
        if plan.replicates(TASKS, name):
            fmt = task["plots"]["format"]
            targets += [f"results/{name}/seeds.json"]
            targets += [f"results/{name}/figures/seeds-{a}-{b}.{fmt}" for a, b in plan.front_pairs(task)]
    return targets


def all_targets():
    return [f"results/{name}/scores.csv" for name in TASKS] + analysis_targets() + seeds_targets()
