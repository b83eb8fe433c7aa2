"""The Navixy session: an API key, or a ``user/auth`` hash shared by every process on the machine.

The platform limits logins (code 104, "logins limit exceeded"), so a login's hash lives in a
file guarded by an ``fcntl`` lock and is renewed once when the platform ends the session
(code 3/4). An API key is used as the hash and never renewed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fleet_pipeline.ingest.http import Secrets, VendorAPIError, VendorAuthError, VendorResponseError
from fleet_pipeline.ingest.shared_files import cache_key
from fleet_pipeline.ingest.shared_state import shared_json
from fleet_pipeline.sources.navixy.endpoints import USER_AUTH, VENDOR
from fleet_pipeline.sources.navixy.errors import SessionRejected, TrackerNotFound
from fleet_pipeline.sources.time_windows import as_naive_utc

logger = logging.getLogger("fleet_pipeline.sources.navixy")

# ``post(method, params, session_hash)``: one call; no hash for the login itself.
Post = Callable[[str, dict[str, Any], str | None], dict[str, Any]]


class SessionCache:
    """The ``user/auth`` hash of one (base URL, login), shared by every process on the machine."""

    def __init__(self, directory: Path, base_url: str, login: str) -> None:
        self.file = shared_json(directory, f"navixy-session-{cache_key(base_url, login)}")

    def read(self) -> str | None:
        value = (self.file.read() or {}).get("hash")
        return str(value) if value else None

    def write(self, session_hash: str, obtained_at: datetime) -> None:
        self.file.write({"hash": session_hash, "obtained_at": obtained_at.isoformat()})

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return self.file.locked()


class SessionAuth:
    """Makes calls with the current session hash and renews a login's hash once when refused."""

    def __init__(
        self,
        *,
        api_key: str | None,
        login: str | None,
        password: str | None,
        cache: SessionCache | None,
        secrets: Secrets,
        now: Callable[[], datetime],
        post: Post,
    ) -> None:
        self.login = login
        self._api_key = api_key
        self._password = password
        self._cache = cache
        self._secrets = secrets
        self._now = now
        self._post = post
        self._hash: str | None = api_key

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One authenticated call; on code 3/4 logs in again once and retries once.

        An API key cannot be renewed, so its rejection is final.
        """
        session_hash = self._session_hash()
        try:
            return self._post(method, params, session_hash)
        except SessionRejected as rejected:
            if self._api_key:
                raise VendorAuthError(
                    VENDOR, method, f"API key rejected: {rejected.message}", rejected.code
                ) from None
            logger.info("navixy %s: session rejected (code %s); logging in again once",
                        method, rejected.code)
        session_hash = self._renew(rejected=session_hash)
        try:
            return self._post(method, params, session_hash)
        except SessionRejected as again:
            raise VendorAuthError(
                VENDOR, method, f"session rejected again right after login: {again.message}",
                again.code,
            ) from None

    def _session_hash(self) -> str:
        if self._hash is not None:
            return self._hash
        assert self._cache is not None
        cached = self._cache.read()
        if cached:
            self._adopt(cached)
            return cached
        return self._renew(rejected=None)

    def _adopt(self, session_hash: str) -> None:
        self._secrets.register(session_hash)
        self._hash = session_hash

    def _renew(self, rejected: str | None) -> str:
        """Log in under the cross-process lock, unless another process already has.

        Re-reading the file under the lock is what lets the second process reuse the hash the
        first one just obtained instead of logging in again.
        """
        assert self._cache is not None
        with self._cache.locked():
            cached = self._cache.read()
            if cached and cached != rejected:
                self._adopt(cached)
                return cached
            session_hash = self._authenticate()
            self._cache.write(session_hash, as_naive_utc(self._now()))
            self._adopt(session_hash)
            return session_hash

    def _authenticate(self) -> str:
        try:
            payload = self._post(USER_AUTH, {"login": self.login, "password": self._password}, None)
        except VendorAPIError as refused:
            # 102 wrong login or password, 103 not activated, 104/105 login limits, 4 no such
            # user. Transport, throttling and body errors keep their own type.
            if type(refused) in (VendorAPIError, SessionRejected, TrackerNotFound):
                raise VendorAuthError(
                    VENDOR, USER_AUTH, f"login refused: {refused.message}", refused.code
                ) from None
            raise
        session_hash = payload.get("hash")
        if not session_hash:
            raise VendorResponseError(VENDOR, USER_AUTH, "answer carries no hash")
        if payload.get("type") not in (None, "authenticated"):
            # Two-factor accounts get a hash usable only for the code step: useless here.
            raise VendorAuthError(
                VENDOR, USER_AUTH,
                f"login needs a second factor ({str(payload.get('factor_type'))[:20]}); "
                "use an API key for this integration",
            )
        self._secrets.register(str(session_hash))
        logger.info("navixy: logged in as %s", self.login)
        return str(session_hash)
