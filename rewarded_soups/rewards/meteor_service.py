"""One METEOR Java process shared by the scoring jobs of one user on one machine.

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
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from rewarded_soups.services import exchange, socket_dir, start

IDLE_SECONDS = 600.0
START_TIMEOUT_SECONDS = 300.0
IDLE_ENV = "REWARDED_SOUPS_METEOR_IDLE_SECONDS"


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
        start(path, ["rewarded_soups.rewards.meteor_service", "--socket", str(path)], START_TIMEOUT_SECONDS)
    raise AssertionError("unreachable")


def score(gts: Sequence[Sequence[str]], res: Sequence[str]) -> list[float]:
    """Per-segment METEOR of normalised candidates ``res`` against reference sets ``gts``."""
    return [float(s) for s in request({"op": "score", "gts": list(map(list, gts)), "res": list(res)})["scores"]]


def serve(path: Path, idle_seconds: float) -> None:
    """Answer requests one at a time until ``idle_seconds`` pass without one, or a stop request."""
    from rewarded_soups.rewards.caption_metrics import Meteor

    started = time.monotonic()
    meteor = Meteor()
    meteor(["a"], [["a"]])  # Java up and the paraphrase table loaded before the socket appears
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = path.with_name(f"{path.stem}.{os.getpid()}.staging")
    staging.unlink(missing_ok=True)
    listener.bind(str(staging))
    listener.listen(64)
    os.replace(staging, path)  # clients connect only to a ready server
    inode = path.stat().st_ino
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
        # Remove the socket only if it is still ours (a newer server may have replaced it).
        with contextlib.suppress(OSError):
            if path.stat().st_ino == inode:
                path.unlink()
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
