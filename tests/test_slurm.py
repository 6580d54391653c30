"""The reduced workflow through a real SLURM (tools/local-slurm.sh), compared with a local run.

Skipped when no cluster answers (`make test` starts one as root on Debian; by
hand: `sudo tools/local-slurm.sh start`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT, PARTITION = "rs-test", "debug"  # what tools/local-slurm.sh creates

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def cluster_is_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="module")
def text_only_config(tmp_path_factory) -> Path:
    data = yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text())
    data["tasks"] = {"text": data["tasks"]["text"]}
    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    shutil.copy(config, workdir / "config.yaml")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args]
    command += ["--directory", str(workdir), "--configfile", str(workdir / "config.yaml")]
    return subprocess.run(command, capture_output=True, text=True, cwd=workdir)


def snakefile_local_rules() -> set[str]:
    """The rules the Snakefile's `localrules:` block names (read, not copied, so a new one is not missed)."""
    block = (ROOT / "Snakefile").read_text().split("localrules:", 1)[1].split("\n\n", 1)[0]
    return {name.strip() for name in block.replace(",", "\n").split() if name.strip()}


def run_on_slurm(workdir: Path, config: Path, *targets: str) -> subprocess.CompletedProcess:
    """Snakemake through the SLURM profile, on the local cluster's account and partition instead of the
    profile's placeholders."""
    return run_snakemake(
        workdir,
        config,
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--default-resources",
        f"slurm_account={ACCOUNT}",
        f"slurm_partition={PARTITION}",
        "runtime=30",
        "mem_mb=2000",
        "--slurm-init-seconds-before-status-checks",
        "5",
        *targets,
    )


def accounting_since(started: str, fields: str) -> list[str]:
    """sacct's lines (one per job, ``fields`` separated by '|') of the jobs started since ``started``."""
    return subprocess.run(
        ["sacct", "-X", "--parsable2", "--noheader", "--starttime", started, f"--format={fields}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()


# They run where Snakemake runs, never as sbatch jobs.
LOCAL_RULES = snakefile_local_rules()


def job_count(output: str) -> int:
    """Jobs Snakemake submitted to the cluster, from its 'Job stats' table (local rules left out)."""
    stats = output.split("Job stats:")[1]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", stats.split("\n\n")[0], flags=re.M))
    total = int(counts.pop("total"))
    return total - sum(int(n) for rule, n in counts.items() if rule in LOCAL_RULES)


@pytest.mark.skipif(not cluster_is_up(), reason="no SLURM cluster answers (sudo tools/local-slurm.sh start)")
def test_workflow_on_slurm_matches_a_local_run(tmp_path, text_only_config):
    local, cluster = tmp_path / "local", tmp_path / "slurm"
    local.mkdir()
    cluster.mkdir()
    started = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.time()
    result = run_on_slurm(cluster, text_only_config)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    submitted = job_count(output)
    print(f"SLURM run: {time.time() - t0:.0f} s, {submitted} jobs")

    accounting = accounting_since(started, "JobID,State,Comment,Account")
    ours = [line.split("|") for line in accounting if "|rule_" in line]
    assert len(ours) == submitted, accounting
    assert all(state == "COMPLETED" and account == ACCOUNT for _, state, _, account in ours), ours
    rules = {comment.split("_wildcards_")[0].removeprefix("rule_") for _, _, comment, _ in ours}
    assert {"pretrain", "expert", "morl", "soup", "generate", "score"} <= rules
    # Aggregation, summary and figures are local rules: they run where Snakemake runs, never as sbatch jobs.
    assert not rules & LOCAL_RULES, rules

    result = run_snakemake(local, text_only_config, "--cores", "2", "results/text/scores.csv")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for path in ("results/text/scores.csv",):
        assert (cluster / path).read_text() == (local / path).read_text()


@pytest.mark.skipif(not cluster_is_up(), reason="no SLURM cluster answers (sudo tools/local-slurm.sh start)")
def test_an_expert_longer_than_its_time_limit_finishes_resumed_with_an_unlimited_runs_weights(tmp_path):
    """SLURM stops the expert at its 1-minute limit; Snakemake's retries (profile) resubmit it and it resumes
    from its last checkpoint, until done: the same adapter, byte for byte, as a local run without a limit."""
    data = yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text())
    text = data["tasks"]["text"]
    text["finetune"]["steps"] = 2400  # about 2 minutes on one core: longer than the limit
    text.setdefault("resources", {})["finetune"] = {"runtime": 1, "threads": 1}
    data["tasks"] = {"text": text}
    data["checkpoint"] = {"every_minutes": None, "every_steps": 100}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    reward = next(iter(text["rewards"]))
    target = f"results/text/experts/{reward}"
    local, cluster = tmp_path / "local", tmp_path / "slurm"
    local.mkdir()
    cluster.mkdir()

    started = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    result = run_on_slurm(cluster, config, target)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    accounting = accounting_since(started, "JobID,State,Comment")
    states = [line.split("|")[1] for line in accounting if "|rule_expert" in line]
    assert "TIMEOUT" in states and states[-1] == "COMPLETED", accounting
    log = (cluster / "logs" / "text" / "experts" / f"{reward}.log").read_text()
    assert "resuming the Trainer from" in log, log[-3000:]
    assert not list((cluster / "checkpoints").rglob("*.safetensors")), "checkpoints outlived the finished expert"

    result = run_snakemake(local, config, "--cores", "1", target)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (cluster / target / name).read_bytes() == (local / target / name).read_bytes(), name
