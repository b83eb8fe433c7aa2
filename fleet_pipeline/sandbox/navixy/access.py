"""Who may call the Navixy sandbox: the 50/s rate limit, the API key and session hashes.

Session hashes are stateless (issue time + HMAC keyed by the sandbox password), so a hash cached by
one process is accepted by any sandbox; see SPEC.md, "Auth" and "Rate limit".
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from fleet_pipeline.sandbox.messages import Request, Response
from fleet_pipeline.sandbox.navixy.protocol import (
    API_KEY,
    API_PREFIX,
    Call,
    NavixyError,
    epoch,
    error_response,
    hash_of,
    request_values,
)


class AccessControl:
    """The throttle hook and authentication.

    A part of `NavixyApp` (app.py), whose constructor sets the World, knobs, clock and state read here.
    """

    def throttle(self, request: Request) -> Response | None:
        """50 calls per second per hash and per client IP (code 15, HTTP 429)."""
        if not request.path.startswith(API_PREFIX + "/"):
            return None
        method = self.vendor_method(request)
        if self.knobs.consume("force_429_next"):
            return error_response(method, NavixyError(15))
        try:
            values = request_values(request)
        except NavixyError:
            values = {}
        keys = [f"ip:{request.client_ip}"]
        session = hash_of(request, values)
        if session:
            keys.append(f"hash:{session}")
        limit, window = self.knobs.rate_limit_per_s, self.knobs.rate_limit_window_s
        with self._lock:
            t = self._rate_clock()
            stamps = [self._windows.setdefault(key, deque()) for key in keys]
            for s in stamps:
                while s and s[0] <= t - window:
                    s.popleft()
            if any(len(s) >= limit for s in stamps):
                return error_response(method, NavixyError(15))
            for s in stamps:
                s.append(t)
            if len(self._windows) > 10_000:
                # Garbage hashes must not grow the table forever in a long run.
                self._windows = {k: v for k, v in self._windows.items() if v and v[-1] > t - window}
        return None

    # -- authentication ----------------------------------------------------------------------
    def _authenticate(self, request: Request, values: Mapping[str, Any], call: Call) -> Call:
        presented = hash_of(request, values)
        if not presented:
            raise NavixyError(3)
        account_id = None
        if hmac.compare_digest(presented.encode("utf-8"), API_KEY.encode("utf-8")):
            kind = "api_key"
        elif presented.startswith(API_KEY + ".") and presented[len(API_KEY) + 1:] in self._groups:
            kind, account_id = "api_key", presented[len(API_KEY) + 1:]
        else:
            issued = self._session_issued_at(presented)
            if issued is None:
                raise NavixyError(3)
            with self._lock:
                logged_out = (presented in self._logged_out
                              or presented in self._issued[:self.knobs.end_first_sessions])
            ends = issued + timedelta(seconds=self.knobs.session_lifetime_s)
            if logged_out or self.now() >= ends:
                raise NavixyError(4)
            kind = "session"
        return Call(method=call.method, params=call.params, iso=call.iso, hash=presented,
                     session_kind=kind, account_id=account_id)

    def _session_mac(self, payload: bytes) -> bytes:
        return hmac.new(self._session_key, payload, hashlib.sha256).digest()[:8]

    def _issue_session(self, now: datetime) -> str:
        payload = secrets.token_bytes(4) + epoch(now).to_bytes(4, "big")
        return (payload + self._session_mac(payload)).hex()

    def _session_issued_at(self, presented: str) -> datetime | None:
        if len(presented) != 32:
            return None
        try:
            raw = bytes.fromhex(presented)
        except ValueError:
            return None
        if not hmac.compare_digest(raw[8:], self._session_mac(raw[:8])):
            return None
        return datetime(1970, 1, 1) + timedelta(seconds=int.from_bytes(raw[4:8], "big"))
