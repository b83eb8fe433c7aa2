"""Who may call the Tracksolid sandbox: the 1006 frequency limit, request verification, tokens
and the account scope a token may read (see SPEC.md)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fleet_pipeline.sandbox.messages import Request, Response
from fleet_pipeline.sandbox.tracksolid.protocol import (
    APP_KEY,
    APP_SECRET,
    COMMON_PARAMS,
    MAX_IMEIS,
    PLATFORM,
    REFRESH_LIFETIME,
    ROUTE_PATH,
    TIMESTAMP_TOLERANCE,
    TOKEN_GET,
    USER_PASSWORD,
    Call,
    JimiError,
    Token,
    error,
    expires_in,
    fmt,
    ok_answer,
    parse_time,
    sign,
)

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Device


class AccessControl:
    """Throttle, verification, token endpoints and scope checks.

    A part of `TracksolidApp` (app.py), whose constructor sets the World, knobs, clock and state read here.
    """

    def throttle(self, request: Request) -> Response | None:
        """Jimi's per-app-key frequency limit (1006), applied before anything is verified."""
        if request.http_method != "POST" or request.path != ROUTE_PATH:
            return None
        params = dict(request.form() or ())
        method, app_key = params.get("method"), params.get("app_key")
        if method == TOKEN_GET or app_key != APP_KEY:
            return None
        if self.knobs.consume("force_1006_next"):
            return error(method, 1006, "request frequency too high")
        window, limit = self.knobs.rate_limit_window_s, self.knobs.rate_limit_calls
        with self._lock:
            stamps = self._calls.setdefault(app_key, deque())
            t = self._rate_clock()
            while stamps and stamps[0] <= t - window:
                stamps.popleft()
            if len(stamps) >= limit:
                return error(method, 1006, "request frequency too high")
            stamps.append(t)
        return None

    # -- verification ------------------------------------------------------------------------
    def _verify(self, pairs: list[tuple[str, str]]) -> Call:
        params: dict[str, str] = {}
        for key, value in pairs:
            if key in params:
                raise JimiError(1001, f"duplicate parameter: {key}")
            params[key] = value
        for name in COMMON_PARAMS:
            if not params.get(name):
                raise JimiError(1001, f"missing required parameter: {name}")
        if params["app_key"] != APP_KEY:
            raise JimiError(1001, "app_key invalid")
        if params["sign_method"] != "md5":
            raise JimiError(1001, "sign_method must be md5")
        if params["v"] != "1.0" or params["format"] != "json":
            raise JimiError(1001, "unsupported v or format (expected v=1.0, format=json)")
        if params["sign"] != sign(params, APP_SECRET):
            raise JimiError(1001, "sign invalid")
        stamp = parse_time(params, "timestamp")
        if abs(stamp - self.now()) > TIMESTAMP_TOLERANCE:
            raise JimiError(1001, "timestamp out of range: must be current UTC time "
                                   "within 10 minutes")
        if params["method"] not in self._methods:
            raise JimiError(1001, "method not found")
        return Call(method=params["method"], params=params, app_key=params["app_key"])

    def _authenticate(self, call: Call) -> Call:
        raw = call.params.get("access_token")
        if not raw:
            raise JimiError(1001, "missing required parameter: access_token")
        token = self._codec.decode(raw)
        if token is None:
            raise JimiError(1004, "access_token invalid")
        self._check_token(token, call.app_key, "a", "access_token")
        if self.now() >= token.expires_at:
            raise JimiError(1004, "access_token expired")
        return Call(method=call.method, params=call.params, app_key=call.app_key,
                     account=token.account)

    def _check_token(self, token: Token, app_key: str, kind: str, name: str) -> None:
        revoked_before = self.knobs.revoke_tokens_issued_before
        if (token.kind != kind or token.app_key != app_key or token.account not in self._accounts
                or (revoked_before is not None and token.issued_at < revoked_before)):
            raise JimiError(1004, f"{name} invalid")

    # -- tokens ------------------------------------------------------------------------------
    def token_get(self, call: Call) -> dict[str, Any]:
        user_id = call.params["user_id"]
        pwd = call.params["user_pwd_md5"].lower()
        expected = hashlib.md5(USER_PASSWORD.encode("utf-8")).hexdigest()
        if user_id not in self._accounts or not hmac.compare_digest(pwd, expected):
            raise JimiError(1002, "illegal user: user_id or password is wrong")
        lifetime = expires_in(call.params)
        now = self.now()
        key = (call.app_key, user_id)
        with self._lock:
            last = self._last_token_get.get(key)
            if last is not None and now - last < timedelta(seconds=self.knobs.token_get_interval_s):
                raise JimiError(1006, "jimi.oauth.token.get is limited to once a minute")
            self._last_token_get[key] = now
        return ok_answer(self._issue(user_id, call.app_key, now, lifetime))

    def token_refresh(self, call: Call) -> dict[str, Any]:
        access = self._codec.decode(call.params["access_token"])
        refresh = self._codec.decode(call.params["refresh_token"])
        if access is None:
            raise JimiError(1004, "access_token invalid")
        if refresh is None:
            raise JimiError(1004, "refresh_token invalid")
        self._check_token(access, call.app_key, "a", "access_token")
        self._check_token(refresh, call.app_key, "r", "refresh_token")
        if refresh.session != access.session or refresh.account != access.account:
            raise JimiError(1004, "refresh_token does not belong to access_token")
        now = self.now()
        if now >= refresh.expires_at:
            raise JimiError(1004, "refresh_token expired")
        return ok_answer(self._issue(access.account, call.app_key, now, expires_in(call.params)))

    def _issue(self, account: str, app_key: str, now: datetime, lifetime_s: int) -> dict[str, Any]:
        if self.knobs.token_lifetime_s is not None:
            lifetime_s = self.knobs.token_lifetime_s
        session = secrets.token_hex(8)
        access = Token(account, app_key, "a", session, now, now + timedelta(seconds=lifetime_s))
        refresh = Token(account, app_key, "r", session, now, now + REFRESH_LIFETIME)
        return {"accessToken": self._codec.encode(access), "expiresIn": lifetime_s,
                "account": account, "appKey": app_key,
                "refreshToken": self._codec.encode(refresh), "time": fmt(now)}

    # -- scope helpers -----------------------------------------------------------------------
    def _in_scope(self, account_id: str, root: str) -> bool:
        """True if account_id is root or below it (the only accounts a token may read)."""
        current: str | None = account_id
        while current is not None:
            if current == root:
                return True
            account = self._accounts.get(current)
            current = account.parent_id if account is not None else None
        return False

    def _target(self, call: Call, name: str) -> str:
        target = call.params[name].strip()
        if target not in self._accounts or not self._in_scope(target, call.account or ""):
            raise JimiError(1002, f"illegal user: {name} is not this account or one below it")
        return target

    def _direct_devices(self, account_id: str) -> list[Device]:
        # A device not activated yet (an install later this week) is not in the account.
        return [d for d in self.world.devices_of_account(account_id, at=self.now()) if d.platform == PLATFORM]

    def _device(self, call: Call, imei: str, under: str | None = None) -> Device:
        try:
            d = self.world.device(imei)
        except KeyError:
            raise JimiError(1002, f"illegal device: {imei}") from None
        if (d.platform != PLATFORM or not self.world.is_activated(d, self.now())
                or not self._in_scope(d.account_id, under or call.account or "")):
            raise JimiError(1002, f"illegal device: {imei}")
        return d

    def _devices(self, call: Call, name: str, under: str | None = None) -> list[Device]:
        imeis = list(dict.fromkeys(i.strip() for i in call.params[name].split(",") if i.strip()))
        if not imeis:
            raise JimiError(1001, f"missing required parameter: {name}")
        if len(imeis) > MAX_IMEIS:
            raise JimiError(1001, f"{name}: at most {MAX_IMEIS} IMEIs per call")
        return [self._device(call, imei, under) for imei in imeis]
