"""Status: every change of the normalized status is `status_changed`.

Entering a failure status (`snapshot.FAILURE_STATUSES`) is critical, Suspending or
Retrying a warning, anything else info (the kind's severity rule, `kinds.STATUS_CHANGED`);
leaving a failure says which (`recovered_from`). Entering Retrying carries DTS's retry
state (`retry`), and any change carries DTS's `error_details` when it gives them. A job
first seen already failed or retrying is announced too (previous status null), so a
consumer that starts today learns of yesterday's failures.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from watcher.kinds import STATUS_CHANGED
from watcher.rules.base import Condition, NoMemory, Rule, Say
from watcher.snapshot import FAILURE_STATUSES, RETRYING, JobState


class StatusRule(Rule[NoMemory]):
    name = "status"
    memory = NoMemory
    live_blind = True  # judges stable fields only (see Rule.live_blind)

    def first_sight(self, job: JobState, mem: NoMemory, say: Say) -> NoMemory:
        if job.status in FAILURE_STATUSES or job.status == RETRYING:
            say(STATUS_CHANGED, _detail(job, {"previous_status": None}))
        return mem

    def changed(self, old: JobState, job: JobState, mem: NoMemory, say: Say) -> NoMemory:
        if old.status != job.status:
            data: dict[str, Any] = {"previous_status": old.status}
            if old.status in FAILURE_STATUSES and job.status not in FAILURE_STATUSES:
                data["recovered_from"] = old.status
            say(STATUS_CHANGED, _detail(job, data))
        return mem

    def conditions(self, job: JobState, mem: NoMemory, now: datetime) -> Iterable[Condition]:
        if job.status not in FAILURE_STATUSES:
            return ()
        return (Condition("status", job.status, STATUS_CHANGED.severity({"status": job.status})),)


def _detail(job: JobState, data: dict[str, Any]) -> dict[str, Any]:
    """`data` with the job's error message, retry state (entering Retrying) and error
    details (when DTS gives them)."""
    data["error_message"] = job.error_message
    if job.status == RETRYING and job.retry is not None:
        r = job.retry
        data["retry"] = {
            "count": r.count,
            "retry_seconds": r.retry_seconds,
            "max_retry_seconds": r.max_retry_seconds,
            "target": r.target,
            "module": r.module,
            "error_message": r.error_message,
        }
    if job.error_details:
        data["error_details"] = [
            {"error_code": d.error_code, "help_url": d.help_url} for d in job.error_details
        ]
    return data
