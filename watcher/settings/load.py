"""The whole configuration (`Settings`) and where it comes from (`load_settings`).

Sources, highest priority first: values passed in code, `DTS_WATCHER_*` environment
variables (nested with `__`, e.g. `DTS_WATCHER_POLL__INTERVAL`), the standard
`ALIBABA_CLOUD_*` credential variables, a TOML file (`--config FILE` or
`DTS_WATCHER_CONFIG`), then the defaults of each section. An invalid value is one
`ConfigError` line naming the setting and where it came from.
"""

from __future__ import annotations

import contextvars
import difflib
import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from watcher.errors import ConfigError
from watcher.settings.accounts import AccountSettings, check_accounts, watched_accounts
from watcher.settings.cluster import ClusterSettings, cluster_warnings
from watcher.settings.common import CONFIG_ENV, ENV_PREFIX, is_loopback, redact_url
from watcher.settings.dts import CredentialsSettings, DtsSettings
from watcher.settings.events import EventsSettings
from watcher.settings.nats import NatsSettings
from watcher.settings.regions import unknown_region_warnings
from watcher.settings.rules import RulesSettings
from watcher.settings.service import (
    HealthSettings,
    HttpSettings,
    LogSettings,
    PollSettings,
    StateSettings,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    dts: DtsSettings = Field(default_factory=DtsSettings)
    credentials: CredentialsSettings = Field(default_factory=CredentialsSettings)
    nats: NatsSettings = Field(default_factory=NatsSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    poll: PollSettings = Field(default_factory=PollSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    # DTS_WATCHER_ACCOUNTS (a JSON list) or [[accounts]]: see watcher.settings.accounts.
    accounts: list[AccountSettings] = Field(default_factory=list)

    @field_validator("accounts")
    @classmethod
    def _accounts_unique(cls, value: list[AccountSettings]) -> list[AccountSettings]:
        return check_accounts(value)

    def watched_accounts(self) -> list[AccountSettings]:
        """Every account to watch, `api` and `job_types` resolved (`default` alone when no
        accounts are configured)."""
        return watched_accounts(self.dts, self.accounts)

    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _AlibabaEnvSource(settings_cls),
            _TomlSource(settings_cls),
        )

    def warnings(self) -> list[str]:
        """What is valid but probably a mistake; `check-config` prints it, `run` logs it."""
        regions = dict.fromkeys(r for account in self.watched_accounts() for r in account.regions)
        return unknown_region_warnings(regions, self.dts.allow_regions) + cluster_warnings(
            self.cluster, self.nats.duplicate_window, self.poll.interval
        )

    def masked(self) -> dict[str, Any]:
        """The effective configuration as JSON-ready data, secrets shown as `**********`."""
        data: dict[str, Any] = self.model_dump(mode="json")
        data["nats"]["url"] = self.nats.display_url
        if self.dts.endpoint:
            data["dts"]["endpoint"] = redact_url(self.dts.endpoint)
        return data


_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "config_file", default=None
)


class _AlibabaEnvSource(PydanticBaseSettingsSource):
    """The variable names Alibaba's own tools read, so one environment serves both."""

    NAMES: ClassVar[dict[str, str]] = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "access_key_id",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "access_key_secret",
        "ALIBABA_CLOUD_SECURITY_TOKEN": "security_token",
        "ALIBABA_CLOUD_ROLE_ARN": "role_arn",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "oidc_provider_arn",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": "oidc_token_file",
        "ALIBABA_CLOUD_ROLE_SESSION_NAME": "role_session_name",
        "ALIBABA_CLOUD_STS_ENDPOINT": "sts_endpoint",
        "ALIBABA_CLOUD_STS_REGION": "sts_region",
        "ALIBABA_CLOUD_PROFILE": "profile",
        "ALIBABA_CLOUD_CONFIG_FILE": "profile_file",
        "ALIBABA_CLOUD_ECS_METADATA": "ecs_ram_role",
        "ALIBABA_CLOUD_IMDSV1_DISABLED": "imdsv1_disabled",
    }

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {key: os.environ[var] for var, key in self.NAMES.items() if os.environ.get(var)}
        return {"credentials": found} if found else {}


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get()
        if path is None:
            return {}
        try:
            with path.open("rb") as handle:
                return tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None


def env_name(location: tuple[int | str, ...]) -> str:
    """The environment variable that sets a field, e.g. DTS_WATCHER_POLL__INTERVAL (for
    a field inside a list, e.g. accounts.0.regions or rules.maintenance.0.timezone, the
    list's own variable; for a key of a mapping, the mapping's)."""
    parts: list[str] = []
    for part in location:
        if not isinstance(part, str):
            break
        parts.append(part)
    parts = parts[:2]  # a dict's keys are values, not settings
    if parts[:1] == ["credentials"] and len(parts) == 2:
        inverse = {v: k for k, v in _AlibabaEnvSource.NAMES.items()}
        return inverse.get(parts[1], ENV_PREFIX + "__".join(p.upper() for p in parts))
    return ENV_PREFIX + "__".join(p.upper() for p in parts)


