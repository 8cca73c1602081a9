"""One error hierarchy: what can go wrong, by whose fault, and what the CLI exits with.

Every error the watcher raises on purpose is a `WatcherError`, and its message is safe to
print as it is: it names the setting or the source at fault and never holds a secret.
The branches say whose side the problem is on:

    WatcherError
    ├── ConfigError      the settings or the command line (exit 2)
    │   └── ClusterError       cluster mode cannot work here: no JetStream, a bucket
    │                          that disagrees, a second replica under this member name
    ├── SourceError      DTS or the credentials for it
    │   ├── CredentialsError   no usable credentials (exit 2 at start-up)
    │   └── DtsError           a DTS call that failed for good (a region's failure)
    ├── StateError       the state file cannot be used (exit 2)
    │   ├── StateUnusable      found unusable while running: corrupt, deleted, replaced
    │   └── StateWriteError    cannot be written right now (disk full, read-only, I/O)
    ├── PublishError     JetStream unreachable or refusing (the outbox keeps the events)
    └── MissingExtra     a command needs a package that is not installed (exit 2)

`exit_code` is the one place that maps them to exit codes (`watcher.cli` uses it).
Errors that a cycle survives (a region's DtsError, a PublishError) never reach it in the
service; they reach it from one-shot commands.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class WatcherError(Exception):
    """Base of every error the watcher raises on purpose; the message is safe to print."""


class ConfigError(WatcherError):
    """Invalid configuration or arguments; the message names the setting."""


class ClusterError(ConfigError):
    """Cluster mode cannot work with these settings in these surroundings (NATS without
    JetStream, a leases bucket with another TTL, two replicas under one member name);
    the message names the setting to change."""


class SourceError(WatcherError):
    """DTS, or what is needed to reach it, failed."""


class CredentialsError(SourceError):
    """No usable credentials; the message says why and what to set. Never holds a secret."""


class StateError(WatcherError):
    """The state file cannot be used; the message says why and how to recover."""


class StateUnusable(StateError):
    """The state file went bad under a running watcher (corrupt rows, deleted, replaced):
    the service reports it once, flushes what it can and exits 2, as at start-up."""


class StateWriteError(StateError):
    """The state file cannot be written right now (disk full, read-only, an I/O error):
    the service stays up, not ready, and tries again each cycle; nothing is lost."""


class PublishError(WatcherError):
    """JetStream is unreachable or refused; the outbox keeps everything for later."""


class MissingExtra(WatcherError):
    """A command needs an optional part that is not installed; the message says how."""


def exit_code(error: WatcherError) -> int:
    """What the command line exits with when `error` ends a command."""
    if isinstance(error, ConfigError | CredentialsError | StateError | MissingExtra):
        return EXIT_USAGE
    return EXIT_FAILED


def why(exc: BaseException | None) -> str:
    """`Type: message` of an exception, for logs and verdicts (the one place that turns
    third-party exceptions into text)."""
    if exc is None:
        return "unknown error"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
