"""Job statuses as DTS spells them, and how any spelling a response uses is mapped onto
DTS's own (`watcher.snapshot` re-exports all of it)."""

from __future__ import annotations

__all__ = [  # noqa: RUF022
    "NOT_STARTED",
    "PRECHECKING",
    "PRECHECK_FAILED",
    "INITIALIZING",
    "INITIALIZE_FAILED",
    "SYNCHRONIZING",
    "FAILED",
    "SUSPENDING",
    "MODIFYING",
    "FINISHED",
    "PRECHECK_PASS",
    "NOT_CONFIGURED",
    "MIGRATING",
    "MIGRATION_FAILED",
    "MODIFY_FAILED",
    "RETRYING",
    "LOCKED",
    "UPGRADE",
    "DOWNGRADE",
    "STARTING",
    "NORMAL",
    "ABNORMAL",
    "KNOWN_STATUSES",
    "FAILURE_STATUSES",
    "DELAY_STATUSES",
    "_STATUS_BY_LOWER",
    "known_status",
    "normalize_status",
]

# Statuses as DTS spells them (including its own "Initializating"). Any other value a
# response carries is kept verbatim: an unknown status is information, not an error.
NOT_STARTED = "NotStarted"
PRECHECKING = "Prechecking"
PRECHECK_FAILED = "PrecheckFailed"
INITIALIZING = "Initializating"
INITIALIZE_FAILED = "InitializeFailed"
SYNCHRONIZING = "Synchronizing"
FAILED = "Failed"
SUSPENDING = "Suspending"
MODIFYING = "Modifying"
FINISHED = "Finished"
# DescribeDtsJobs adds these (migration, synchronization and change tracking jobs).
PRECHECK_PASS = "PreCheckPass"  # noqa: S105 - a status, not a secret
NOT_CONFIGURED = "NotConfigured"
MIGRATING = "Migrating"
MIGRATION_FAILED = "MigrationFailed"
MODIFY_FAILED = "ModifyFailed"
RETRYING = "Retrying"
LOCKED = "Locked"
UPGRADE = "Upgrade"
DOWNGRADE = "Downgrade"
STARTING = "Starting"
NORMAL = "Normal"
ABNORMAL = "Abnormal"

KNOWN_STATUSES = (
    NOT_STARTED,
    PRECHECKING,
    PRECHECK_FAILED,
    INITIALIZING,
    INITIALIZE_FAILED,
    SYNCHRONIZING,
    FAILED,
    SUSPENDING,
    MODIFYING,
    FINISHED,
    PRECHECK_PASS,
    NOT_CONFIGURED,
    MIGRATING,
    MIGRATION_FAILED,
    MODIFY_FAILED,
    RETRYING,
    LOCKED,
    UPGRADE,
    DOWNGRADE,
    STARTING,
    NORMAL,
    ABNORMAL,
)
# A job in one of these has stopped working and needs someone: entering one is critical.
FAILURE_STATUSES = frozenset(
    {FAILED, PRECHECK_FAILED, INITIALIZE_FAILED, MIGRATION_FAILED, MODIFY_FAILED, ABNORMAL}
)
# Where a delay means something and is judged against the thresholds: a synchronization,
# or a migration job's incremental phase.
DELAY_STATUSES = frozenset({SYNCHRONIZING, MIGRATING})

_STATUS_BY_LOWER = {s.lower(): s for s in KNOWN_STATUSES}
# Spellings seen in the wild or easy to expect, mapped onto DTS's own.
_STATUS_BY_LOWER.update({"initializing": INITIALIZING, "suspended": SUSPENDING})


def known_status(text: str) -> str | None:
    """DTS's spelling of a status it documents, whatever the case; None if unknown."""
    return _STATUS_BY_LOWER.get(text.strip().lower().replace("_", "").replace(" ", ""))


def normalize_status(raw: str | None) -> str:
    """DTS's spelling of a status, whatever letter case it came in; unknown kept as is."""
    if raw is None:
        return "Unknown"
    text = raw.strip()
    if not text:
        return "Unknown"
    return known_status(text) or text
