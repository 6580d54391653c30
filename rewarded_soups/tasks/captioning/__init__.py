"""Image captioning (paper Section 3.2, Appendix E): one expert per captioning metric.

θ0 is a small image-to-text model (a convolutional encoder and a GPT-2
decoder with cross-attention, :mod:`.model`) trained from scratch with
cross-entropy on generated scenes of shapes and their five reference
captions (:mod:`rewarded_soups.data.shapes`), then optimised on CIDEr with
self-critical REINFORCE like the paper's initialisation. Experts and MORL
run the same self-critical training from θ0 on their (mixed) reward
(:mod:`.scst`); soups interpolate full state dicts. Samples are the greedy
captions of the test images with their references (``captions.json``).

Baselines of the paper's captioning experiments, when enabled in the
config: prediction ensembling of two experts (:func:`ensemble`, Figure 5c)
and interpolation toward θ0 (WiSE, Figure 14e; :func:`merge` with θ0 as a member).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rewarded_soups.gpus import torch_threads
from rewarded_soups.registry import register_task

register_task("captioning", module=__name__, modality="caption", baselines=("ensemble", "wise"))


log = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.json"
VOCAB_FILE = "vocab.json"
REFERENCES_FILE = "train_references.json"  # CIDEr's document-frequency corpus, saved with θ0
ENSEMBLE_FILE = "ensemble.json"
# The workflow's generic baselines this task implements.


def check_settings(task: dict[str, Any]) -> None:
    check_encoder_decoder_settings(task)


def check_encoder_decoder_settings(
    task: dict[str, Any], max_len_sections: tuple[str, ...] = ("finetune", "evaluate")
) -> None:
    """What the schema cannot say about a task built on this captioner (captioning, grounding, VQA).

    ``max_len_sections``: the sections whose ``max_len`` must fit the decoder's positions.
    """
    model = task["pretrain"]["model"]
    if model["d_model"] % model["heads"]:
        raise ValueError(f"pretrain.model.d_model ({model['d_model']}) must be a multiple of heads ({model['heads']})")
    if task["data"]["image_size"] % 4:
        raise ValueError(f"data.image_size ({task['data']['image_size']}) must be a multiple of 4 (encoder stride)")
    for key, available in (("n_images", "test_images"), ("validation_size", "valid_images")):
        if (task["evaluate"].get(key) or 0) > task["data"][available]:
            raise ValueError(
                f"evaluate.{key} ({task['evaluate'][key]}) exceeds data.{available} ({task['data'][available]}): "
                f"lower it or generate more images"
            )
    for section in max_len_sections:
        if task[section]["max_len"] > model["max_len"]:
            raise ValueError(
                f"{section}.max_len ({task[section]['max_len']}) exceeds pretrain.model.max_len ({model['max_len']})"
            )


def _splits(data: dict[str, Any], seed: int):
    from rewarded_soups.tasks.captioning.data import make_splits

    return make_splits(
        data["train_images"], data["valid_images"], data["test_images"], seed, data["image_size"], data["captions"]
    )


def _reward_fn(rewards: dict[str, dict[str, Any]], weights: dict[str, float], df_references):
    """Σ weights[r]·R_r over captions, and the scorers to close (METEOR holds a Java process)."""
    from rewarded_soups.registry import build_reward
    from rewarded_soups.rewards import weighted_sum

    scorers = {name: build_reward(spec, context={"df_references": df_references}) for name, spec in rewards.items()}

    def reward(candidates, references):
        values = {name: scorer(candidates, references) for name, scorer in scorers.items()}
        return weighted_sum(values, weights).tolist()

    return reward, list(scorers.values())


def _close(scorers) -> None:
    for s in scorers:
        if hasattr(s, "close"):
            s.close()


def pretrain(out_dir: Path, settings: dict[str, Any], *, seed: int, threads: int) -> dict[str, Any]:
    """Cross-entropy from scratch, then self-critical training on CIDEr (the paper's initialisation)."""
    torch_threads(threads)
    from rewarded_soups.tasks.captioning import model as captioner
    from rewarded_soups.tasks.captioning.data import build_vocab, flat_captions
    from rewarded_soups.tasks.captioning.scst import greedy_captions, train_scst, train_xent

    data, cfg = settings["data"], settings["pretrain"]
    splits = _splits(data, seed)
    vocab = build_vocab(flat_captions(splits.train.captions))
    model = captioner.build(captioner.make_config(len(vocab), image_size=data["image_size"], **cfg["model"]), seed)
    log.info("θ0: %d parameters, vocabulary %d words", captioner.parameter_count(model), len(vocab))
    xent = train_xent(
        model,
        splits.train.images,
        splits.train.captions,
        vocab,
        steps=cfg["xent_steps"],
        batch_size=cfg["batch_size"],
        lr=cfg["learning_rate"],
        seed=seed,
    )
    references = [list(c) for c in splits.train.captions]
    reward, scorers = _reward_fn({"cider": {"kind": "cider"}}, {"cider": 1.0}, references)
    try:
        valid = splits.valid
        valid_before = sum(reward(greedy_captions(model, valid.images, vocab, model.max_len), valid.captions))
        scst = train_scst(
            model,
            splits.train.images,
            splits.train.captions,
            reward,
            vocab,
            steps=cfg["scst_steps"],
            batch_size=cfg["scst_batch_size"],
            lr=cfg["scst_learning_rate"],
            max_len=cfg["scst_max_len"],
            seed=seed,
        )
        valid_after = sum(reward(greedy_captions(model, valid.images, vocab, model.max_len), valid.captions))
    finally:
        _close(scorers)
    out_dir = Path(out_dir)
    captioner.save(model, out_dir)
    vocab.save(out_dir / VOCAB_FILE)
    (out_dir / REFERENCES_FILE).write_text(json.dumps(references))
    n_valid = len(splits.valid.captions)
    return {
        "xent_final_loss": xent["loss"][-1] if xent["loss"] else None,
        "valid_cider_after_xent": valid_before / n_valid,
        "valid_cider_after_scst": valid_after / n_valid,
        "seconds": xent["seconds"] + scst["seconds"],
    }


def finetune(
    base_dir: Path,
    out_dir: Path,
    rewards: dict[str, dict[str, Any]],
    weights: dict[str, float],
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
) -> dict[str, Any]:
    """Self-critical REINFORCE from θ0 on Σ weights[r]·R_r (an expert when one weight is 1)."""
    torch_threads(threads)
    from rewarded_soups.tasks.captioning import model as captioner
    from rewarded_soups.tasks.captioning.data import Vocab
    from rewarded_soups.tasks.captioning.scst import train_scst

    base_dir, cfg = Path(base_dir), settings["finetune"]
    splits = _splits(settings["data"], seed)
    model = captioner.load(base_dir)
    vocab = Vocab.load(base_dir / VOCAB_FILE)
    reward, scorers = _reward_fn(rewards, weights, json.loads((base_dir / REFERENCES_FILE).read_text()))
    log.info("self-critical training on %s", " + ".join(f"{w:g}·{r}" for r, w in weights.items()))
    try:
        metrics = train_scst(
            model,
            splits.train.images,
            splits.train.captions,
            reward,
            vocab,
            steps=cfg["steps"],
            batch_size=cfg["batch_size"],
            lr=cfg["learning_rate"],
            max_len=cfg["max_len"],
            seed=seed,
        )
    finally:
        _close(scorers)
    out_dir = Path(out_dir)
    captioner.save(model, out_dir)
    return metrics


def merge(
    base_dir: Path,
    expert_dirs: list[Path],
    weights: list[float],
    out_dir: Path,
    settings: dict[str, Any],
    *,
    fisher_dirs: list[Path] | None = None,
) -> None:
    """Σ λ_i θ_i over full captioners, streamed; a member may be θ0 itself (WiSE)."""
    from rewarded_soups.merging.engine import run
    from rewarded_soups.merging.spec import MergeSpec
    from rewarded_soups.tasks.captioning.model import CONFIG_FILE, WEIGHTS_FILE

    spec = MergeSpec(
        members=list(expert_dirs),
        weights=list(weights),
        files=[WEIGHTS_FILE],
        copy=[CONFIG_FILE],
        base=Path(base_dir),
        fishers=fisher_dirs,
    )
    run(spec, Path(out_dir), settings.get("merge", {}))


def fisher(
    base_dir: Path,
    expert_dir: Path,
    out_dir: Path,
    rewards: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
) -> dict[str, Any]:
    """The expert's diagonal Fisher on its own fine-tuning images, with captions it samples itself."""
    torch_threads(threads)
    import torch
    from safetensors.torch import save_file

    from rewarded_soups.gpus import torch_device
    from rewarded_soups.merging.fisher import diagonal_fisher
    from rewarded_soups.tasks.captioning import model as captioner
    from rewarded_soups.tasks.captioning.model import WEIGHTS_FILE, images_to_tensor

    dev = torch_device()
    pixels = images_to_tensor(_splits(settings["data"], seed).train.images)
    n = min(settings["merge"]["fisher"]["samples"], len(pixels))
    chosen = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    model = captioner.load(Path(expert_dir)).to(dev).eval()
    sampler = torch.Generator(device=dev).manual_seed(seed)
    max_len = settings["finetune"]["max_len"]

    def sample_logprob(i: int) -> torch.Tensor:
        return model.sample(pixels[chosen[i] : chosen[i] + 1].to(dev), max_len, generator=sampler)[1].sum()

    values = diagonal_fisher(dict(model.named_parameters()), sample_logprob, n)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().cpu() for k, v in values.items()}, out_dir / WEIGHTS_FILE, metadata={"format": "pt"})
    return {"samples": n, "tensors": len(values)}


