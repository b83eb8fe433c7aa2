"""The Telesto protocol: the API key, paths, and the error body of each error type (see SPEC.md)."""

from __future__ import annotations

from fleet_pipeline.sandbox.messages import Response

API_KEY = "sandbox-telesto-key"
CREDENTIALS = {"api_key": API_KEY}
API_PREFIX = "/v2"
PRODUCTS_PATH = "/v2/products"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


# type -> (HTTP status, description); wording of the vendor doc's error table.
ERRORS: dict[str, tuple[int, str]] = {
    "UNAUTHORIZED": (401, "Clé API manquante ou invalide"),
    "FORBIDDEN": (403, "Abonnement Pro requis"),
    "NOT_FOUND": (404, "Ressource non trouvée"),
    "TOO_MANY_REQUESTS": (429, "Limite de débit dépassée (attendre 15 min)"),
    "SERVER_ERROR": (500, "Erreur interne, réessayez plus tard"),
}


def error_answer(kind: str, method: str | None, *, headers: dict[str, str] | None = None) -> Response:
    status, description = ERRORS[kind]
    payload = {"statusCode": status, "error": {"type": kind, "description": description}}
    return Response.json(payload, status, vendor_method=method, vendor_code=kind, headers=headers)
