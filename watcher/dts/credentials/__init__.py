"""Where the DTS access key comes from: a chain of sources, the first configured one wins.

1. A static access key pair (optionally with an STS token): `ALIBABA_CLOUD_ACCESS_KEY_ID`,
   `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `ALIBABA_CLOUD_SECURITY_TOKEN`, or `[credentials]`.
2. RRSA (RAM Roles for Service Accounts, Kubernetes on ACK): when the role ARN, the OIDC
   provider ARN and the OIDC token file are all set, the token is exchanged for a role's
   temporary key with STS `AssumeRoleWithOIDC`.
3. A profile of the Alibaba Cloud CLI's `~/.aliyun/config.json`, when the file exists.
4. The ECS instance RAM role, from the metadata service, only when asked for (a role
   name or `ecs_metadata_enabled`): probing 100.100.100.200 off ECS would hang.

The chain is resolved once, when the watcher starts, from the configuration alone: the
source it picks is the one used (and logged); a failing source never silently falls
through to another identity.

Why a `Refreshing` wrapper rather than refresh logic in each source: the client calls
`get()` before every request, so `get()` must be a field read when the key is fresh, and
temporary keys must be renewed *before* DTS rejects them. The wrapper owns that policy
(renew when less than max(5 min, 20 % of the lifetime) remains, one renewal at a time,
keep a still-valid key when a renewal fails) and the sources only know how to fetch
(`CredentialsSource.fetch`), which keeps each of them testable against a fake endpoint.

Secrets are SecretStr; they never appear in a repr, a log line or an error message, and
neither does the OIDC token or the metadata service's session token.
"""

from watcher.dts.credentials.base import (
    Credentials,
    CredentialsError,
    CredentialsProvider,
    CredentialsSource,
    describe,
)
from watcher.dts.credentials.chain import provider_from_settings
from watcher.dts.credentials.ecs import ECS_METADATA_URL, METADATA_TIMEOUT, EcsRamRoleProvider
from watcher.dts.credentials.oidc import STS_ENDPOINT, OidcRoleProvider, sts_endpoint
from watcher.dts.credentials.profile import ProfileProvider, default_profile_file
from watcher.dts.credentials.refreshing import Refreshing
from watcher.dts.credentials.static import NOTHING_FOUND, StaticProvider, from_settings

__all__ = [
    "ECS_METADATA_URL",
    "METADATA_TIMEOUT",
    "NOTHING_FOUND",
    "STS_ENDPOINT",
    "Credentials",
    "CredentialsError",
    "CredentialsProvider",
    "CredentialsSource",
    "EcsRamRoleProvider",
    "OidcRoleProvider",
    "ProfileProvider",
    "Refreshing",
    "StaticProvider",
    "default_profile_file",
    "describe",
    "from_settings",
    "provider_from_settings",
    "sts_endpoint",
]
