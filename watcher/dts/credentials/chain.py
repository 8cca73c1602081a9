"""The chain: the first configured source wins (see the package docstring)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from datetime import datetime

import httpx

from watcher.dts.credentials.base import CredentialsError, CredentialsProvider, describe, utcnow
from watcher.dts.credentials.ecs import EcsRamRoleProvider
from watcher.dts.credentials.oidc import OidcRoleProvider, sts_endpoint
from watcher.dts.credentials.profile import ProfileProvider, default_profile_file
from watcher.dts.credentials.refreshing import Refreshing
from watcher.dts.credentials.static import NOTHING_FOUND, StaticProvider
from watcher.dts.tls import tls_verify
from watcher.logs import get_logger
from watcher.settings import CredentialsSettings, Settings
from watcher.settings.common import is_loopback

log = get_logger("watcher.credentials")


def provider_from_settings(
    settings: Settings,
    config_file: str | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    now: Callable[[], datetime] = utcnow,
) -> CredentialsProvider:
    """The first configured source of the chain (see the module docstring), logged by name.

    Raises CredentialsError when none is configured, or when the chosen one is unusable
    from the start (a profile file that names an unsupported mode, for instance).
    """
    provider = _choose(settings, config_file, transport, now)
    log.info("credentials.source", source=describe(provider))
    sts = settings.credentials.sts_endpoint
    if sts and sts.startswith("http://") and not is_loopback(sts):
        log.warning(
            "credentials.plain_http",
            sts_endpoint=sts,
            risk="the OIDC token and the issued keys travel unencrypted",
        )
    return provider


def _choose(
    settings: Settings,
    config_file: str | None,
    transport: httpx.AsyncBaseTransport | None,
    now: Callable[[], datetime],
) -> CredentialsProvider:
    section = settings.credentials
    if section.access_key_id:
        return StaticProvider.from_config(section, config_file)
    verify = tls_verify(settings.dts.tls_ca_file)
    timeout = section.fetch_timeout
    sts = sts_endpoint(section.sts_endpoint, section.sts_region)
    if section.role_arn and section.oidc_provider_arn and section.oidc_token_file:
        oidc = OidcRoleProvider(
            section.role_arn,
            section.oidc_provider_arn,
            section.oidc_token_file,
            session_name=section.role_session_name,
            duration=section.role_session_duration,
            endpoint=sts,
            transport=transport,
            now=now,
            verify=verify,
        )
        return Refreshing(oidc, now=now, timeout=timeout)
    hint = _rrsa_hint(section)
    profile = _profile(section, sts, transport, now, verify)
    if profile is not None:
        return Refreshing(profile, now=now, timeout=timeout)
    if section.ecs_ram_role or section.ecs_metadata_enabled:
        ecs = EcsRamRoleProvider(
            section.ecs_ram_role,
            metadata_url=section.ecs_metadata_url,
            imdsv1_disabled=section.imdsv1_disabled,
            transport=transport,
            verify=verify,
        )
        return Refreshing(ecs, now=now, timeout=timeout)
    raise CredentialsError(NOTHING_FOUND + hint)


def _rrsa_hint(section: CredentialsSettings) -> str:
    """What is missing when RRSA is only partly configured (logged too), else ""."""
    rrsa = {
        "ALIBABA_CLOUD_ROLE_ARN": section.role_arn,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": section.oidc_provider_arn,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": section.oidc_token_file,
    }
    missing = [name for name, value in rrsa.items() if not value]
    if len(missing) == len(rrsa):
        return ""
    log.warning("credentials.rrsa_incomplete", missing=missing)
    return f" (RRSA is only partly configured: {', '.join(missing)} not set)"


def _profile(
    section: CredentialsSettings,
    sts: str,
    transport: httpx.AsyncBaseTransport | None,
    now: Callable[[], datetime],
    verify: ssl.SSLContext | bool,
) -> ProfileProvider | None:
    """The CLI profile source when its file exists; an error when one was asked for."""
    path = section.profile_file or default_profile_file()
    if path is not None and path.expanduser().is_file():
        return ProfileProvider(
            path.expanduser(),
            section.profile,
            metadata_url=section.ecs_metadata_url,
            imdsv1_disabled=section.imdsv1_disabled,
            sts_endpoint=sts,
            transport=transport,
            now=now,
            verify=verify,
        )
    if section.profile_file is not None:
        raise CredentialsError(
            f"the profile file {section.profile_file} (ALIBABA_CLOUD_CONFIG_FILE) does not exist"
        )
    if section.profile is not None:
        raise CredentialsError(
            f"profile {section.profile!r} (ALIBABA_CLOUD_PROFILE) is set but {path} does not exist"
        )
    return None
