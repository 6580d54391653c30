from __future__ import annotations

import threading
from types import SimpleNamespace

from snakemake.scheduling.job_scheduler import JobScheduler

from rewarded_soups.scheduling import cancel_replanning_timers


def test_snakemakes_own_replanning_timer_is_found_and_cancelled():
    """Arm the timer with Snakemake's own method (the pinned version's contract), then cancel it."""
    released = threading.Event()
    scheduler = SimpleNamespace(_open_jobs=SimpleNamespace(release=released.set))
    before = set(threading.enumerate())
    JobScheduler._schedule_reevalutation(scheduler, 5.0)
    (armed,) = set(threading.enumerate()) - before
    other = threading.Timer(5.0, lambda: None)  # someone else's timer stays armed
    other.start()
    assert cancel_replanning_timers() == 1
    armed.join(timeout=2.0)  # a cancelled timer ends at once, without calling back
    assert not armed.is_alive() and not released.is_set()
    assert other.is_alive() and cancel_replanning_timers() == 0
    other.cancel()
