"""Command line: ``python -m rewarded_soups {verify,select}``.

``verify [RESULTS] [--configfile F ...]`` checks every directory the workflow
wrote under RESULTS (default ``results``) against its manifest and prints, for
each damaged one, what changed and the command that rebuilds it; then asks
Snakemake (``--summary``, with the run's config files) which outputs under
RESULTS the workflow expects and are not there (e.g. deleted by a refused
``--forcerun``), with the command that rebuilds them. Exit status 1 when any
is damaged or missing.

``select --task TASK --preference r1=w1,r2=w2`` answers "which soup for my
preference?" from the cached scores (results/TASK/scores.csv) without
running anything: the expert or soup that maximises Σ μ_i R_i on the
validation split, its test scores and the path of its weights, next to
λ = μ and MORL(μ) when they exist.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rewarded_soups import manifest

SNAKEFILE = Path(__file__).resolve().parent.parent / "Snakefile"
SHOWN_MISSING = 20


def missing_outputs(results: Path, configfiles: list[Path]) -> list[tuple[str, str]] | str:
    """(path, rule) of every output under ``results`` that the workflow's DAG expects and is not on disk,
    from ``snakemake --summary`` run in the current directory; or Snakemake's error, as text."""
    import subprocess

    command = [sys.executable, "-m", "snakemake", "--summary", "--snakefile", str(SNAKEFILE)]
    for configfile in configfiles:
        command += ["--configfile", str(configfile)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return (done.stderr or done.stdout).strip()[-2000:]
    root = str(results).rstrip("/") + "/"
    missing = []
    for line in done.stdout.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 5 and fields[4] == "missing" and fields[0].startswith(root):
            missing.append((fields[0], fields[2]))
    return missing


def verify(results: Path, configfiles: list[Path] | None = None, dag: bool = True) -> int:
    if not results.is_dir():
        print(f"{results} is not a directory (run from the workflow's directory, or give the results path)")
        return 2
    checked = manifest.scan(results)
    damaged = [(d, p) for d, p in checked if p]
    for directory, found in damaged:
        rule = manifest.writer_rule(directory) or "?"
        print(f"CORRUPTED {directory} (rule {rule}): {'; '.join(found)}")
        print(f"  rebuild: snakemake --forcerun {directory}")
    print(f"{len(checked)} artifact directories checked, {len(damaged)} damaged")
    if not dag or not SNAKEFILE.exists():
        return 1 if damaged else 0
    missing = missing_outputs(results, configfiles or [])
    if isinstance(missing, str):
        print(f"could not ask Snakemake which outputs are missing (give the run's --configfile):\n{missing}")
        return 1 if damaged else 2
    for path, rule in missing[:SHOWN_MISSING]:
        print(f"MISSING {path} (rule {rule})")
    if len(missing) > SHOWN_MISSING:
        print(f"  … and {len(missing) - SHOWN_MISSING} more")
    if missing:
        configs = "".join(f" --configfile {c}" for c in configfiles or [])
        print(f"  rebuild: snakemake{configs} (one: snakemake{configs} {missing[0][0]})")
    print(f"{len(missing)} outputs the workflow expects under {results} are missing")
    return 1 if damaged or missing else 0


def _line(label: str, entry: dict[str, Any] | None, rewards: list[str]) -> str:
    if entry is None:
        return f"{label}: none in this run"
    scores = "  ".join(f"{r} {entry['test'][r]:.4f}" for r in rewards)
    return f"{label}: {entry['model']} (λ {entry['weights']})  test: {scores}  Σμ·R {entry['test_scalarised']:.4f}"


def select(results: Path, task: str, preference: str, as_json: bool) -> int:
    import pandas as pd

    from rewarded_soups.plan import model_directory
    from rewarded_soups.selection import parse_preference, select, task_rewards

    table = results / task / "scores.csv"
    if not table.exists():
        tasks = sorted(p.parent.name for p in results.glob("*/scores.csv"))
        print(
            f"no scores for task {task!r}: {table} does not exist (tasks with scores: {tasks or 'none'})",
            file=sys.stderr,
        )
        return 2
    scores = pd.read_csv(table, keep_default_na=False)
    try:
        rewards = task_rewards(scores)
        choice = select(scores, parse_preference(preference), rewards)
    except ValueError as err:
        print(f"{task}: {err}", file=sys.stderr)
        return 2
    chosen = choice["selected"]
    weights = results / task / model_directory(_kind(scores, chosen["model"]), chosen["weights"])
    choice["selected"]["path"] = str(weights)
    if as_json:
        print(json.dumps(choice, indent=1))
        return 0
    mu = ", ".join(f"{r}={w:.4g}" for r, w in choice["preference"].items())
    print(f"{task}: preference {mu} (normalised to sum 1)")
    print(_line("chosen on validation", chosen, rewards) + f"  (validation Σμ·R {chosen['validation_scalarised']:.4f})")
    print(f"  weights: {weights}" + ("" if weights.exists() else "  (not on disk: rerun the workflow to rebuild it)"))
    print(_line("λ = μ (a priori)", choice["at_preference"], rewards))
    print(_line("MORL(μ)", choice["morl"], rewards))
    print(_line("best on test (optimistic: selected on the test split itself)", choice["oracle"], rewards))
    return 0


def _kind(scores, model: str) -> str:
    return str(scores.loc[scores["model"] == model, "kind"].iloc[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewarded_soups", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="check every result directory against its manifest")
    check.add_argument("results", nargs="?", type=Path, default=Path("results"))
    check.add_argument("--configfile", type=Path, nargs="+", default=[], help="the run's config files, as given to it")
    check.add_argument("--no-dag", action="store_true", help="only check manifests; do not ask Snakemake")
    choose = commands.add_parser("select", help="the soup for a preference, chosen on validation from cached scores")
    choose.add_argument("--task", required=True, help="a task name (results/TASK/scores.csv)")
    choose.add_argument("--preference", required=True, help="reward=weight,… (normalised; omitted rewards weigh 0)")
    choose.add_argument("--results", type=Path, default=Path("results"), help="the results directory (default results)")
    choose.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    args = parser.parse_args(argv)
    if args.command == "select":
        return select(args.results, args.task, args.preference, args.json)
    return verify(args.results, args.configfile, dag=not args.no_dag)


if __name__ == "__main__":
    sys.exit(main())