# `DTS_WATCHER_*` variables that are not settings: the config file's, and the tests'.
NOT_SETTINGS = frozenset(
    {
        CONFIG_ENV,
        "DTS_WATCHER_TEST_CRASH_AT",
        "DTS_WATCHER_TEST_CRASH_ARMED",
        "DTS_WATCHER_DOCKER_BUILD",
    }
)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from every source; raise ConfigError naming the bad setting."""
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = os.environ[CONFIG_ENV]
    _refuse_unknown_variables()
    token = _config_file.set(Path(config_file) if config_file else None)
    try:
        settings = Settings(**overrides)
        _refuse_plain_http(settings)
        return settings
    except ValidationError as exc:
        raise ConfigError(_describe(exc, _toml_data(config_file))) from None
    except SettingsError as exc:
        raise ConfigError(_describe_env_json(str(exc))) from None
    finally:
        _config_file.reset(token)


def known_variables() -> list[str]:
    """Every `DTS_WATCHER_*` variable that sets something (a section, or one of its keys)."""
    names = []
    for section, info in Settings.model_fields.items():
        names.append(ENV_PREFIX + section.upper())
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names += [f"{ENV_PREFIX}{section.upper()}__{key.upper()}" for key in model.model_fields]
    return names


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _refuse_unknown_variables() -> None:
    """A `DTS_WATCHER_` variable whose section does not exist would be ignored, its
    setting silently left at its default: refuse it, as an unknown key in the file is.
    (An unknown key inside a known section is refused by the section itself.)"""
    sections = set(Settings.model_fields)
    for var in sorted(os.environ):
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NOT_SETTINGS:
            continue
        section = upper[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if section not in sections:
            raise ConfigError(
                f"unknown setting {var}: there is no section {section!r} "
                f"(sections: {', '.join(sorted(sections))}){_suggest(var, known_variables())}"
            )


def _refuse_plain_http(settings: Settings) -> None:
    """DTS and STS over plain HTTP carry the signed requests, the STS token and the OIDC
    token in the clear: only to this machine, unless explicitly allowed."""
    if settings.dts.allow_plain_http:
        return
    endpoints = (
        ("dts.endpoint", "DTS_WATCHER_DTS__ENDPOINT", settings.dts.endpoint),
        (
            "credentials.sts_endpoint",
            "ALIBABA_CLOUD_STS_ENDPOINT",
            settings.credentials.sts_endpoint,
        ),
    )
    for dotted, var, url in endpoints:
        if url and url.startswith("http://") and not is_loopback(url):
            raise ConfigError(
                f"invalid setting {dotted} ({var}): {redact_url(url)} is plain HTTP, which "
                "would send signed requests and security tokens in the clear; use https:// "
                "(DTS_WATCHER_DTS__TLS_CA_FILE trusts a private CA), or set "
                "DTS_WATCHER_DTS__ALLOW_PLAIN_HTTP=true to accept the risk"
            )


def _toml_data(config_file: Path | str | None) -> dict[str, Any]:
    """The config file's content, to tell which settings came from it (errors only)."""
    if not config_file:
        return {}
    try:
        with Path(config_file).open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _origin(location: tuple[int | str, ...], toml: dict[str, Any]) -> str:
    """Where the value at `location` came from: its environment variable when that is
    set, else the config file's key when the file has it, else the variable to set."""
    variable = env_name(location)
    if variable in os.environ:
        return variable
    node: Any = toml
    for part in location:
        in_table = isinstance(node, dict) and part in node
        in_array = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if not (in_table or in_array):
            return variable
        node = node[part]
    key = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in location)
    return f"{_config_file_name(toml)}, key {key.replace('.[', '[')}"


def _config_file_name(toml: dict[str, Any]) -> str:
    path = _config_file.get()
    return f"config file {path}" if path is not None else "config file"


def _describe(exc: ValidationError, toml: dict[str, Any] | None = None) -> str:
    """One clear line per problem, naming the setting and where its value came from (its
    environment variable, or the config file and key)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        location = tuple(p for p in error["loc"] if isinstance(p, str | int))
        dotted = ".".join(str(p) for p in location) or "(settings)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting" + _suggest(env_name(location), known_variables())
        elif error["type"] == "json_invalid":
            message = f"not valid JSON ({message})"
        message = message.removeprefix("Value error, ")
        if len(location) == 1 and error["type"] == "value_error":
            # A rule across a whole section: its message names the variables itself.
            lines.append(f"invalid setting {dotted}: {message}")
        else:
            lines.append(f"invalid setting {dotted} ({_origin(location, toml or {})}): {message}")
    return "; ".join(lines)


def _describe_env_json(fallback: str) -> str:
    """pydantic-settings reports an env var that is not JSON by section only; name it."""
    sections = Settings.model_fields
    accounts = os.environ.get(ENV_PREFIX + "ACCOUNTS")
    if accounts is not None:
        try:
            json.loads(accounts)
        except ValueError:
            return (
                f"invalid setting accounts ({ENV_PREFIX}ACCOUNTS): not valid JSON, expected "
                'e.g. [{"name": "prod", "regions": ["cn-hangzhou"], "role_arn": "acs:ram::..."}]'
            )
    for var, value in sorted(os.environ.items()):
        if not var.startswith(ENV_PREFIX):
            continue
        section, _, name = var[len(ENV_PREFIX) :].lower().partition("__")
        info = sections.get(section)
        model = info.annotation if info else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        field = model.model_fields.get(name)
        origin = getattr(field.annotation, "__origin__", None) if field else None
        if origin not in (list, dict):
            continue
        try:
            json.loads(value)
        except ValueError:
            example = '["cn-hangzhou"]' if origin is list else '{"key": "value"}'
            return (
                f"invalid setting {section}.{name} ({var}): not valid JSON, expected e.g. {example}"
            )
    return f"invalid settings: {fallback}"


def settings_digest(settings: Settings) -> str:
    """A short, stable fingerprint of the effective config (secrets excluded). The member
    name is left out: replicas sharing one configuration share its digest."""
    data = settings.masked()
    data["cluster"].pop("member", None)
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
