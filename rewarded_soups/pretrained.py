"""A pretrained model that a task starts from, referenced, never copied.

θ0 may be an existing model named by a hub id or a local directory. The
pretrain directory then holds ``base_model.json``: the hub id and the commit
it resolved to, or the local path with a content hash of its files. Every
later job loads the model from there, and a local directory that changed
since pretraining is refused instead of silently mixing two θ0s in one front.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rewarded_soups import fingerprint

log = logging.getLogger(__name__)

REFERENCE_FILE = "base_model.json"


@dataclass(frozen=True)
class BaseModel:
    """Where θ0's weights and tokenizer come from."""

    model: str  # a local directory or a hub id
    revision: str | None = None  # hub commit (resolved at pretraining when the hub answered)
    adapter: str | None = None  # a LoRA adapter merged into θ0 at load time (e.g. Alpaca-LoRA)
    adapter_revision: str | None = None
    trust_remote_code: bool = False
    # Local directories: {relative path: [size, mtime_ns]} and a sha256 over their contents.
    files: dict[str, list[int]] = field(default_factory=dict)
    content_sha256: str | None = None


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a hub revision points at now, so that later jobs load exactly it (None when offline)."""
    try:
        from huggingface_hub import model_info

        return model_info(repo_id, revision=revision).sha
    except Exception as err:  # offline, gated or private: keep the revision as given
        log.warning("could not resolve %s@%s to a commit on the hub (%s); keeping it as given", repo_id, revision, err)
        return revision


def reference(settings: dict[str, Any], key: str = "model") -> BaseModel:
    """The reference to write for ``pretrain.<key>`` (and ``pretrain.adapter``)."""
    name, revision = settings[key], settings.get("revision")
    trust = bool(settings.get("trust_remote_code", False))
    local = Path(name).expanduser()
    if local.is_dir():
        files = fingerprint.listing(local)
        ref = BaseModel(
            model=str(local.resolve()),
            files=files,
            content_sha256=fingerprint.content_hash(local, files),
            trust_remote_code=trust,
        )
    elif name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"pretrain.{key} {name!r} is not a directory; give a local model directory or a hub id")
    else:
        ref = BaseModel(model=name, revision=_hub_commit(name, revision), trust_remote_code=trust)
    adapter = settings.get("adapter")
    if adapter:
        local_adapter = Path(adapter).expanduser()
        if local_adapter.is_dir():
            ref = BaseModel(**{**asdict(ref), "adapter": str(local_adapter.resolve())})
        else:
            commit = _hub_commit(adapter, settings.get("adapter_revision"))
            ref = BaseModel(**{**asdict(ref), "adapter": adapter, "adapter_revision": commit})
    return ref


def write_reference(out_dir: Path, ref: BaseModel) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REFERENCE_FILE).write_text(json.dumps(asdict(ref), indent=2) + "\n")


def base_model(base_dir: Path) -> BaseModel:
    """θ0 of a pretrain directory; checks that a referenced local directory is unchanged."""
    base_dir = Path(base_dir)
    ref_file = base_dir / REFERENCE_FILE
    if not ref_file.exists():
        return BaseModel(model=str(base_dir))
    ref = BaseModel(**json.loads(ref_file.read_text()))
    if ref.content_sha256 is not None:
        local = Path(ref.model)
        if not local.is_dir():
            raise FileNotFoundError(
                f"θ0 was the local directory {local}, which is gone; "
                "restore it or rerun `snakemake --forcerun pretrain`"
            )
        if not fingerprint.unchanged(local, ref.files, ref.content_sha256):
            raise RuntimeError(
                f"θ0's directory {local} changed since pretraining (its content hash differs from {ref_file}); "
                "results would mix two θ0s. Restore it, or rerun everything from θ0 with "
                "`snakemake --forcerun pretrain`"
            )
    return ref


def from_pretrained_kwargs(ref: BaseModel) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": ref.trust_remote_code}
    if ref.revision:
        kwargs["revision"] = ref.revision
    return kwargs
