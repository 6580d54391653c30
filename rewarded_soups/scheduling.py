"""Snakemake's scheduler settings for a local run, and their one side effect.

Snakemake re-plans every ready job once per ``--max-jobs-per-timespan``
timespan (default ``100/1s``), even when no core is free: on the default
config that alone took 29% of a core for the whole run (py-spy: the job
selector stats every input of every ready job each second). The workflow
profile (``profiles/default``) sets a longer timespan; jobs that finish
still start the next ones at once, the timespan only paces re-planning.
Each re-plan arms a ``threading.Timer`` that is not a daemon, so at the end
Python would wait for the last one (up to the timespan) before exiting;
:func:`cancel_replanning_timers` (the Snakefile's ``onsuccess``/``onerror``)
cancels it.
"""

from __future__ import annotations

import threading

# The qualified name of the callback Snakemake 9 arms (JobScheduler._schedule_reevalutation).
_REPLAN_CALLBACK = "JobScheduler._schedule_reevalutation.<locals>.<lambda>"


def cancel_replanning_timers() -> int:
    """Cancel Snakemake's pending re-planning timers; return how many were pending."""
    pending = [
        t
        for t in threading.enumerate()
        if isinstance(t, threading.Timer) and getattr(t.function, "__qualname__", "") == _REPLAN_CALLBACK
    ]
    for timer in pending:
        timer.cancel()
    return len(pending)
