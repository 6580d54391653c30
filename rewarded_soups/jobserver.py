"""Jobs' scripts run in forks of one warm Python process that has imported torch and friends once.

Importing torch, transformers, peft and diffusers costs a job 3 to 8 s of CPU;
in the default run that was 491 s of 2,636, more than the work of every soup,
score and most generations. :func:`run_warm`, the first call of a job script,
sends the job (its Snakemake inputs, outputs, params, wildcards, threads, log,
environment and working directory: JSON) to a server process that imported
those libraries once (:data:`PRELOAD`); the server forks, and the fork runs the
same script with the same ``snakemake`` object while the job's own process
waits, passes on its exit status and, if Snakemake kills it, takes the fork
down with it. The fork writes to the job's own stdout and stderr (their file
descriptors travel over the socket).

What keeps the results the job's own:

* The fork starts with no module of this package: they are imported from the
  job's ``sys.path``, so edited code runs (and the workflow copy the job
  belongs to); only third-party libraries are shared.
* One server per Python interpreter and environment (its variables, e.g.
  Snakemake's ``OMP_NUM_THREADS`` per job thread count, which BLAS and OpenMP
  read once when loaded): a job never runs with another job's settings.
* Nothing runs in the server but imports: CUDA is never initialised, so each
  fork sets its own ``CUDA_VISIBLE_DEVICES``; jax creates no XLA backend (not
  fork-safe, with its threads) until a fork asks for a device, and XLA reads
  the fork's ``XLA_FLAGS`` then.

It is on only where it is asked for: ``REWARDED_SOUPS_WARM_JOBS=1``, which
the Snakefile sets when the config says ``warm_jobs: true`` (the default
profile does) and jobs run on the machine Snakemake runs on. Even then a job
runs in its own process, as Snakemake starts it, when it has a GPU (``gpu``
resource above 0: a fork shares the server's memory, and no GPU job has been
measured through it) and under a cluster scheduler (``SLURM_JOB_ID`` set): a
fork of a server started by another job would run outside this job's
allocation.

Nothing outlives its job: the fork leads its own process group, and when the
job's process goes (killed by Snakemake, or with Snakemake:
:func:`die_with_parent`) the fork kills that group, its own children
included. The server is a shared service
(:mod:`rewarded_soups.services`): it exits after ``IDLE_SECONDS`` without a
job, or when the workflow ends.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib
import json
import os
import resource
import runpy
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from rewarded_soups import services
from rewarded_soups.services import socket_dir
from rewarded_soups.services import start as start_service

PRELOAD = (
    "numpy",
    "torch",
    "safetensors.torch",
    "transformers",
    "transformers.modeling_utils",
    "peft",
    "trl",
    "diffusers",
    "pandas",
    "matplotlib",
    # Imported only: no XLA backend exists until a fork asks for a device, and XLA reads XLA_FLAGS then.
    "jax",
    "brax.envs",
    "brax.training.agents.ppo.train",
)
IDLE_SECONDS = 600.0
START_TIMEOUT_SECONDS = 300.0
ENABLE_ENV = "REWARDED_SOUPS_WARM_JOBS"
IDLE_ENV = "REWARDED_SOUPS_WARM_JOBS_IDLE_SECONDS"
# Cluster schedulers: a job's fork must run inside that job's allocation.
SCHEDULER_ENV = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID")
# A job's request starts with this byte, which carries its stdout and stderr; a plain JSON line
# (rewarded_soups.services: ping, stop) starts with "{".
_FDS_FOLLOW = b"F"
_FORK_ENV = "REWARDED_SOUPS_IN_WARM_FORK"

# Set in a fork: the script's run_warm call then returns and the script does the work.
_in_fork = False
_preloaded: frozenset[str] = frozenset()


def preloaded() -> frozenset[str]:
    """Modules this process got from the warm server rather than importing them (empty outside a fork)."""
    return _preloaded


def enabled() -> bool:
    if os.environ.get(ENABLE_ENV, "0").strip().lower() not in ("1", "true", "yes", "on"):
        return False
    return not any(os.environ.get(name) for name in SCHEDULER_ENV)


def kill_descendants(pid: int | None = None) -> None:
    """SIGKILL every process below ``pid`` (default: this one), from /proc; shared services, which detach into
    sessions of their own under init, are not below it."""
    pid = pid or os.getpid()
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    below, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        below += children
        frontier += children
    for child in below:
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)


SNAKEMAKE_PID_ENV = "REWARDED_SOUPS_SNAKEMAKE_PID"


def die_with_parent() -> None:
    """Kill this process when the Snakemake that started it exits, SIGKILL included.

    A job whose Snakemake is gone would go on writing results that a rerun is
    rewriting. Snakemake's pid comes from the environment (the Snakefile sets
    :data:`SNAKEMAKE_PID_ENV` in the Snakemake process, the jobs inherit it): a
    job started a moment before Snakemake died sees it gone at once, where its
    parent pid would already be init's. Without it (a script run by hand) the
    parent is watched. Linux's parent-death signal is not used: it fires when the
    parent *thread* that started the job exits, and Snakemake starts jobs from
    worker threads. A thread waits on Snakemake's pidfd instead (polling where
    pidfds are missing).
    """
    try:
        parent = int(os.environ.get(SNAKEMAKE_PID_ENV) or os.getppid())
    except ValueError:
        parent = os.getppid()
    if parent <= 1:
        return

    def wait_then_die() -> None:
        try:
            fd = os.pidfd_open(parent)
        except ProcessLookupError:
            pass  # Snakemake is already gone
        except (AttributeError, OSError):
            while services.running(parent):
                time.sleep(1.0)
        else:
            import select

            select.select([fd], [], [])
        kill_descendants()
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait_then_die, name="die-with-parent", daemon=True).start()


def socket_path() -> Path:
    """One server per interpreter (by path and file identity) and environment."""
    exe = Path(sys.executable)
    stat = Path(os.path.realpath(exe)).stat()
    # Per run, not per environment: each Snakemake run's pid (die_with_parent) must not start a server of its own.
    env = sorted((k, v) for k, v in os.environ.items() if not k.startswith("SNAKEMAKE_") and k != SNAKEMAKE_PID_ENV)
    key = json.dumps([str(exe), stat.st_ino, stat.st_mtime_ns, PRELOAD, env])
    return socket_dir() / f"jobs-{hashlib.sha256(key.encode()).hexdigest()[:16]}.sock"


# --- the job's side ------------------------------------------------------------------------------------------------


def _namedlist(value: Any) -> dict[str, Any]:
    names = getattr(value, "_names", {}) or {}
    return {"items": list(value), "names": {n: list(span) for n, span in names.items()}}


def _request(smk: Any, script: str) -> bytes:
    job = {
        "op": "run",
        "script": str(Path(smk.scriptdir) / script),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "sys_path": sys.path,
        "snakemake": {
            **{f: _namedlist(getattr(smk, f)) for f in ("input", "output", "params", "wildcards", "log", "resources")},
            # The class Snakemake's script preamble gives (snakemake.iocontainers.Namedlist in Snakemake 9).
            "namedlist": next(
                f"{c.__module__}:{c.__qualname__}" for c in type(smk.input).__mro__ if c.__name__ == "Namedlist"
            ),
            "threads": smk.threads,
            "rule": smk.rule,
            "scriptdir": smk.scriptdir,
            "config": smk.config,
        },
    }
    return json.dumps(job).encode()  # TypeError for what JSON cannot carry: the job then runs here


def _gpus(smk: Any) -> int:
    try:
        return int(getattr(smk.resources, "gpu", 0) or 0)
    except (TypeError, ValueError):
        return 0


def run_warm(smk: Any, script: str) -> None:
    """In a job: run this script (``scripts/<script>``) in a fork of the warm server and exit with its status.

    Returns at once in the fork itself, and where the server is off or the job
    cannot travel as JSON: the script then runs in this process.
    """
    if _in_fork or os.environ.get(_FORK_ENV):
        return
    die_with_parent()
    if not enabled() or _gpus(smk) > 0:
        return
    try:
        payload = _request(smk, script)
    except (TypeError, ValueError):
        return
    path = socket_path()
    for attempt in (1, 2):
        try:
            conn = _connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if attempt == 2:
                raise
            start_service(path, ["rewarded_soups.jobserver", str(path)], START_TIMEOUT_SECONDS)
    # If Snakemake kills this process, the kernel closes its end of the connection, and the fork stops too.
    with conn:
        socket.send_fds(conn, [_FDS_FOLLOW], [1, 2])
        conn.sendall(payload + b"\n")
        with conn.makefile("rb") as answers:
            line = answers.readline()
    if not line:
        print(f"the warm job server at {path} ended without an answer; see {path.with_suffix('.log')}", file=sys.stderr)
        sys.exit(1)
    sys.exit(int(json.loads(line)["returncode"]))


def _connect(path: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        raise
    return conn


# --- the server's side ---------------------------------------------------------------------------------------------


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    """A request: a JSON line, after one marker byte that carries the job's stdout and stderr where it has them."""
    first, fds, _, _ = socket.recv_fds(conn, 1, 2)
    with conn.makefile("rb") as lines:
        line = lines.readline()
    return json.loads(line if first == _FDS_FOLLOW else first + line), list(fds)


