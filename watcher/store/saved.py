"""What the state file holds for each job, as the store last loaded or wrote it, and
which jobs a cycle must write again (`SavedRows`).

Compared by identity first: an unchanged job is the very object saved. A job whose live
fields alone moved (`watcher.live`) with the same rule memory is not written again: it
takes the place of the saved one here (the very object the baseline holds, so the store
keeps no second copy of a job), and is noted as `unsaved` until a write, or `Store.
save_live` at a clean stop, catches its row up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from watcher.live import same_but_live
from watcher.rules import JobMemory
from watcher.snapshot import JobKey, JobState

Row = tuple[JobState, JobMemory | None]
Written = tuple[JobKey, JobState, JobMemory | None]  # a row as a transaction wrote it


class SavedRows:
    def __init__(self) -> None:
        self.jobs: dict[JobKey, Row] = {}
        # Jobs whose saved row holds older live fields than `jobs`.
        self.unsaved: set[JobKey] = set()

    def reset(self, jobs: dict[JobKey, Row]) -> None:
        """As loaded from the file."""
        self.jobs = jobs
        self.unsaved = set()

    def differs(self, key: JobKey, job: JobState, memory: JobMemory | None) -> bool:
        """Whether the row of `key` must be written for this job with this memory: it is
        new, its memory moved, or its state beyond its live fields."""
        old = self.jobs.get(key)
        if old is None or old[1] != memory:
            return True
        saved = old[0]
        if saved is job:
            return False
        if not same_but_live(saved, job):
            return True
        self.jobs[key] = (job, old[1])
        if saved != job:
            self.unsaved.add(key)
        return False

    def changed(
        self, jobs: Mapping[JobKey, JobState], memory: Mapping[JobKey, JobMemory]
    ) -> set[JobKey]:
        """Keys whose row must be written: new, changed, or gone."""
        changed = {key for key, job in jobs.items() if self.differs(key, job, memory.get(key))}
        changed.update(self.jobs.keys() - jobs.keys())
        return changed

    def live_rows(self) -> tuple[set[JobKey], dict[JobKey, JobState], dict[JobKey, JobMemory]]:
        """The unsaved jobs: their keys, states and memory, as `Store._write` takes them."""
        keys = set(self.unsaved)
        states = {key: self.jobs[key][0] for key in keys}
        memory = {key: mem for key in keys if (mem := self.jobs[key][1]) is not None}
        return keys, states, memory

    def written(
        self, upserts: Iterable[Written], gone: Iterable[JobKey], memories: Iterable[Written] = ()
    ) -> None:
        """What a committed transaction wrote: whole rows, deletions, and the memory of
        rows whose state differs from the saved one in live fields alone."""
        for key, job, mem in upserts:
            self.jobs[key] = (job, mem)
            self.unsaved.discard(key)
        for key in gone:
            self.jobs.pop(key, None)
            self.unsaved.discard(key)
        for key, job, mem in memories:
            if self.jobs[key][0] != job:  # the row still holds its live fields of before
                self.unsaved.add(key)
            self.jobs[key] = (job, mem)
