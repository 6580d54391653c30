"""Machine-local helper processes that jobs share (one per user and machine), and stopping them.

A service listens on a Unix socket in a directory only the user can open
(``<tmp>/rewarded-soups-<uid>/``, or ``$REWARDED_SOUPS_SOCKET_DIR``) and speaks
one JSON line per request and per answer (nothing is unpickled); every service
answers ``{"op": "stop"}`` by exiting after the requests before it. The
Snakefile's ``onsuccess``/``onerror`` call :func:`stop_all`, so that none
outlives a workflow by more than its idle timeout even when a job was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from pathlib import Path

SOCKET_DIR_ENV = "REWARDED_SOUPS_SOCKET_DIR"


def socket_dir() -> Path:
    """The user's private directory for services' sockets, locks and logs (created on first use)."""
    configured = os.environ.get(SOCKET_DIR_ENV)
    base = Path(tempfile.gettempdir())
    if len(str(base)) > 40:  # AF_UNIX paths are limited to about 100 bytes; some clusters' $TMPDIR are long
        base = Path("/tmp")
    directory = Path(configured) if configured else base / f"rewarded-soups-{os.getuid()}"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RuntimeError(
            f"{directory} must belong to you and be private (mode 700) to hold the shared services' sockets; "
            f"remove it, or set {SOCKET_DIR_ENV} to a private directory"
        )
    return directory


def exchange(path: Path, request: dict, timeout: float = 3600.0) -> dict:
    """Send one request to the service at ``path`` and return its answer (raises its error)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(json.dumps(request).encode() + b"\n")
        with conn.makefile("rb") as answers:
            line = answers.readline()
    if not line:
        raise ConnectionResetError(f"the service at {path} closed the connection without an answer")
    answer = json.loads(line)
    if "error" in answer:
        raise RuntimeError(f"the service at {path} failed: {answer['error']}")
    return answer


def stop_all() -> list[str]:
    """Ask every running service of this user on this machine to exit; the names of those that answered."""
    stopped = []
    with contextlib.suppress(OSError, RuntimeError):
        for path in sorted(socket_dir().glob("*.sock")):
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                exchange(path, {"op": "stop"}, timeout=60)
                stopped.append(path.stem)
    return stopped
