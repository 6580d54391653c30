#!/usr/bin/env bash
# Minute-scale runs of the accelerator configs on a GPU machine, one task after the other,
# through the real workflow with `--resources gpu=1`; prints each stage's times.
#
#   tools/gpu-smoke.sh [TASK ...]        TASK: text locomotion image captioning (default: all)
#   GPU_SMOKE_CPU=1 tools/gpu-smoke.sh   rehearsal without a GPU: jobs claim a fake device
#                                        (RS_GPUS=cpu) and torch/jax fall back to the CPU
#
# Each task runs in gpu-smoke/<task>/ (git-ignored) with config/shapes-<task>.yaml (else paper-) merged with
# tools/gpu-smoke/<task>.yaml (same networks and precision, far fewer steps and soups).
# The text task's models come from tests/tiny_models.py (the GPU machine reaches no hub).
# Needs the workflow's Python packages: on the lent GPU machine carry the missing ones as
# py3.12 wheels (docs/gpu.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] && PYTHON=${PYTHON_OVERRIDE:-.venv/bin/python}
TASKS=("$@")
[ ${#TASKS[@]} -eq 0 ] && TASKS=(text locomotion image captioning)
if [ "${GPU_SMOKE_CPU:-0}" = 1 ]; then
    export RS_GPUS=cpu
    echo "rehearsal on the CPU: jobs claim the fake device 'cpu'"
else
    nvidia-smi -L || { echo "no GPU (nvidia-smi failed); set GPU_SMOKE_CPU=1 for a CPU rehearsal"; exit 2; }
fi
CORES=$(nproc)
status=0
for task in "${TASKS[@]}"; do
    work="$ROOT/gpu-smoke/$task"
    rm -rf "$work" && mkdir -p "$work"
    cp config.yaml "$work/config.yaml"
    if [ "$task" = text ]; then
        "$PYTHON" - "$work/hub" <<'PY'
import sys
from pathlib import Path

sys.path.insert(0, "tests")
import tiny_models

hub = Path(sys.argv[1])
tiny_models.llama_policy(hub / "tiny-llama")
tiny_models.deberta_reward_model(hub / "rm-deberta")
tiny_models.electra_reward_model(hub / "rm-electra")
tiny_models.questions_jsonl(hub / "questions.jsonl", repeat=8)
PY
    fi
    # The offline model at accelerator size where the task has one (the paper configs of image and
    # captioning need hub models that a GPU machine without network cannot fetch).
    base="config/paper-$task.yaml"
    [ -f "$ROOT/config/shapes-$task.yaml" ] && base="config/shapes-$task.yaml"
    echo "=== $task: $base + tools/gpu-smoke/$task.yaml in $work"
    start=$(date +%s)
    if "$PYTHON" -m snakemake --snakefile "$ROOT/Snakefile" --cores "$CORES" --resources gpu=1 \
        --directory "$work" --configfile "$ROOT/$base" "$ROOT/tools/gpu-smoke/$task.yaml" \
        > "$work/snakemake.log" 2>&1; then
        echo "=== $task: done in $(( $(date +%s) - start )) s"
    else
        echo "=== $task: FAILED after $(( $(date +%s) - start )) s; the end of $work/snakemake.log:"
        tail -n 30 "$work/snakemake.log"
        status=1
    fi
    "$PYTHON" tools/profile-run.py "$work" || true
done
exit $status
