"""Every knob of the watcher, in one place: one module per section, `load.py` for the
whole and its sources.

Names are part of the public contract (README "Configuration"); add knobs, do not rename
them. Secrets are `SecretStr`: they print as `**********` in reprs, logs and
`check-config`.
"""

from watcher.errors import ConfigError
from watcher.settings.accounts import AccountSettings
from watcher.settings.cluster import ClusterSettings
from watcher.settings.common import CONFIG_ENV, ENV_PREFIX, redact_url
from watcher.settings.dts import CredentialsSettings, DtsSettings
from watcher.settings.events import EventsSettings
from watcher.settings.load import Settings, env_name, load_settings, settings_digest
from watcher.settings.nats import NatsSettings
from watcher.settings.rules import RulesSettings
from watcher.settings.service import (
    HealthSettings,
    HttpSettings,
    LogSettings,
    PollSettings,
    StateSettings,
)

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "AccountSettings",
    "ClusterSettings",
    "ConfigError",
    "CredentialsSettings",
    "DtsSettings",
    "EventsSettings",
    "HealthSettings",
    "HttpSettings",
    "LogSettings",
    "NatsSettings",
    "PollSettings",
    "RulesSettings",
    "Settings",
    "StateSettings",
    "env_name",
    "load_settings",
    "redact_url",
    "settings_digest",
]
