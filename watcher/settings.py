"""Every knob of the watcher, in one place.

Sources, highest priority first: values passed in code, `DTS_WATCHER_*` environment
variables (nested with `__`, e.g. `DTS_WATCHER_POLL__INTERVAL`), the standard
`ALIBABA_CLOUD_*` credential variables, a TOML file (`--config FILE` or
`DTS_WATCHER_CONFIG`), then the defaults below. Names are part of the public contract
(README "Configuration"); add knobs, do not rename them.

Secrets are `SecretStr`: they print as `**********` in reprs, logs and `check-config`.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from watcher.errors import ConfigError

__all__ = ["ConfigError", "Settings", "load_settings"]

ENV_PREFIX = "DTS_WATCHER_"
CONFIG_ENV = "DTS_WATCHER_CONFIG"
# A NATS subject token: no dots, wildcards or whitespace.
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9\-]*[a-z0-9]$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DtsSettings(_Section):
    regions: list[str] = Field(default_factory=lambda: ["cn-hangzhou"], min_length=1)
    endpoint: str | None = Field(
        None, description="URL that overrides the per-region endpoint for every region"
    )
    page_size: Literal[10, 20, 30] = 30
    job_name: str | None = Field(None, description="SynchronizationJobName filter (fuzzy)")
    tags: dict[str, str] = Field(default_factory=dict, description="Tag.N.Key/Value filters")
    resource_group_id: str | None = None
    timeout: float = Field(10.0, gt=0, description="seconds per HTTP request")
    max_attempts: int = Field(5, ge=1, le=20, description="tries per request, first included")
    backoff_initial: float = Field(0.5, gt=0, description="seconds before the first retry")
    backoff_max: float = Field(20.0, gt=0, description="longest wait between two tries")
    rate_limit: float = Field(
        5.0, gt=0, le=20, description="requests per second per region (DTS allows 20)"
    )
    max_concurrent_regions: int = Field(4, ge=1)
    max_concurrent_pages: int = Field(4, ge=1, description="pages in flight per region")
    drift_rereads: int = Field(2, ge=0, description="re-reads of a region whose listing moved")

    @field_validator("regions")
    @classmethod
    def _regions_are_ids(cls, value: list[str]) -> list[str]:
        for region in value:
            if not _REGION.match(region):
                raise ValueError(f"{region!r} is not a region id like 'cn-hangzhou'")
        if len(set(value)) != len(value):
            raise ValueError("regions are listed more than once")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("tags")
    @classmethod
    def _tag_count(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 20:
            raise ValueError("DTS accepts at most 20 tag filters")
        if any(not k for k in value):
            raise ValueError("a tag key cannot be empty")
        return value


_SESSION_NAME = re.compile(r"^[A-Za-z0-9_.@\-]{2,64}$")


def _http_url(value: str | None) -> str | None:
    """`host[:port]` or `http(s)://host[:port]` -> a URL without a trailing slash."""
    if value is None or not value.strip():
        return None
    value = value.strip().rstrip("/")
    if "://" not in value:
        value = f"https://{value}"
    scheme, _, rest = value.partition("://")
    if scheme not in {"http", "https"} or not rest or "/" in rest:
        raise ValueError(f"{value!r} is not an http(s)://host[:port] URL")
    return value


class CredentialsSettings(_Section):
    """Where the DTS credentials come from; the chain order is in docs/credentials.md."""

    # 1. a static access key (optionally an STS token)
    access_key_id: str | None = None
    access_key_secret: SecretStr | None = None
    security_token: SecretStr | None = None
    # 2. RRSA: an OIDC token exchanged for a RAM role (Kubernetes on ACK)
    role_arn: str | None = Field(None, description="RAM role to assume with the OIDC token")
    oidc_provider_arn: str | None = None
    oidc_token_file: Path | None = Field(None, description="re-read on every refresh")
    role_session_name: str | None = Field(None, description="default: dts-watcher-<unix time>")
    role_session_duration: int = Field(3600, ge=900, le=43200, description="seconds")
    sts_endpoint: str | None = Field(None, description="default https://sts.aliyuncs.com")
    sts_region: str | None = Field(None, description="use sts.<region>.aliyuncs.com")
    # 3. a profile of the Alibaba Cloud CLI's config file
    profile: str | None = Field(None, description="default: the file's `current`, or default")
    profile_file: Path | None = Field(None, description="default ~/.aliyun/config.json")
    # 4. the ECS instance RAM role (metadata service); only when asked for
    ecs_ram_role: str | None = Field(None, description="role name; enables the ECS source")
    ecs_metadata_enabled: bool = Field(
        False, description="use the ECS RAM role even without a name (it is discovered)"
    )
    ecs_metadata_url: str = "http://100.100.100.200"
    imdsv1_disabled: bool = Field(False, description="never fall back to tokenless IMDSv1")

    @field_validator("sts_endpoint")
    @classmethod
    def _sts_url(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("ecs_metadata_url")
    @classmethod
    def _metadata_url(cls, value: str) -> str:
        url = _http_url(value)
        if url is None:
            raise ValueError("the metadata service URL cannot be empty")
        return url

    @field_validator("sts_region")
    @classmethod
    def _sts_region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION.match(value):
            raise ValueError(f"{value!r} is not a region id like 'cn-hangzhou'")
        return value

    @field_validator("role_session_name")
    @classmethod
    def _session_name(cls, value: str | None) -> str | None:
        if value is not None and not _SESSION_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a role session name (2 to 64 letters, digits, '.', '@', "
                "'-' or '_')"
            )
        return value

    @field_validator("role_arn", "oidc_provider_arn", "ecs_ram_role", "profile")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip() or None

    @model_validator(mode="after")
    def _pairs(self) -> CredentialsSettings:
        if self.access_key_id is not None and self.access_key_secret is None:
            raise ValueError(
                "an access key id is set but its secret is not: set "
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET (or credentials.access_key_secret)"
            )
        if self.access_key_id is None and self.access_key_secret is not None:
            raise ValueError(
                "an access key secret is set but its id is not: set "
                "ALIBABA_CLOUD_ACCESS_KEY_ID (or credentials.access_key_id)"
            )
        return self


class NatsSettings(_Section):
    url: str = Field("nats://127.0.0.1:4222", description="one URL or a comma-separated list")
    subject_prefix: str = "dts"
    stream: str = "DTS_EVENTS"
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    connect_timeout: float = Field(5.0, gt=0)
    duplicate_window: float = Field(
        300.0, ge=120, description="seconds; JetStream dedupe window (at least 2 minutes)"
    )
    stream_max_age: float = Field(7 * 24 * 3600.0, ge=0, description="seconds, 0 = no limit")
    stream_max_bytes: int = Field(-1, description="-1 = no limit")
    stream_replicas: int = Field(1, ge=1, le=5)
    publish_timeout: float = Field(5.0, gt=0)

    @field_validator("subject_prefix")
    @classmethod
    def _prefix_tokens(cls, value: str) -> str:
        if not value or not all(_TOKEN.match(token) for token in value.split(".")):
            raise ValueError(f"{value!r} is not a NATS subject prefix like 'dts' or 'acme.dts'")
        return value

    @field_validator("stream")
    @classmethod
    def _stream_name(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise ValueError(f"{value!r} is not a valid stream name (letters, digits, - and _)")
        return value

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.url.split(",") if u.strip()]

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (self.display_url if name == "url" else value)

    @property
    def display_url(self) -> str:
        """The server list with any password in it masked, for logs and errors."""
        return ",".join(redact_url(u) for u in self.servers)


class PollSettings(_Section):
    interval: float = Field(30.0, ge=1, description="seconds between cycle starts")
    jitter: float = Field(0.1, ge=0, le=0.5, description="fraction of the interval, random")
    emit: Literal["listing", "page"] = Field(
        "listing",
        description="when job events go out: once the whole listing is read (listing), or "
        "as each consistent page arrives (page: sooner when a listing takes seconds; "
        "`removed` still waits for complete listings)",
    )
    gc_freeze: bool = Field(
        True,
        description="after each cycle, collect garbage and freeze what survived (gc.freeze) "
        "so full collections skip the long-lived baseline; process-wide (watcher/heap.py)",
    )


class StateSettings(_Section):
    path: Path = Field(Path("var/dts-watcher.sqlite3"), description="file or folder")
    events_per_transaction: int = Field(
        1000,
        ge=1,
        description="a cycle's events are saved in transactions of about this many, each "
        "with the states of their jobs; publishing starts after the first",
    )

    @property
    def file(self) -> Path:
        return self.path / "dts-watcher.sqlite3" if self.path.is_dir() else self.path


class RulesSettings(_Section):
    delay_thresholds: dict[str, float] = Field(
        default_factory=lambda: {"warning": 60.0, "critical": 300.0}
    )
    delay_hysteresis: float = Field(0.1, ge=0, lt=1, description="fraction below a threshold")
    delay_for_cycles: int = Field(1, ge=1, description="cycles a delay must hold to enter")
    announce_existing: bool = Field(
        True, description="on first sight, also emit failures and delay levels already present"
    )
    removed_after: int = Field(2, ge=1, description="complete listings a job must be absent")

    @field_validator("delay_thresholds")
    @classmethod
    def _levels(cls, value: dict[str, float]) -> dict[str, float]:
        for name, seconds in value.items():
            if name == "ok" or not _TOKEN.match(name):
                raise ValueError(f"{name!r} cannot name a delay level")
            if seconds <= 0:
                raise ValueError(f"level {name!r} needs a positive number of seconds")
        if len(set(value.values())) != len(value):
            raise ValueError("two delay levels share a threshold")
        return value


class HealthSettings(_Section):
    unavailable_after: int = Field(
        3, ge=1, description="incomplete cycles before a region is announced unavailable"
    )
    heartbeat_interval: float = Field(60.0, ge=0, description="seconds; 0 = no heartbeat")


class HttpSettings(_Section):
    """The health and metrics endpoint (/healthz, /readyz, /metrics); see watcher/http.py."""

    port: int = Field(0, ge=0, le=65535, description="TCP port; 0 = no HTTP endpoint")
    host: str = Field("0.0.0.0", description="address to listen on")  # noqa: S104


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


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
    poll: PollSettings = Field(default_factory=PollSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)

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


_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/]*):[^@/]*@", re.I)


def redact_url(url: str) -> str:
    """`nats://user:secret@host` -> `nats://user:**********@host`."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:**********@", url)


