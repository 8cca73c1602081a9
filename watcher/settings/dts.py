"""Where DTS is and how to read it (`[dts]`), and whose key reads it (`[credentials]`)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from watcher.settings.common import REGION, Section, header_safe, http_url

MEBIBYTE = 1 << 20

# The listing APIs the watcher can read (README "All of DTS"), and DescribeDtsJobs' types.
Api = Literal["DescribeSynchronizationJobs", "DescribeDtsJobs"]
JobTypeName = Literal["SYNC", "MIGRATION", "SUBSCRIBE"]
ALL_JOB_TYPES: tuple[JobTypeName, ...] = ("SYNC", "MIGRATION", "SUBSCRIBE")


def job_type_list(value: Any) -> Any:
    """Job types in any letter case; a list is checked for repeats by `check_job_types`."""
    if isinstance(value, list):
        return [v.strip().upper() if isinstance(v, str) else v for v in value]
    return value


def check_job_types(value: list[JobTypeName]) -> list[JobTypeName]:
    if len(set(value)) != len(value):
        raise ValueError("job types are listed more than once")
    return value


def check_regions(value: list[str]) -> list[str]:
    for region in value:
        if not REGION.match(region):
            raise ValueError(f"{region!r} is not a region id like 'cn-hangzhou'")
    if len(set(value)) != len(value):
        raise ValueError("regions are listed more than once")
    return value


class DtsSettings(Section):
    regions: list[str] = Field(default_factory=lambda: ["cn-hangzhou"], min_length=1)
    api: Api = Field(
        "DescribeSynchronizationJobs",
        description="the listing: DescribeSynchronizationJobs (synchronization jobs only) or "
        "DescribeDtsJobs (migration, synchronization and change tracking)",
    )
    job_types: list[JobTypeName] = Field(
        default_factory=lambda: list(ALL_JOB_TYPES),
        min_length=1,
        description="DescribeDtsJobs: the job types listed, one listing each",
    )
    endpoint: str | None = Field(
        None, description="URL that overrides the per-region endpoint for every region"
    )
    page_size: Literal[10, 20, 30] = 30
    job_name: str | None = Field(None, description="SynchronizationJobName filter (fuzzy)")
    tags: dict[str, str] = Field(default_factory=dict, description="Tag.N.Key/Value filters")
    resource_group_id: str | None = None
    timeout: float = Field(
        10.0, gt=0, description="seconds one HTTP request may take in all, answer read included"
    )
    max_response_bytes: int = Field(
        16 * MEBIBYTE,
        ge=64 * 1024,
        description="largest answer accepted, in bytes once decompressed (a page of 30 "
        "jobs is about 100 KB); a larger one fails its region for the cycle",
    )
    tls_ca_file: Path | None = Field(
        None,
        description="PEM file of the certificate authorities trusted for DTS, STS and the "
        "metadata service, instead of the system's (a private CA, a TLS-inspecting proxy)",
    )
    allow_plain_http: bool = Field(
        False,
        description="allow an http:// DTS or STS endpoint that is not on this machine "
        "(requests, signatures and tokens then travel in the clear)",
    )
    max_attempts: int = Field(5, ge=1, le=20, description="tries per request, first included")
    backoff_initial: float = Field(0.5, gt=0, description="seconds before the first retry")
    backoff_max: float = Field(20.0, gt=0, description="longest wait between two tries")
    rate_limit: float = Field(
        5.0, gt=0, le=20, description="requests per second per region (DTS allows 20)"
    )
    max_concurrent_regions: int = Field(4, ge=1)
    max_concurrent_pages: int = Field(4, ge=1, description="pages in flight per region")
    drift_rereads: int = Field(2, ge=0, description="re-reads of a region whose listing moved")
    allow_regions: list[str] = Field(
        default_factory=list,
        description="region ids to accept though dts-watcher's list of DTS regions lacks them",
    )

    @field_validator("regions")
    @classmethod
    def _regions_are_ids(cls, value: list[str]) -> list[str]:
        return check_regions(value)

    @field_validator("job_types", mode="before")
    @classmethod
    def _job_types_upper(cls, value: Any) -> Any:
        return job_type_list(value)

    @field_validator("job_types")
    @classmethod
    def _job_types_once(cls, value: list[JobTypeName]) -> list[JobTypeName]:
        return check_job_types(value)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        return http_url(value)

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_file_loads(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            ssl.create_default_context(cafile=str(value))
        except FileNotFoundError:
            raise ValueError(f"{value} does not exist") from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
            reason = reason or type(exc).__name__
            raise ValueError(f"{value} is not a PEM file of certificates ({reason})") from None
        return value

    @field_validator("tags")
    @classmethod
    def _tag_count(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 20:
            raise ValueError("DTS accepts at most 20 tag filters")
        if any(not k for k in value):
            raise ValueError("a tag key cannot be empty")
        return value


_SESSION_NAME = re.compile(r"^[A-Za-z0-9_.@\-]{2,64}$")


class CredentialsSettings(Section):
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
    fetch_timeout: float = Field(
        20.0,
        gt=0,
        le=300,
        description="seconds one fetch of temporary credentials may take in all (metadata "
        "service, STS, the OIDC token file); past it the source has failed for this try",
    )

    @field_validator("access_key_id", "access_key_secret", "security_token", mode="before")
    @classmethod
    def _sendable(cls, value: object) -> object:
        """What goes into a request header: a newline from a file stripped, anything a
        header cannot carry refused when loaded (naming the variable, never the value)."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            return value
        return header_safe(value) or None

    @field_validator("sts_endpoint")
    @classmethod
    def _sts_url(cls, value: str | None) -> str | None:
        return http_url(value)

    @field_validator("ecs_metadata_url")
    @classmethod
    def _metadata_url(cls, value: str) -> str:
        url = http_url(value)
        if url is None:
            raise ValueError("the metadata service URL cannot be empty")
        return url

    @field_validator("sts_region")
    @classmethod
    def _sts_region(cls, value: str | None) -> str | None:
        if value is not None and not REGION.match(value):
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
