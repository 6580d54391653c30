#!/usr/bin/env python3
"""Benchmark: the streaming merge engine against mergekit, on the same files, with memory copy as the reference.

Writes two LLaMA-architecture checkpoints (random weights, bf16, sharded and
indexed as ``save_pretrained`` writes them; TinyLlama-1.1B's shape by default),
then merges them on an 11-point λ grid, one process per λ as the workflow's
soup jobs run: with this engine (``rewarded_soups.merging``) and with
mergekit's linear method (``mergekit-yaml``, from its own virtual
environment). Prints, per tool, wall time and peak RSS per λ, and bytes merged
per second (the merged model's size over the wall time), next to the
machine's memory-copy bandwidth. Both tools' λ = 0.3 soups are compared.

    python tools/bench-merge.py --mergekit /path/to/venv/bin/mergekit-yaml

Not a test: it prints numbers (docs/timings.md, "Merge benchmark").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = {  # TinyLlama-1.1B
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
}


def write_checkpoint(path: Path, seed: int, shapes: dict, shard_bytes: int) -> int:
    """A bf16 LLaMA checkpoint in save_pretrained's sharded layout; returns its tensor bytes."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shapes, tie_word_embeddings=False, dtype="bfloat16", architectures=["LlamaForCausalLM"])
    with torch.device("meta"):
        names = {k: (tuple(v.shape)) for k, v in LlamaForCausalLM(config).state_dict().items()}
    path.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    total = 0
    for name, shape in names.items():
        tensor = (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)
        if size + tensor.nbytes > shard_bytes and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += tensor.nbytes
        total += tensor.nbytes
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, path / file, metadata={"format": "pt"})
        weight_map |= {name: file for name in shard}
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.save_pretrained(path)
    return total


# Linux carries a process's peak RSS across exec, and a child forked from this benchmark would start
# with this process's pages; a small launcher process forks the measured command instead.
LAUNCHER = (
    "import os, sys; pid = os.fork()\n"
    "if pid == 0:\n    os.execvp(sys.argv[1], sys.argv[1:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "print(usage.ru_maxrss, file=sys.stderr)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))"
)


def run_measured(command: list[str], env: dict | None = None, stdout: list[str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one command; its standard output goes into ``stdout`` when given."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE if stdout is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {result.stderr[-3000:]}")
    if stdout is not None:
        stdout.append(result.stdout)
    return seconds, int(result.stderr.strip().splitlines()[-1]) * 1024 / 1e9  # ru_maxrss is in KiB


ENGINE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from rewarded_soups.merging.engine import merge
    from rewarded_soups.merging.spec import MergeSpec
    a, b, out, lam = sys.argv[1:5]
    spec = MergeSpec(members=[Path(a), Path(b)], weights=[float(lam), 1 - float(lam)],
                     files=["model.safetensors"], copy=["config.json"])
    merge(spec, Path(out))
    """
)


# The whole grid in one process and one pass over the experts (rewarded_soups.merging.grid).
GRID = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from rewarded_soups.merging.grid import merge_grid
    from rewarded_soups.merging.spec import MergeSpec
    a, b, prefix, *lams = sys.argv[1:]
    specs = [MergeSpec(members=[Path(a), Path(b)], weights=[float(lam), 1 - float(lam)],
                       files=["model.safetensors"], copy=["config.json"]) for lam in lams]
    import time
    start = time.perf_counter()
    merge_grid(specs, [Path(f"{{prefix}}-{{lam}}") for lam in lams])
    print(time.perf_counter() - start)  # the merge itself: the process's start and imports left out
    """
)

# A soup stored as a recipe, built in memory where it is evaluated, against loading the same soup stored in full.
LOAD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from rewarded_soups.merging.engine import load_state
    soup, device = Path(sys.argv[1]), sys.argv[2]
    start = time.perf_counter()
    tensors = load_state(soup, "model.safetensors", device)
    print(time.perf_counter() - start, sum(t.nbytes for t in tensors.values()))
    """
)


RECIPE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from rewarded_soups.merging.engine import merge
    from rewarded_soups.merging.spec import MergeSpec
    a, b, out, lam = sys.argv[1:5]
    spec = MergeSpec(members=[Path(a), Path(b)], weights=[float(lam), 1 - float(lam)],
                     files=["model.safetensors"], copy=["config.json"])
    merge(spec, Path(out), store="recipe")
    """
)


def mergekit_config(a: Path, b: Path, lam: float) -> str:
    return textwrap.dedent(
        f"""
        merge_method: linear
        dtype: bfloat16
        models:
          - model: {a}
            parameters: {{weight: {lam}}}
          - model: {b}
            parameters: {{weight: {1 - lam}}}
        """
    )


