"""Tracksolid's push wire format (docs/vendor-apis/tracksolid-pro.md section 10, FIELD-NOTES.md).

Jimi POSTs ``token`` + ``data_list`` to ``{YourURL}/<push path>``, form-encoded (``data_list`` a
JSON string) or as JSON (``data_list`` a JSON array, or a string holding one). Some push types
send a bare object without ``data_list``; ``pushInstructResponse`` sends one object in it beside
``msgType``. The receiver decodes with `decode_envelope`; the sandbox pusher encodes with
`encode_form` / `encode_json`, so both sides read the same rules from one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

# Every documented push path (sections 10.1 to 10.22), spelled as the vendor document spells them.
PUSH_PATHS = (
    "/pushevent", "/pushhb", "/pushgps", "/pushalarm", "/rfid", "/wgtc", "/pushoil", "/pushfileupload",
    "/pushtem", "/pushlbs", "/pushresourcelist", "/pushftpfileupload", "/pushIothubEvent",
    "/pushPassThroughData", "/pushTerminalTransInfo", "/pushInstructResponse", "/pushFileContent",
    "/pushextendedkks", "/uploadCallback", "/pushobd", "/pushfaultinfo", "/pushtripreport",
)
MAX_ITEMS_PER_PUSH = 50  # the vendor's own batch limit; the receiver bounds requests by body size
ACK = {"code": 0, "msg": "success"}
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


class MalformedPush(ValueError):
    """The body cannot be read as a push envelope at all (no item of it can be trusted)."""


@dataclass(frozen=True)
class Envelope:
    """A decoded push body: its token, its raw items (not yet checked one by one), extra fields."""

    token: str | None
    items: list[Any]
    # Fields beside token and data_list (pushInstructResponse's msgType): copied into each item.
    extra: dict[str, Any]

    @property
    def is_probe(self) -> bool:
        """An empty body, or one without data: what the dashboard's "verify" button sends."""
        return not self.items


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MalformedPush(f"{what} is not valid JSON ({exc.msg} at character {exc.pos})") from None


def _fields(body: bytes, content_type: str) -> dict[str, Any]:
    text = body.decode("utf-8", errors="strict") if body else ""
    if not text.strip():
        return {}
    if content_type.split(";")[0].strip().lower() == JSON or text.lstrip().startswith("{"):
        fields = _json(text, "the JSON body")
        if not isinstance(fields, dict):
            raise MalformedPush(f"the JSON body is of type {type(fields).__name__}, expected an object")
        return fields
    # Not strict: a stray "&" (the dashboard's odd test bodies) must not cost a push.
    fields: dict[str, Any] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        if name in fields:
            raise MalformedPush(f"form field {name!r} appears more than once")
        fields[name] = value
    return fields


def decode_envelope(body: bytes, content_type: str) -> Envelope:
    """The envelope of a push body, form-encoded or JSON; MalformedPush says what is wrong."""
    try:
        fields = _fields(body, content_type)
    except UnicodeDecodeError as exc:
        raise MalformedPush(f"the body is not UTF-8 (byte {exc.start})") from None
    token = fields.pop("token", None)
    if token is not None and not isinstance(token, str):
        token = str(token)
    if "data_list" not in fields:
        # A bare object: the remaining fields are the one item (an empty body is a probe).
        return Envelope(token=token, items=[fields] if fields else [], extra={})
    data_list = fields.pop("data_list")
    if isinstance(data_list, str):
        data_list = _json(data_list, "data_list") if data_list.strip() else []
    if isinstance(data_list, dict):
        data_list = [data_list]
    if not isinstance(data_list, list):
        raise MalformedPush(f"data_list is of type {type(data_list).__name__}, expected a JSON array of objects")
    return Envelope(token=token, items=data_list, extra=fields)


def item_problem(item: Any) -> str | None:
    """Why one item of data_list cannot be landed, or None: anything but a non-empty object."""
    if not isinstance(item, dict):
        return f"of type {type(item).__name__}, expected a JSON object"
    if not item:
        return "an empty object"
    return None


def encode_form(token: str, items: Sequence[Mapping[str, Any]]) -> bytes:
    """The documented encoding: form fields token and data_list (a JSON array as a string)."""
    return urlencode({"token": token, "data_list": json.dumps(list(items), separators=(",", ":"))}).encode()


def encode_json(token: str, items: Sequence[Mapping[str, Any]]) -> bytes:
    """The JSON variant of the samples: data_list a JSON array."""
    return json.dumps({"token": token, "data_list": list(items)}, separators=(",", ":")).encode()
