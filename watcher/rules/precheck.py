"""Precheck: items that newly failed are `precheck_failed`, once per precheck run.

A precheck that is run again (the job goes back to Prechecking, or its failures clear)
may announce again: what was announced is forgotten when a run starts, and an item that
passed may fail again later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from watcher.kinds import PRECHECK_FAILED
from watcher.rules.base import Rule, Say
from watcher.snapshot import PRECHECKING, JobState


@dataclass(frozen=True, slots=True)
class PrecheckMemory:
    announced: frozenset[str] = frozenset()  # failed items already said

    def to_dict(self) -> dict[str, Any]:
        return {"precheck_announced": sorted(self.announced)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrecheckMemory:
        return cls(frozenset(data.get("precheck_announced") or ()))


class PrecheckRule(Rule[PrecheckMemory]):
    name = "precheck"
    memory = PrecheckMemory
    live_blind = True  # judges stable fields only (see Rule.live_blind)

    def first_sight(self, job: JobState, mem: PrecheckMemory, say: Say) -> PrecheckMemory:
        return self.changed(job, job, mem, say)

    def quiet_first_sight(self, job: JobState, mem: PrecheckMemory) -> PrecheckMemory:
        if job.status == PRECHECKING:
            return mem
        return PrecheckMemory(failed_items(job))

    def changed(
        self, old: JobState, job: JobState, mem: PrecheckMemory, say: Say
    ) -> PrecheckMemory:
        if job.status == PRECHECKING:
            # A precheck (re-)run in progress: forget what was said, report when it ends.
            return self.blank
        failed = failed_items(job)
        announced = mem.announced & failed  # an item that passed may fail again later
        new = failed - announced
        if new and job.precheck is not None:
            items = [
                {
                    "item_name": item.item_name,
                    "error_message": item.error_message,
                    "repair_method": item.repair_method,
                }
                for item in job.precheck.failed_items
                if item.item_name in new
            ]
            say(PRECHECK_FAILED, {"failed_items": items})
        announced |= new
        return mem if announced == mem.announced else PrecheckMemory(announced)


def failed_items(job: JobState) -> frozenset[str]:
    if job.precheck is None:
        return frozenset()
    return frozenset(item.item_name for item in job.precheck.failed_items)