class _Job:
    """The fork's ``snakemake`` object: what Snakemake's script preamble gives a script, rebuilt from JSON."""

    def __init__(self, fields: dict[str, Any]) -> None:
        module, qualname = fields["namedlist"].split(":")
        namedlist = getattr(importlib.import_module(module), qualname)
        for name in ("input", "output", "params", "wildcards", "log", "resources"):
            value = namedlist(fields[name]["items"])
            for key, (start, end) in fields[name]["names"].items():
                value._set_name(key, start, end)
            setattr(self, name, value)
        self.threads = fields["threads"]
        self.rule = fields["rule"]
        self.scriptdir = fields["scriptdir"]
        self.config = fields["config"]


def _exit_with_the_job(conn: socket.socket) -> None:
    """In the fork: the job's process is gone (killed by Snakemake, or with it) when its end of the socket closes;
    the fork's process group (the fork and whatever it started) goes with it."""
    with contextlib.suppress(OSError):
        conn.recv(1)
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _run_fork(conn: socket.socket, job: dict, fds: list[int]) -> None:
    """In the fork: become the job (its directory, environment, stdout and stderr), run the script, answer."""
    global _in_fork, _preloaded
    returncode = 1
    try:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        os.setpgid(0, 0)  # a group of its own: killed whole when the job goes (_exit_with_the_job)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        os.environ[_FORK_ENV] = "1"  # a second guard against a fork sending its job back to the server
        sys.path[:] = job["sys_path"]
        _preloaded = frozenset(m for m in sys.modules if "." not in m)
        for name in [m for m in sys.modules if m == "rewarded_soups" or m.startswith("rewarded_soups.")]:
            if name != __name__:
                del sys.modules[name]
        _in_fork = True
        threading.Thread(target=_exit_with_the_job, args=(conn,), daemon=True).start()
        try:
            runpy.run_path(job["script"], init_globals={"snakemake": _Job(job["snakemake"])}, run_name="__main__")
            returncode = 0
        except SystemExit as stop:
            returncode = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            traceback.print_exc()
            returncode = 1
    finally:
        with contextlib.suppress(Exception):
            import logging

            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"returncode": returncode}).encode() + b"\n")
        os._exit(returncode)


