"""Who may call the FOTA sandbox: the 100-per-minute limit per token and the header checks
(token, User-Agent, Accept); see SPEC.md."""

from __future__ import annotations

import hmac
import math
from collections import deque

from fleet_pipeline.sandbox.messages import Request, Response
from fleet_pipeline.sandbox.teltonika.protocol import (
    API_TOKEN,
    ApiError,
    bearer_token,
    is_acceptable_user_agent,
    message_answer,
)


class AccessControl:
    """The throttle hook and the header checks.

    A part of `TeltonikaApp` (app.py), whose constructor sets the World, knobs, clock and state read here.
    """

    def throttle(self, request: Request) -> Response | None:
        """100 accepted requests per token in any sliding minute -> 429 (see SPEC.md)."""
        method = self.vendor_method(request)
        if self.knobs.consume("force_429_next"):
            return self._too_many(method, float(self.knobs.forced_retry_after_s))
        token = bearer_token(request)
        key = f"token:{token}" if token else f"ip:{request.client_ip}"
        limit, window = self.knobs.rate_limit_calls, self.knobs.rate_limit_window_s
        with self._lock:
            t = self._rate_clock()
            stamps = self._windows.setdefault(key, deque())
            while stamps and stamps[0] <= t - window:
                stamps.popleft()
            if len(stamps) >= limit:
                wait = stamps[len(stamps) - limit] + window - t
                return self._too_many(method, wait)
            stamps.append(t)
            if len(self._windows) > 10_000:
                # Random garbage tokens must not grow the table forever in a long run.
                self._windows = {k: v for k, v in self._windows.items() if v and v[-1] > t - window}
        return None

    def _check_headers(self, request: Request) -> None:
        token = bearer_token(request)
        if token is None or not hmac.compare_digest(token.encode("utf-8"), API_TOKEN.encode("utf-8")):
            raise ApiError(401, "Unauthenticated.", {"WWW-Authenticate": "Bearer"})
        if not is_acceptable_user_agent(request.header("User-Agent")):
            raise ApiError(403, "A User-Agent header naming your company, application and "
                                 "version is required.")
        accept = request.header("Accept").lower()
        if accept and not any(kind in accept for kind in ("application/json", "*/*", "application/*")):
            raise ApiError(406, "Only application/json responses are available.")

    def _too_many(self, method: str | None, wait_s: float) -> Response:
        headers: dict[str, str] = {}
        if self.knobs.retry_after_header:
            headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
        return message_answer(429, "Too Many Attempts.", method, headers)
