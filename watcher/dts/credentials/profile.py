"""3. A profile of the Alibaba Cloud CLI's `~/.aliyun/config.json`."""

from __future__ import annotations

import json
import os
import ssl
import stat
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from watcher.dts.credentials.answers import clean, read_text, read_text_now
from watcher.dts.credentials.base import Credentials, CredentialsError, utcnow
from watcher.dts.credentials.ecs import ECS_METADATA_URL, EcsRamRoleProvider
from watcher.dts.credentials.oidc import (
    DEFAULT_DURATION,
    STS_ENDPOINT,
    OidcRoleProvider,
    sts_endpoint,
)
from watcher.logs import get_logger

log = get_logger("watcher.credentials")

SUPPORTED_MODES = ("AK", "StsToken", "EcsRamRole", "OIDC")


def default_profile_file() -> Path | None:
    try:
        return Path.home() / ".aliyun" / "config.json"
    except RuntimeError:  # no home directory to speak of
        return None


class ProfileProvider:
    """One profile of `~/.aliyun/config.json`, the file `aliyun configure` writes.

    The file is read again on every fetch, so `refresh()` picks up `aliyun configure`
    changes. Modes: AK, StsToken, EcsRamRole (the ECS source, with the profile's role
    name) and OIDC (the RRSA source, with the profile's ARNs and token file). Others
    (RamRoleArn, ChainableRamRoleArn, External, CredentialsURI, CloudSSO, ...) are refused
    when the watcher starts, with a message naming the mode.
    """

    def __init__(
        self,
        path: Path,
        profile: str | None = None,
        *,
        metadata_url: str = ECS_METADATA_URL,
        imdsv1_disabled: bool = False,
        sts_endpoint: str = STS_ENDPOINT,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], datetime] = utcnow,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._verify = verify
        self._path = Path(path)
        self._wanted = profile
        self._metadata_url = metadata_url
        self._imdsv1_disabled = imdsv1_disabled
        self._sts_endpoint = sts_endpoint
        self._transport = transport
        self._now = now
        text = read_text_now(self._path, "the profile file")
        _warn_if_readable_by_others(self._path)
        chosen = self._select(text)  # fail when the watcher starts, not at the first request
        self.name = str(chosen["name"])
        self.mode = _mode(chosen)

    def describe(self) -> str:
        return f"profile {self.name!r} ({self.mode}) in {self._path}"

    def __repr__(self) -> str:
        return f"ProfileProvider({self.describe()!r})"

    async def fetch(self) -> Credentials:
        profile = self._select(await read_text(self._path, "the profile file"))
        mode = _mode(profile)
        where = f"profile {profile['name']!r} ({mode}) in {self._path}"
        if mode in ("AK", "StsToken"):
            needed = ["access_key_id", "access_key_secret"]
            if mode == "StsToken":
                needed.append("sts_token")
            missing = [name for name in needed if not _text(profile, name)]
            if missing:
                raise CredentialsError(f"{where} has no {', '.join(missing)}")
            token = _text(profile, "sts_token") if mode == "StsToken" else ""
            return Credentials(
                access_key_id=_text(profile, "access_key_id"),
                access_key_secret=SecretStr(_text(profile, "access_key_secret")),
                security_token=SecretStr(token) if token else None,
            )
        if mode == "EcsRamRole":
            return await EcsRamRoleProvider(
                _text(profile, "ram_role_name") or None,
                metadata_url=self._metadata_url,
                imdsv1_disabled=self._imdsv1_disabled,
                transport=self._transport,
                verify=self._verify,
            ).fetch()
        # OIDC (the only other mode _select lets through)
        missing = [
            name
            for name in ("ram_role_arn", "oidc_provider_arn", "oidc_token_file")
            if not _text(profile, name)
        ]
        if missing:
            raise CredentialsError(f"{where} has no {', '.join(missing)}")
        region = _text(profile, "sts_region")
        seconds = profile.get("expired_seconds")
        duration = seconds if isinstance(seconds, int) and seconds >= 900 else DEFAULT_DURATION
        return await OidcRoleProvider(
            _text(profile, "ram_role_arn"),
            _text(profile, "oidc_provider_arn"),
            _user_path(_text(profile, "oidc_token_file")),
            session_name=_text(profile, "ram_session_name") or None,
            duration=duration,
            endpoint=sts_endpoint(None, region) if region else self._sts_endpoint,
            transport=self._transport,
            now=self._now,
            verify=self._verify,
        ).fetch()

    def _select(self, text: str) -> dict[str, Any]:
        try:
            document = json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", "?")
            raise CredentialsError(
                f"the profile file {self._path} is not valid JSON (line {line})"
            ) from None
        if not isinstance(document, dict) or not isinstance(document.get("profiles"), list):
            raise CredentialsError(
                f'the profile file {self._path} has no "profiles" list '
                "(is it the aliyun CLI's config.json?)"
            )
        current = document.get("current")
        name = self._wanted or (current if isinstance(current, str) and current else "default")
        profiles = [p for p in document["profiles"] if isinstance(p, dict)]
        chosen = next((p for p in profiles if p.get("name") == name), None)
        if chosen is None:
            known = clean(", ".join(sorted(str(p.get("name")) for p in profiles))) or "none"
            origin = " (ALIBABA_CLOUD_PROFILE)" if self._wanted else ""
            raise CredentialsError(
                f"profile {name!r}{origin} is not in {self._path} (profiles there: {known})"
            )
        mode = _mode(chosen)
        if mode not in SUPPORTED_MODES:
            raise CredentialsError(
                f"profile {name!r} in {self._path} uses mode {clean(mode, limit=40)!r}, which "
                "dts-watcher does "
                f"not support (supported: {', '.join(SUPPORTED_MODES)}); use another profile "
                "(ALIBABA_CLOUD_PROFILE) or another credentials source"
            )
        return chosen


def _warn_if_readable_by_others(path: Path) -> None:
    """The file holds keys: warn, as ssh does, when others may read or change it (the
    Alibaba Cloud CLI writes it 0600)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warning(
            "credentials.profile_permissions",
            path=str(path),
            mode=f"{mode:04o}",
            advice=f"others may read the keys in it: chmod 600 {path}",
        )


def _mode(profile: Mapping[str, Any]) -> str:
    mode = profile.get("mode")
    return mode if isinstance(mode, str) and mode else "AK"  # the CLI's default


def _user_path(text: str) -> Path:
    return Path(text).expanduser()


def _text(profile: Mapping[str, Any], name: str) -> str:
    value = profile.get(name)
    return value.strip() if isinstance(value, str) else ""
