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
import fcntl
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
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


def listen(path: Path) -> tuple[socket.socket, int]:
    """A socket listening at ``path`` (it appears only once it listens: clients find a ready service), its inode."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Shorter than the socket's own name: a Unix socket path holds at most 107 bytes.
    staging = path.with_name(f".{os.getpid()}.staging")
    staging.unlink(missing_ok=True)
    listener.bind(str(staging))
    listener.listen(64)
    os.replace(staging, path)
    return listener, path.stat().st_ino


def unpublish(path: Path, inode: int) -> None:
    """Remove the socket at ``path`` if it is still the one of ``inode`` (a newer service may have replaced it)."""
    with contextlib.suppress(OSError):
        if path.stat().st_ino == inode:
            path.unlink()


def stop_all() -> list[str]:
    """Ask every running service of this user on this machine to exit; the names of those that answered."""
    stopped = []
    with contextlib.suppress(OSError, RuntimeError):
        for path in sorted(socket_dir().glob("*.sock")):
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                exchange(path, {"op": "stop"}, timeout=60)
                stopped.append(path.stem)
    return stopped


def start_detached(
    argv: Sequence[str], log_path: Path, env: dict[str, str], ready: Callable[[], bool], timeout: float
) -> None:
    """Start a service and wait until ``ready()``; it is not a descendant of the caller.

    A launcher process starts the service and exits at once, so that the
    service is nobody's child in the job's process tree (Snakemake's benchmark
    of the job that happened to start it would count every later job's work)
    and ends up with the nearest subreaper (``tools/profile-run.py --record``,
    which counts its CPU) or init.
    """
    launcher = (
        "import os, subprocess, sys; "
        "log = open(sys.argv[1], 'ab'); "
        "service = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, "
        "start_new_session=True); print(service.pid, flush=True); os._exit(0)"
    )
    size = log_path.stat().st_size if log_path.exists() else 0
    launched = subprocess.run(
        [sys.executable, "-c", launcher, str(log_path), *argv],
        env=env,
        cwd=log_path.parent,
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(launched.stdout.split()[-1])
    deadline = time.monotonic() + timeout
    while not ready():
        if not running(pid) or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[size:][-2000:] if log_path.exists() else ""
            state = "exited while starting" if not running(pid) else f"did not answer within {timeout:.0f} s"
            raise RuntimeError(f"the service {' '.join(argv[-3:])} {state}; its log ({log_path}) says:\n{tail}")
        time.sleep(0.05)


def running(pid: int) -> bool:
    """Alive and not a zombie (a dead service waits for a reaper that is not us)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


def ping(path: Path) -> bool:
    """Whether a service answers at ``path``."""
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        return "pid" in exchange(path, {"op": "ping"}, timeout=30)
    return False


def start(path: Path, module_args: Sequence[str], timeout: float) -> None:
    """Start ``python -m <module_args>`` as the service of ``path`` unless one answers there.

    Under a lock next to the socket: of jobs that find no service at once, one starts it
    and the others wait, then connect. The service imports this package from where the
    caller found it.
    """
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ping(path):
            return
        path.unlink(missing_ok=True)  # a stale socket of a service that died
        package_root = str(Path(__file__).resolve().parents[2])
        pythonpath = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", *module_args]
        start_detached(
            argv, path.with_suffix(".log"), {**os.environ, "PYTHONPATH": pythonpath}, lambda: ping(path), timeout
        )
