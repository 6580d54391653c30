from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from snakemake.scheduling.job_scheduler import JobScheduler

from rewarded_soups.scheduling import cancel_replanning_timers


def test_snakemakes_own_replanning_timer_is_found_and_cancelled():
    """Arm the timer with Snakemake's own method (the pinned version's contract), then cancel it."""
    released = threading.Event()
    scheduler = SimpleNamespace(_open_jobs=SimpleNamespace(release=released.set))
    JobScheduler._schedule_reevalutation(scheduler, 0.3)
    other = threading.Timer(0.3, lambda: None)  # someone else's timer stays armed
    other.start()
    assert cancel_replanning_timers() == 1
    time.sleep(0.6)
    assert not released.is_set()
    assert cancel_replanning_timers() == 0
    other.join()
