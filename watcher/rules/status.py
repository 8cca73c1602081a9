"""Status: every change of the normalized status is `status_changed`.

Entering a failure status (`snapshot.FAILURE_STATUSES`) is critical, Suspending a
warning, anything else info (the kind's severity rule, `kinds.STATUS_CHANGED`); leaving a
failure says which (`recovered_from`). A job first seen already failed is announced too
(previous status null), so a consumer that starts today learns of yesterday's failures.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from watcher.kinds import STATUS_CHANGED
from watcher.rules.base import Condition, NoMemory, Rule, Say
from watcher.snapshot import FAILURE_STATUSES, JobState


class StatusRule(Rule[NoMemory]):
    name = "status"
    memory = NoMemory

    def first_sight(self, job: JobState, mem: NoMemory, say: Say) -> NoMemory:
        if job.status in FAILURE_STATUSES:
            say(STATUS_CHANGED, {"previous_status": None, "error_message": job.error_message})
        return mem

    def changed(self, old: JobState, job: JobState, mem: NoMemory, say: Say) -> NoMemory:
        if old.status != job.status:
            data: dict[str, Any] = {
                "previous_status": old.status,
                "error_message": job.error_message,
            }
            if old.status in FAILURE_STATUSES and job.status not in FAILURE_STATUSES:
                data["recovered_from"] = old.status
            say(STATUS_CHANGED, data)
        return mem

    def conditions(self, job: JobState, mem: NoMemory, now: datetime) -> Iterable[Condition]:
        if job.status not in FAILURE_STATUSES:
            return ()
        return (Condition("status", job.status, STATUS_CHANGED.severity({"status": job.status})),)
