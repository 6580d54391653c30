"""METEOR's Java process, and one of them shared by the scoring jobs of one user on one machine.

METEOR 1.5 spends about 10 s of CPU starting Java and loading its 62 MB paraphrase
table before its first answer. A workflow scores METEOR in one job per captioning
model (29 in the default run: 305 s of CPU in Java starts alone), so the first job
that needs METEOR starts this server and later jobs on the same machine connect to
it over a Unix socket (:mod:`rewarded_soups.services`: a private directory, one
JSON line per request). The server exits after ``IDLE_SECONDS`` (or
``$REWARDED_SOUPS_METEOR_IDLE_SECONDS``) without a request, or when a workflow
ends (the Snakefile's ``onsuccess``/``onerror``). On a cluster each node starts
its own (the socket directory is node-local ``/tmp``).

METEOR's stdio protocol is stateless between evaluations (each ``compute_score``
sends its own SCORE lines and one EVAL line), so a shared process gives exactly
the numbers of a fresh one (tests/test_meteor_service.py).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewarded_soups.services import exchange, listen, socket_dir, start, unpublish

IDLE_SECONDS = 600.0
START_TIMEOUT_SECONDS = 300.0
IDLE_ENV = "REWARDED_SOUPS_METEOR_IDLE_SECONDS"


def java_or_raise() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError(
            "METEOR needs Java: no `java` on PATH. Install a JRE (e.g. `apt-get install default-jre-headless`, "
            "or `conda install openjdk`) or drop meteor from the metrics."
        )
    return java


class JavaMeteor:
    """METEOR 1.5 through one long-lived Java process (pycocoevalcap's wrapper).

    Starting Java and loading the paraphrase table takes seconds, so the
    process is kept between calls; :meth:`close` (or leaving a ``with``
    block) stops it.
    """

    def __init__(self) -> None:
        from pycocoevalcap.meteor.meteor import Meteor

        java_or_raise()
        self._meteor: Any = Meteor()
        self._lock = threading.Lock()

    def score_normalised(self, gts: Sequence[Sequence[str]], res: Sequence[str]) -> list[float]:
        """Per-segment scores of already normalised candidates against their reference sets."""
        if self._meteor is None:
            raise RuntimeError("this Meteor scorer is closed")
        with self._lock:
            process = self._meteor.meteor_p
            if process.poll() is not None:
                raise RuntimeError(f"the METEOR Java process exited with code {process.returncode}")
            try:
                _, scores = self._meteor.compute_score(
                    {i: list(refs) for i, refs in enumerate(gts)}, {i: [c] for i, c in enumerate(res)}
                )
            except ValueError:  # an empty line where a score should be: the jar died
                process.kill()
                process.wait()
                error = process.stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"the METEOR Java process failed:\n{error}") from None
        return [float(s) for s in scores]

    def alive(self) -> bool:
        return self._meteor is not None and self._meteor.meteor_p.poll() is None

    def close(self) -> None:
        meteor, self._meteor = getattr(self, "_meteor", None), None
        if meteor is not None:
            # pycocoevalcap's __del__ closes stdin and kills the process: call it now, not at GC
            # (running it again at GC is harmless). Its other pipes stay open otherwise.
            meteor.__del__()
            meteor.meteor_p.stdout.close()
            meteor.meteor_p.stderr.close()

    def __enter__(self) -> JavaMeteor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _jar() -> Path:
    from pycocoevalcap.meteor import meteor

    return Path(meteor.__file__).parent / "meteor-1.5.jar"


def socket_path() -> Path:
    """One server per METEOR jar (a different pycocoevalcap install gets its own)."""
    jar = _jar()
    stat = jar.stat()
    key = hashlib.sha256(f"{jar.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return socket_dir() / f"meteor-{key}.sock"


def request(payload: dict) -> dict:
    """Send one request, starting the server first if none answers (one retry if it was exiting)."""
    path = socket_path()
    for attempt in (1, 2):
        try:
            return exchange(path, payload)
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
            if attempt == 2:
                raise
        start(path, ["rewarded_soups.services.meteor", "--socket", str(path)], START_TIMEOUT_SECONDS)
    raise AssertionError("unreachable")


def score(gts: Sequence[Sequence[str]], res: Sequence[str]) -> list[float]:
    """Per-segment METEOR of normalised candidates ``res`` against reference sets ``gts``."""
    return [float(s) for s in request({"op": "score", "gts": list(map(list, gts)), "res": list(res)})["scores"]]


def serve(path: Path, idle_seconds: float) -> None:
    """Answer requests one at a time until ``idle_seconds`` pass without one, or a stop request."""
    started = time.monotonic()
    meteor = JavaMeteor()
    meteor.score_normalised([["a"]], ["a"])  # Java up and the paraphrase table loaded before the socket appears
    listener, inode = listen(path)  # clients connect only to a ready server
    listener.settimeout(idle_seconds)
    print(f"METEOR service pid {os.getpid()} ready on {path} after {time.monotonic() - started:.1f} s", flush=True)
    served = 0
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                print(f"idle for {idle_seconds:.0f} s: exiting", flush=True)
                break
            with conn, conn.makefile("rb") as lines:
                conn.settimeout(600)
                try:
                    message = json.loads(lines.readline() or b"{}")
                    op = message.get("op")
                    if op == "score":
                        answer = {"scores": meteor.score_normalised(message["gts"], message["res"])}
                        served += 1
                    elif op in ("ping", "stop"):
                        answer = {"pid": os.getpid(), "served": served}
                    else:
                        answer = {"error": f"unknown request {op!r}"}
                except Exception as error:  # reported to the client, which raises it
                    answer, op = {"error": f"{type(error).__name__}: {error}"}, "error"
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(answer).encode() + b"\n")
            if op == "stop":
                print("stop requested: exiting", flush=True)
                break
            if op == "error" and not meteor.alive():
                break
    finally:
        unpublish(path, inode)
        listener.close()
        meteor.close()
        usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = sum(u.ru_utime + u.ru_stime for u in usage)
        print(f"served {served} scoring requests; CPU {cpu:.1f} s (Java included)", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--idle-seconds", type=float, default=float(os.environ.get(IDLE_ENV, IDLE_SECONDS)))
    args = parser.parse_args(argv)
    serve(args.socket, args.idle_seconds)


if __name__ == "__main__":
    main()