def ensemble(
    base_dir: Path, expert_dirs: list[Path], weights: list[float], out_dir: Path, settings: dict[str, Any]
) -> None:
    """A prediction ensemble is its members and weights: written down here, decoded in :func:`generate`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"members": [str(Path(d)) for d in expert_dirs], "weights": [float(w) for w in weights]}
    (out_dir / ENSEMBLE_FILE).write_text(json.dumps(manifest, indent=2))


def generate(
    base_dir: Path,
    model_dir: Path | None,
    out_dirs: dict[str, Path],
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
) -> None:
    """Greedy captions of each held-out split's images (the paper evaluates greedy/beam decoding), with references."""
    torch_threads(threads)
    from rewarded_soups.tasks.captioning import model as captioner
    from rewarded_soups.tasks.captioning.data import Vocab
    from rewarded_soups.tasks.captioning.model import images_to_tensor
    from rewarded_soups.tasks.captioning.scst import greedy_captions

    base_dir, cfg = Path(base_dir), settings["evaluate"]
    splits = _splits(settings["data"], seed)
    vocab = Vocab.load(base_dir / VOCAB_FILE)
    model_dir = Path(model_dir) if model_dir is not None else base_dir
    ensemble = (model_dir / ENSEMBLE_FILE).exists()
    if ensemble:
        manifest = json.loads((model_dir / ENSEMBLE_FILE).read_text())
        members = [captioner.load(Path(d)) for d in manifest["members"]]
    else:
        model = captioner.load(model_dir)
    for split, out_dir in out_dirs.items():
        held_out, n = (splits.test, cfg["n_images"]) if split == "test" else (splits.valid, cfg["validation_size"])
        n = len(held_out.images) if n is None else n
        images, references = held_out.images[:n], held_out.captions[:n]
        if ensemble:
            pixels = images_to_tensor(images)
            captions = []
            for start in range(0, len(pixels), 256):
                ids = captioner.ensemble_greedy(
                    members, manifest["weights"], pixels[start : start + 256], cfg["max_len"]
                )
                captions += vocab.decode_batch(ids.tolist())
        else:
            captions = greedy_captions(model, images, vocab, cfg["max_len"])
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        records = [{"caption": c, "references": list(r)} for c, r in zip(captions, references)]
        (out_dir / CAPTIONS_FILE).write_text(json.dumps(records, indent=1))


