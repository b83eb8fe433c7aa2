"""The Tracksolid access token: one per (node, app key, user), shared by every process and run.

``jimi.oauth.token.get`` may be called once a minute per account, so the token lives in a file
guarded by an ``fcntl`` lock, is refreshed before it expires, and is got anew only when refresh
fails, waiting out the once-a-minute rule from the stamp in the file.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fleet_pipeline.ingest.http import CallStats, Secrets, VendorAPIError, VendorResponseError
from fleet_pipeline.ingest.shared_files import cache_key
from fleet_pipeline.ingest.shared_state import shared_json
from fleet_pipeline.sources.tracksolid.errors import VENDOR
from fleet_pipeline.sources.tracksolid.rows import int_or_none

logger = logging.getLogger("fleet_pipeline.sources.tracksolid")

TOKEN_GET = "jimi.oauth.token.get"
TOKEN_REFRESH = "jimi.oauth.token.refresh"

# ``signed(method, params, access_token)``: one signed call; no token for token.get itself.
Signed = Callable[[str, dict[str, str], str | None], dict[str, Any]]


@dataclass
class TokenState:
    """What the cache file holds. ``last_get_at`` survives refreshes: it is what rate-limits get."""

    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: datetime | None = None
    lifetime_s: float | None = None
    last_get_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": iso(self.expires_at),
            "lifetime_s": self.lifetime_s,
            "last_get_at": iso(self.last_get_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenState:
        def when(value: object) -> datetime | None:
            return datetime.fromisoformat(value) if isinstance(value, str) else None

        lifetime = data.get("lifetime_s")
        return cls(
            access_token=data.get("access_token") or None,
            refresh_token=data.get("refresh_token") or None,
            expires_at=when(data.get("expires_at")),
            lifetime_s=float(lifetime) if isinstance(lifetime, (int, float)) else None,
            last_get_at=when(data.get("last_get_at")),
        )


class TokenCache:
    """The token of one (base URL, app key, user), shared by every process on the machine."""

    def __init__(self, directory: Path, base_url: str, app_key: str, user_id: str) -> None:
        self.file = shared_json(directory, f"tracksolid-token-{cache_key(base_url, app_key, user_id)}")

    def read(self) -> TokenState:
        data = self.file.read()
        return TokenState.from_json(data) if data else TokenState()

    def write(self, state: TokenState) -> None:
        self.file.write(state.to_json())

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return self.file.locked()


class TokenKeeper:
    """Hands out a token with more than the refresh margin of life left, renewing it when due."""

    def __init__(
        self,
        *,
        cache: TokenCache,
        signed: Signed,
        user_id: str,
        user_pwd_md5: str,
        secrets: Secrets,
        stats: CallStats,
        now: Callable[[], datetime],
        sleep: Callable[[float], None],
        token_lifetime_s: int,
        refresh_margin_s: float,
        token_get_interval_s: float,
    ) -> None:
        self._cache = cache
        self._signed = signed
        self.user_id = user_id
        self._user_pwd_md5 = user_pwd_md5
        self.secrets = secrets
        self.stats = stats
        self._now = now
        self._sleep = sleep
        self.token_lifetime_s = token_lifetime_s
        self.refresh_margin_s = refresh_margin_s
        self.token_get_interval_s = token_get_interval_s
        self._state: TokenState | None = None

    def token(self) -> str:
        """A token with more than the refresh margin of life left, renewing if needed."""
        if self._state is not None and self._usable(self._state):
            return self._state.access_token  # type: ignore[return-value]
        # Another process may have renewed already: the file is the shared truth.
        state = self._cache.read()
        if self._usable(state):
            self._adopt(state)
            return state.access_token  # type: ignore[return-value]
        return self.renew(rejected=None)

    def _usable(self, state: TokenState) -> bool:
        if not state.access_token or state.expires_at is None:
            return False
        return (state.expires_at - self._now()).total_seconds() > self._margin_s(state)

    def _margin_s(self, state: TokenState) -> float:
        # A token shorter-lived than twice the margin would be "due for refresh" from birth and
        # refreshed on every call; refresh such tokens at half-life instead.
        lifetime = state.lifetime_s or float(self.token_lifetime_s)
        return min(self.refresh_margin_s, lifetime / 2)

    def _adopt(self, state: TokenState) -> None:
        self.secrets.register(state.access_token)
        self.secrets.register(state.refresh_token)
        self._state = state

    def renew(self, rejected: str | None) -> str:
        """Refresh (or, failing that, get) a token under the cross-process lock.

        Re-reading the file under the lock is what lets a second process reuse the token the
        first one just obtained instead of calling the token endpoints again.
        """
        with self._cache.locked():
            state = self._cache.read()
            if state.access_token:
                self._adopt(state)
            if state.access_token != rejected and self._usable(state):
                return state.access_token  # type: ignore[return-value]
            renewed = None
            if state.access_token and state.refresh_token and not self._expired(state):
                renewed = self._try_refresh(state)
            if renewed is None:
                self._wait_for_token_get(state)
                renewed = self._get_token()
            else:
                renewed.last_get_at = state.last_get_at
            self._cache.write(renewed)
            self._adopt(renewed)
            return renewed.access_token  # type: ignore[return-value]

    def _expired(self, state: TokenState) -> bool:
        return state.expires_at is None or state.expires_at <= self._now()

    def _try_refresh(self, state: TokenState) -> TokenState | None:
        try:
            payload = self._signed(TOKEN_REFRESH, {
                "refresh_token": state.refresh_token or "",
                "expires_in": str(self.token_lifetime_s),
            }, state.access_token)
            renewed = self._token_state(TOKEN_REFRESH, payload)
        except VendorAPIError as error:
            logger.warning(
                "tracksolid %s failed (%s); falling back to %s",
                TOKEN_REFRESH, self.secrets.redact(str(error)), TOKEN_GET,
            )
            return None
        if renewed.refresh_token is None:
            renewed.refresh_token = state.refresh_token
        logger.info("tracksolid: access token refreshed (valid %.0f s)", renewed.lifetime_s or 0)
        return renewed

    def _wait_for_token_get(self, state: TokenState) -> None:
        """Honour "token.get at most once a minute" across processes, using the cached stamp."""
        if state.last_get_at is None:
            return
        elapsed = (self._now() - state.last_get_at).total_seconds()
        wait = self.token_get_interval_s - elapsed
        if wait > 0:
            logger.info("tracksolid: waiting %.1f s before %s (once a minute)", wait, TOKEN_GET)
            self.stats.record_throttle_wait(wait)
            self._sleep(wait)

    def _get_token(self) -> TokenState:
        payload = self._signed(TOKEN_GET, {
            "user_id": self.user_id,
            "user_pwd_md5": self._user_pwd_md5,
            "expires_in": str(self.token_lifetime_s),
        }, None)
        state = self._token_state(TOKEN_GET, payload)
        state.last_get_at = self._now()
        logger.info("tracksolid: new access token obtained (valid %.0f s)", state.lifetime_s or 0)
        return state

    def _token_state(self, method: str, payload: dict[str, Any]) -> TokenState:
        result = payload.get("result")
        if not isinstance(result, dict) or not result.get("accessToken"):
            raise VendorResponseError(VENDOR, method, "answer carries no accessToken")
        access = str(result["accessToken"])
        refresh = result.get("refreshToken")
        self.secrets.register(access)
        self.secrets.register(None if refresh is None else str(refresh))
        lifetime = int_or_none(result.get("expiresIn")) or self.token_lifetime_s
        return TokenState(
            access_token=access,
            refresh_token=None if refresh in (None, "") else str(refresh),
            expires_at=self._now() + timedelta(seconds=lifetime),
            lifetime_s=float(lifetime),
        )