def env_name(location: tuple[int | str, ...]) -> str:
    """The environment variable that sets a field, e.g. DTS_WATCHER_POLL__INTERVAL."""
    parts = [str(p) for p in location if isinstance(p, str)]
    if parts[:1] == ["credentials"] and len(parts) == 2:
        inverse = {v: k for k, v in _AlibabaEnvSource.NAMES.items()}
        return inverse.get(parts[1], ENV_PREFIX + "__".join(p.upper() for p in parts))
    return ENV_PREFIX + "__".join(p.upper() for p in parts)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from every source; raise ConfigError naming the bad setting."""
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = os.environ[CONFIG_ENV]
    token = _config_file.set(Path(config_file) if config_file else None)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except SettingsError as exc:
        raise ConfigError(_describe_env_json(str(exc))) from None
    finally:
        _config_file.reset(token)


def _describe(exc: ValidationError) -> str:
    """One clear line per problem, naming the setting and its environment variable."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        location = tuple(p for p in error["loc"] if isinstance(p, str | int))
        dotted = ".".join(str(p) for p in location) or "(settings)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        elif error["type"] == "json_invalid":
            message = f"not valid JSON ({message})"
        if len(location) == 1 and error["type"] == "value_error":
            # A rule across a whole section: its message names the variables itself.
            lines.append(f"invalid setting {dotted}: {message.removeprefix('Value error, ')}")
        else:
            lines.append(f"invalid setting {dotted} ({env_name(location)}): {message}")
    return "; ".join(lines)


def _describe_env_json(fallback: str) -> str:
    """pydantic-settings reports an env var that is not JSON by section only; name it."""
    sections = Settings.model_fields
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
    """A short, stable fingerprint of the effective config (secrets excluded)."""
    import hashlib

    blob = json.dumps(settings.masked(), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