def read_captions(samples_dir: Path) -> list[dict[str, Any]]:
    return json.loads((Path(samples_dir) / CAPTIONS_FILE).read_text())


def score(
    samples_dirs: dict[str, Path], reward: dict[str, Any], *, base_dir: Path, threads: int
) -> dict[str, list[float]]:
    from rewarded_soups.registry import build_reward

    df = json.loads((Path(base_dir) / REFERENCES_FILE).read_text())
    # One scorer for every split: METEOR starts its Java process (seconds of CPU) once per job.
    scorer = build_reward(reward, context={"df_references": df})
    values = {}
    try:
        for split, samples_dir in samples_dirs.items():
            records = read_captions(samples_dir)
            values[split] = scorer([r["caption"] for r in records], [r["references"] for r in records])
    finally:
        _close([scorer])
    return values


def samples_table(samples: dict[str, Path], n: int) -> str:
    """Markdown: for each of the first ``n`` test images, one reference and every model's caption."""
    columns = {label: read_captions(Path(path)) for label, path in samples.items()}
    first = next(iter(columns.values()))
    lines = ["Greedy captions of the first test images, model by model (λ: interpolation weights).", ""]
    for i in range(min(n, len(first))):
        lines += [f"### Image {i}", "", f"Reference: *{first[i]['references'][0]}*", "", "| model | caption |"]
        lines.append("| --- | --- |")
        lines += [f"| {label} | {records[i]['caption']} |" for label, records in columns.items()]
        lines.append("")
    return "\n".join(lines)
