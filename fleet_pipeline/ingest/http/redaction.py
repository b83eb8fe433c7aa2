"""Secret redaction: every string that can leave the HTTP layer (exception text, log lines) is
scrubbed of the secrets a vendor client registered, in every form they travel in."""

from __future__ import annotations

import hashlib
import threading
import urllib.parse
from collections.abc import Iterable

REDACTED = "***"


class Secrets:
    """Registry of secret values and the forms they travel in, and the scrubber for any text.

    A password leaves the process as itself, as its MD5 (Tracksolid sends ``md5(password)``) and
    URL-encoded inside form bodies or query strings; all of those forms are redacted. Tokens are
    registered the moment a client receives them, so the registry grows during a run.
    """

    def __init__(self, values: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()
        # Longest first, so that a secret containing another secret is replaced whole.
        self._ordered: tuple[str, ...] = ()
        for value in values:
            self.register(value)

    def register(self, value: str | None) -> None:
        """Remember ``value`` (and its md5 / URL-encoded forms) as something never to print."""
        if value is None:
            return
        value = str(value)
        if not value:
            return
        forms = {value}
        md5 = hashlib.md5(value.encode("utf-8")).hexdigest()
        forms.update({md5, md5.upper()})
        for form in list(forms):
            forms.add(urllib.parse.quote(form, safe=""))
            forms.add(urllib.parse.quote_plus(form, safe=""))
            forms.add(urllib.parse.quote(form))
        with self._lock:
            self._forms.update(f for f in forms if f)
            self._ordered = tuple(sorted(self._forms, key=len, reverse=True))

    def __contains__(self, value: object) -> bool:
        with self._lock:
            return value in self._forms

    def redact(self, text: object) -> str:
        """Return ``text`` as a string with every registered form replaced by ``***``."""
        out = text if isinstance(text, str) else str(text)
        for form in self._ordered:
            if form in out:
                out = out.replace(form, REDACTED)
        return out