def serve(path: Path, idle_seconds: float) -> None:
    """Import :data:`PRELOAD`, then fork one child per job until idle or asked to stop."""
    started = time.process_time()
    loaded = []
    for module in PRELOAD:
        try:
            importlib.import_module(module)
            loaded.append(module)
        except Exception as error:  # an optional library this environment lacks: its jobs import what they use
            print(f"not preloaded: {module} ({type(error).__name__}: {error})", flush=True)
    # The preloaded libraries' millions of objects would otherwise be scanned by every full garbage
    # collection of every fork (measured: allocation-heavy work 4 to 5 times slower) and copied page by
    # page as the collector writes their headers; frozen, the collector never looks at them.
    gc.collect()
    gc.freeze()
    listener, inode = services.listen(path)  # jobs connect only to a ready server
    print(
        f"warm job server pid {os.getpid()} ready on {path}: {', '.join(loaded)} imported in "
        f"{time.process_time() - started:.1f} s of CPU",
        flush=True,
    )
    children: set[int] = set()
    jobs = 0
    last_activity = time.monotonic()
    try:
        while True:
            while children:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                children.discard(pid)
                last_activity = time.monotonic()
            listener.settimeout(1.0 if children else max(0.1, idle_seconds - (time.monotonic() - last_activity)))
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                if not children and time.monotonic() - last_activity >= idle_seconds:
                    print(f"idle for {idle_seconds:.0f} s: exiting", flush=True)
                    break
                continue
            last_activity = time.monotonic()
            with conn:
                conn.settimeout(60)
                try:
                    job, fds = _receive(conn)
                except (OSError, ValueError) as error:
                    print(f"a bad request: {error}", flush=True)
                    continue
                op = job.get("op")
                if op == "run":
                    conn.settimeout(None)
                    pid = os.fork()
                    if pid == 0:
                        listener.close()
                        _run_fork(conn, job, fds)
                    children.add(pid)
                    jobs += 1
                else:
                    with contextlib.suppress(OSError):
                        conn.sendall(json.dumps({"pid": os.getpid(), "jobs": jobs}).encode() + b"\n")
                for fd in fds:
                    os.close(fd)
                if op == "stop":
                    print("stop requested: exiting after the running jobs", flush=True)
                    break
    finally:
        services.unpublish(path, inode)
        listener.close()
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(f"ran {jobs} jobs; the server's own CPU {usage.ru_utime + usage.ru_stime:.1f} s", flush=True)


def main() -> None:
    path = Path(sys.argv[1])
    serve(path, float(os.environ.get(IDLE_ENV, IDLE_SECONDS)))


if __name__ == "__main__":
    # Run as rewarded_soups.jobserver, not __main__: the forks' scripts import that module and must find
    # it marked as a fork (_in_fork), not a fresh copy that would send the job here again.
    from rewarded_soups import jobserver

    jobserver.main()
