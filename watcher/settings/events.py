"""What events carry (`[events]`)."""

from __future__ import annotations

from pydantic import Field

from watcher.settings.common import Section


class EventsSettings(Section):
    endpoint_details: bool = Field(
        True,
        description="discovered/removed events carry each database endpoint's address, "
        "port and user name in data.job.source/destination; false leaves them out (the "
        "instance id, type and engine stay)",
    )
