"""Local paths versus hub ids in a config: what can be checked before any job."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


def looks_local(value: str) -> bool:
    """Whether ``value`` names a local path rather than a hub id (``org/name`` or ``name``).

    It does when it exists, starts with ``/``, ``.`` or ``~``, or has more
    than one ``/`` or a backslash (hub ids never do).
    """
    text = str(value)
    return Path(text).expanduser().exists() or text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text


def model_directory_problem(value: str) -> str | None:
    """Why ``value`` cannot be a local model directory, or None (also for a hub id, checked when it loads)."""
    path = Path(str(value)).expanduser()
    if not looks_local(value):
        return None
    if not path.exists():
        return f"{value} does not exist (a local path; a hub id looks like org/name)"
    if not path.is_dir():
        return f"{value} is a file, not a model directory"
    if not (path / "config.json").is_file():
        return f"{value} has no config.json: not a saved model directory (save_pretrained writes one)"
    return None


def hub_load_error(name: str, err: BaseException) -> OSError:
    """One line for a model that is neither a local directory nor downloadable."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return OSError(f"{name}: not found locally and could not be downloaded: {first}")


@contextlib.contextmanager
def loading(name: str) -> Iterator[None]:
    """Turn a failed ``from_pretrained`` of a hub id into :func:`hub_load_error` (local directories fail as they do)."""
    try:
        yield
    except Exception as err:
        from_hub = isinstance(err, OSError) or type(err).__module__.startswith("huggingface_hub")
        if not from_hub or Path(str(name)).expanduser().is_dir():
            raise
        raise hub_load_error(name, err) from None
