"""Several Alibaba Cloud accounts (`[[accounts]]`, `DTS_WATCHER_ACCOUNTS`).

Each account names its regions and how the watcher gets a key for it: a RAM role assumed
with STS `AssumeRole` from the base credentials (`[credentials]` and the usual chain:
the way one principal watches many accounts), or a profile of the Alibaba Cloud CLI's
config file. An account with neither uses the base credentials themselves. `api` and
`job_types` default to `[dts]`'s. Without accounts, the watcher watches one account
named `default`: the base credentials in `dts.regions`, exactly as before accounts.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from watcher.settings.common import Section
from watcher.settings.dts import (
    Api,
    DtsSettings,
    JobTypeName,
    check_job_types,
    check_regions,
    job_type_list,
)

# An account's name is a metrics label value and part of a shard's label
# (`account/region`): letters, digits, `_` and `-`.
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
ROLE_ARN = re.compile(r"^acs:ram::[^:\s]+:role/\S+$")


class AccountSettings(Section):
    name: str
    regions: list[str] = Field(min_length=1)
    api: Api | None = Field(None, description="default: dts.api")
    job_types: list[JobTypeName] | None = Field(None, min_length=1, description="dts.job_types")
    role_arn: str | None = Field(None, description="RAM role assumed from the base credentials")
    profile: str | None = Field(None, description="a profile of the CLI's config file")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ACCOUNT_NAME.match(value):
            raise ValueError(
                f"{value!r} is not an account name (1 to 64 letters, digits, '_' or '-')"
            )
        return value

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        return check_regions(value)

    @field_validator("job_types", mode="before")
    @classmethod
    def _job_types_upper(cls, value: Any) -> Any:
        return job_type_list(value)

    @field_validator("job_types")
    @classmethod
    def _job_types_once(cls, value: list[JobTypeName] | None) -> list[JobTypeName] | None:
        return None if value is None else check_job_types(value)

    @field_validator("role_arn", "profile")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return None if value is None else (value.strip() or None)

    @field_validator("role_arn")
    @classmethod
    def _arn(cls, value: str | None) -> str | None:
        if value is not None and not ROLE_ARN.match(value):
            raise ValueError(f"{value!r} is not a RAM role ARN like 'acs:ram::123456789012:role/x'")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> AccountSettings:
        if self.role_arn is not None and self.profile is not None:
            raise ValueError(
                f"account {self.name!r} sets both role_arn and profile: give one of them"
            )
        return self

    def resolved(self, dts: DtsSettings) -> AccountSettings:
        """This account with `api` and `job_types` filled in from `[dts]`."""
        return self.model_copy(
            update={
                "api": self.api or dts.api,
                "job_types": list(self.job_types or dts.job_types),
            }
        )


def check_accounts(value: list[AccountSettings]) -> list[AccountSettings]:
    names = [account.name for account in value]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            "account names must be unique in DTS_WATCHER_ACCOUNTS (or [[accounts]]): "
            f"{', '.join(repeated)} repeated"
        )
    return value


def watched_accounts(dts: DtsSettings, accounts: list[AccountSettings]) -> list[AccountSettings]:
    """The accounts to watch, `api` and `job_types` resolved: the configured ones, or the
    one account `default` of the top-level settings."""
    if not accounts:
        return [AccountSettings(name="default", regions=list(dts.regions)).resolved(dts)]
    return [account.resolved(dts) for account in accounts]
