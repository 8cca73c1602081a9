"""1. A static access key pair (optionally with an STS token), from the environment
(`ALIBABA_CLOUD_ACCESS_KEY_ID`, `..._SECRET`, `ALIBABA_CLOUD_SECURITY_TOKEN`) or the
config file's `[credentials]`."""

from __future__ import annotations

from collections.abc import Callable

from watcher.dts.credentials.base import Credentials, CredentialsError
from watcher.settings import CredentialsSettings, load_settings

NOTHING_FOUND = (
    "no DTS credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for STS), "
    "or [credentials] in the config file; or, for RRSA on Kubernetes, "
    "ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and "
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE; or create ~/.aliyun/config.json (aliyun configure, "
    "or ALIBABA_CLOUD_CONFIG_FILE); or, on ECS, ALIBABA_CLOUD_ECS_METADATA=<RAM role name>"
)


def from_settings(section: CredentialsSettings) -> Credentials:
    if not section.access_key_id or section.access_key_secret is None:
        raise CredentialsError(NOTHING_FOUND)
    return Credentials(
        access_key_id=section.access_key_id,
        access_key_secret=section.access_key_secret,
        security_token=section.security_token,
    )


class StaticProvider:
    """Credentials from configuration; `refresh` re-reads the configuration once."""

    def __init__(
        self,
        credentials: Credentials,
        reload: Callable[[], Credentials] | None = None,
    ) -> None:
        self._credentials = credentials
        self._reload = reload

    @classmethod
    def from_config(cls, section: CredentialsSettings, config_file: str | None) -> StaticProvider:
        def reload() -> Credentials:
            return from_settings(load_settings(config_file).credentials)

        return cls(from_settings(section), reload)

    def describe(self) -> str:
        kind = "STS token" if self._credentials.security_token else "access key"
        return f"static {kind} {self._credentials.access_key_id} (environment or config)"

    def __repr__(self) -> str:
        return f"StaticProvider({self._credentials!r})"

    async def get(self) -> Credentials:
        return self._credentials

    async def refresh(self) -> Credentials:
        if self._reload is not None:
            self._credentials = self._reload()
        return self._credentials
