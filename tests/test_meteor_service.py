"""The shared METEOR process: the same numbers as a private one, one server for concurrent jobs, restarts."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rewarded_soups import services
from rewarded_soups.rewards import caption_metrics as metrics
from rewarded_soups.services import meteor as meteor_service

REFS = [["a red circle on the left", "the red circle at the left"], ["a big blue square"], ["one green wedge"]] + [
    ["a red circle on the left"]
] * 2
# Exact, close, disjoint, a near miss, empty.
CANDIDATES = ["a red circle on the left", "a small blue square at the top", "purple", "a red circle on the right", ""]
OTHER = (["a red square", "blue"], [["a red square"], ["a blue circle"]])


def wait_until(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs java")
def test_shared_process_matches_a_private_one(tmp_path, monkeypatch):
    socket_dir = tmp_path / "sockets"
    monkeypatch.setenv(services.SOCKET_DIR_ENV, str(socket_dir))
    monkeypatch.setenv(meteor_service.IDLE_ENV, "3")
    with metrics.Meteor() as private:
        expected = private(CANDIDATES, REFS)
        other = private(*OTHER)
        process = private._meteor.meteor_p
    assert process.poll() is not None  # leaving the block stopped its Java process
    exact, close, disjoint, near, empty = expected
    assert exact == pytest.approx(1.0, abs=0.01) and disjoint == 0.0 and empty == 0.0
    assert 0.0 < close < exact and 0.0 < near < exact

    # A server that died without cleaning up leaves its socket file: the first request replaces it.
    path = meteor_service.socket_path()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    assert path.exists()

    # Eight requests from four threads at once: one server starts (the others wait on its lock), and every
    # answer is the private process's, whatever the server scored before (METEOR keeps no state between
    # evaluations).
    shared = metrics.SharedMeteor()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: shared(CANDIDATES, REFS) if i % 2 else shared(*OTHER), range(8)))
    assert answers[1::2] == [expected] * 4 and answers[0::2] == [other] * 4
    assert path.parent == socket_dir and oct(socket_dir.stat().st_mode & 0o777) == "0o700"
    assert meteor_service.request({"op": "ping"})["served"] == 8
    log = path.with_suffix(".log")
    assert log.read_text().count("ready on") == 1

    # Idle for longer than its timeout (3 s here), it exits and removes its socket.
    wait_until(lambda: not path.exists())
    wait_until(lambda: "served 8 scoring requests" in log.read_text())
    assert "idle for 3 s: exiting" in log.read_text()


def test_stop_all_asks_every_service_to_exit(tmp_path, monkeypatch):
    monkeypatch.setenv(services.SOCKET_DIR_ENV, str(tmp_path / "sockets"))
    assert services.stop_all() == []
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(services.socket_dir() / "fake.sock"))
    listener.listen(1)
    received = []

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            received.append(json.loads(lines.readline()))
            conn.sendall(b'{"pid": 1}\n')

    thread = threading.Thread(target=serve_one)
    thread.start()
    # A socket nobody listens on (a crashed service) is skipped, not an error.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(services.socket_dir() / "dead.sock"))
    dead.close()
    assert services.stop_all() == ["fake"]
    thread.join(10)
    listener.close()
    assert received == [{"op": "stop"}]


def test_socket_dir_must_be_private(tmp_path, monkeypatch):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    monkeypatch.setenv(services.SOCKET_DIR_ENV, str(open_dir))
    with pytest.raises(RuntimeError, match="private"):
        services.socket_dir()