def drop_page_cache() -> bool:
    """Empty the page cache (root only), for cold reads; False when it cannot."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def disk_read_gbps(paths: list[Path]) -> float | None:
    """Cold sequential reads of the experts' files (None without root: the page cache cannot be emptied)."""
    if not drop_page_cache():
        return None
    start, total = time.perf_counter(), 0
    warm(paths)
    for path in paths:
        total += sum(f.stat().st_size for f in path.glob("*.safetensors"))
    return total / (time.perf_counter() - start) / 1e9


def disk_write_gbps(directory: Path, n_bytes: int = 4 << 30) -> float:
    """Sequential writes made durable (fsync): what the soups' files cost once the page cache must be flushed."""
    path = directory / "disk-write-probe"
    block = os.urandom(1 << 24)
    start = time.perf_counter()
    with open(path, "wb") as fh:
        for _ in range(n_bytes // len(block)):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    seconds = time.perf_counter() - start
    path.unlink()
    return n_bytes / seconds / 1e9


def memory_copy_gbps(n_bytes: int = 1 << 30, repeats: int = 5) -> float:
    import numpy as np

    src = np.ones(n_bytes, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_timed(np.copyto, dst, src) for _ in range(repeats))
    return n_bytes / best / 1e9


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def warm(paths: list[Path]) -> None:
    """Read the experts once so that both tools start from the same page cache."""
    for path in paths:
        for file in sorted(path.glob("*.safetensors")):
            with open(file, "rb") as fh:
                while fh.read(1 << 26):
                    pass


def compare(ours: Path, theirs: Path) -> float:
    import torch

    from rewarded_soups.merging.checkpoint import Checkpoint, checkpoint_file

    worst = 0.0
    with (
        Checkpoint(checkpoint_file(ours, "model.safetensors")) as a,
        Checkpoint(checkpoint_file(theirs, "model.safetensors")) as b,
    ):
        for name in a.keys():
            diff = (a.get(name).float() - b.get(name).float()).abs().max().item()
            worst = max(worst, diff)
            if a.get(name).dtype != torch.bfloat16 or b.get(name).dtype != torch.bfloat16:
                raise ValueError(f"{name}: not bf16 in both soups")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rs-merge-bench"))
    parser.add_argument("--mergekit", help="path of mergekit-yaml (in its own virtual environment); omit to skip")
    parser.add_argument("--points", type=int, default=11, help="λ grid points, ends included")
    parser.add_argument("--layers", type=int, default=SHAPES["num_hidden_layers"], help="fewer for a quick run")
    parser.add_argument("--shard-gb", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the soups (about one model size each)")
    args = parser.parse_args()

    shapes = {**SHAPES, "num_hidden_layers": args.layers}
    work = args.workdir
    a, b = work / "expert-a", work / "expert-b"
    if not (a / "model.safetensors.index.json").exists() or not (b / "model.safetensors.index.json").exists():
        shutil.rmtree(work, ignore_errors=True)
        start = time.perf_counter()
        size = write_checkpoint(a, 0, shapes, int(args.shard_gb * 1e9))
        write_checkpoint(b, 1, shapes, int(args.shard_gb * 1e9))
        print(f"wrote two checkpoints of {size / 1e9:.2f} GB in {time.perf_counter() - start:.0f} s", flush=True)
    size = json.loads((a / "model.safetensors.index.json").read_text())["metadata"]["total_size"]
    shards = len(set(json.loads((a / "model.safetensors.index.json").read_text())["weight_map"].values()))
    lams = [round(i / (args.points - 1), 6) for i in range(args.points)]
    copy_gbps = memory_copy_gbps()
    write_gbps = disk_write_gbps(work)
    read_gbps = disk_read_gbps([a, b])
    read_text = "not measured (emptying the page cache needs root)" if read_gbps is None else f"{read_gbps:.2f} GB/s"
    print(
        f"experts: LLaMA {shapes}, bf16, {size / 1e9:.2f} GB each in {shards} shards; memory copy {copy_gbps:.2f} GB/s,"
        f" disk writes {write_gbps:.2f} GB/s, disk reads {read_text}"
    )
    grid_soup = Path(f"{work / 'soup-grid'}-0.3")

    script = work / "engine_merge.py"
    script.write_text(ENGINE.format(root=str(ROOT)))
    tools = {
        "rewarded_soups.merging": lambda out, lam: [sys.executable, str(script), str(a), str(b), str(out), str(lam)]
    }
    if args.mergekit:

        def mergekit(out: Path, lam: float) -> list[str]:
            config = work / f"mergekit-{lam}.yml"
            config.write_text(mergekit_config(a, b, lam))
            return [args.mergekit, str(config), str(out), "--lazy-unpickle"]

        tools["mergekit (linear)"] = mergekit

    rows = []
    kept: dict[str, Path] = {}
    grid_script = work / "engine_grid.py"
    grid_script.write_text(GRID.format(root=str(ROOT)))
    warm([a, b])
    prefix = work / "soup-grid"
    for lam in lams:
        shutil.rmtree(f"{prefix}-{lam}", ignore_errors=True)
    out: list[str] = []
    seconds, peak = run_measured(
        [sys.executable, str(grid_script), str(a), str(b), str(prefix), *map(str, lams)],
        env={"OMP_NUM_THREADS": str(os.cpu_count())},
        stdout=out,
    )
    grid_merge_seconds = float(out[-1].split()[-1])
    print(
        f"  one-pass grid, {len(lams)} λ: {seconds:.1f} s ({grid_merge_seconds:.1f} s merging, "
        f"{seconds - grid_merge_seconds:.1f} s starting the process and importing), peak RSS {peak:.2f} GB",
        flush=True,
    )
    # Bytes read (each expert once) plus bytes written (every soup), over the merge itself.
    moved = (2 + len(lams)) * size
    grid_row = (
        "rewarded_soups.merging, one-pass grid",
        seconds,
        seconds / len(lams),
        peak,
        size * len(lams) / seconds / 1e9,
    )
    for tool, command in tools.items():
        warm([a, b])
        times, peaks = [], []
        for lam in lams:
            out = work / f"soup-{tool.split()[0]}-{lam}"
            shutil.rmtree(out, ignore_errors=True)
            seconds, peak = run_measured(command(out, lam), env={"OMP_NUM_THREADS": str(os.cpu_count())})
            times.append(seconds)
            peaks.append(peak)
            print(f"  {tool} λ={lam}: {seconds:.1f} s, peak RSS {peak:.2f} GB", flush=True)
            if abs(lam - 0.3) < 1e-9:
                kept[tool] = out
            elif not args.keep:
                shutil.rmtree(out, ignore_errors=True)
        total = sum(times)
        rows.append((tool, total, total / len(lams), max(peaks), size * len(lams) / total / 1e9))

    print()
    print(f"| tool | {len(lams)} λ in all | per λ | peak RSS | bytes merged per second |")
    print("| --- | --- | --- | --- | --- |")
    for tool, total, per, peak, rate in [grid_row, *rows]:
        print(f"| {tool} | {total:.1f} s | {per:.1f} s | {peak:.2f} GB | {rate:.2f} GB/s |")
    rate = moved / grid_merge_seconds / 1e9
    print(
        f"one-pass grid: {rate:.2f} GB/s read + written over the merge itself "
        f"({rate / copy_gbps:.0%} of memory copy, {rate / write_gbps:.0%} of durable disk writes)"
    )
    print(f"| memory copy (numpy, 1 GiB) | | | | {copy_gbps:.2f} GB/s |")
    print(f"| disk, sequential durable writes (4 GiB, fsync) | | | | {write_gbps:.2f} GB/s |")
    print(f"| disk, cold sequential reads (the experts) | | | | {read_text} |")

    # A recipe built where it is evaluated against loading the full soup, each in a fresh process, warm cache.
    recipe = work / "soup-recipe-0.3"
    shutil.rmtree(recipe, ignore_errors=True)
    recipe_script = work / "engine_recipe.py"
    recipe_script.write_text(RECIPE.format(root=str(ROOT)))
    subprocess.run([sys.executable, str(recipe_script), str(a), str(b), str(recipe), "0.3"], check=True)
    load_script = work / "engine_load.py"
    load_script.write_text(LOAD.format(root=str(ROOT)))
    full = grid_soup if grid_soup.exists() else None
    for label, soup in (("full soup, loaded", full), ("recipe, built in memory", recipe)):
        if soup is None:
            continue
        warm([a, b, soup])
        out = []
        seconds, peak = run_measured([sys.executable, str(load_script), str(soup), "cpu"], stdout=out)
        inner, nbytes = out[-1].split()
        print(
            f"  {label} (λ = 0.3, CPU): {float(inner):.1f} s in the process ({seconds:.1f} s with its start), "
            f"{int(nbytes) / 1e9:.2f} GB, peak RSS {peak:.2f} GB",
            flush=True,
        )
    shutil.rmtree(recipe, ignore_errors=True)
    if "rewarded_soups.merging" in kept and grid_soup.exists():
        print(
            f"largest difference between the grid's and the per-λ λ = 0.3 soups: "
            f"{compare(grid_soup, kept['rewarded_soups.merging']):.3g}"
        )
    for lam in lams:
        if not args.keep:
            shutil.rmtree(f"{prefix}-{lam}", ignore_errors=True)
    if len(kept) == 2:
        ours, theirs = kept.values()
        print(f"largest difference between the two λ = 0.3 soups: {compare(ours, theirs):.3g} (bf16)")
    if not args.keep:
        for path in kept.values():
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
