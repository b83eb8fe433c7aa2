"""The serving copy published to Postgres (FLEET_SERVING_POSTGRES), for many BI users at once.

The serving DuckDB file suits one machine's BI tools; a Postgres database serves dozens of users
over the network, with its own roles. Each layer of the freshly published serving file (``core``,
``marts``) is loaded into a new schema ``<layer>__incoming`` (DuckDB's Postgres scanner writes it
with binary COPY), then one Postgres transaction renames the live schemas away, renames the new
ones into their place and drops the old: a BI query sees every table of the previous publish or
every table of the new one, never a mix, and a publish that fails half-way leaves the live schemas
untouched. Renaming a schema waits for the queries still reading its tables, not the other way
round. Grants on the live schemas do not carry over to the new ones: give readers access with
``ALTER DEFAULT PRIVILEGES`` of the publishing role (docs/distributed.md).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from fleet_pipeline.ingest.warehouse import load_extensions, sql_string
from fleet_pipeline.settings import postgres_libpq, redacted_url

INCOMING, PREVIOUS = "__incoming", "__previous"
_ALIAS, _SERVED = "serving_postgres", "served"


class ServingPostgresError(RuntimeError):
    """The publish to the Postgres serving target failed (the message names the database, never a password)."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def publish_postgres(serving_db: Path, dsn: str, extension_directory: Path, extensions_from: str) -> dict[str, int]:
    """Publish every table of ``serving_db``'s schemas to the Postgres database ``dsn`` (same
    schema and table names), swapped in atomically; the rows of each ``schema.table`` published."""
    published: dict[str, int] = {}
    # An in-memory connection: Postgres attached to a read-only one would be read-only too.
    with duckdb.connect() as conn:
        conn.execute(f"ATTACH {sql_string(str(serving_db))} AS {_SERVED} (READ_ONLY)")
        load_extensions(conn, ("postgres_scanner",), extension_directory, extensions_from)
        try:
            conn.execute(f"ATTACH {sql_string(postgres_libpq(dsn))} AS {_ALIAS} (TYPE postgres)")
        except duckdb.Error as exc:
            raise ServingPostgresError(f"connecting to the Postgres serving target {redacted_url(dsn)} failed: "
                                       f"{type(exc).__name__}") from None
        layers = _tables_by_schema(conn)
        for layer, tables in layers.items():
            incoming = _quote(layer + INCOMING)
            _postgres_execute(conn, f"DROP SCHEMA IF EXISTS {incoming} CASCADE; CREATE SCHEMA {incoming}")
            for table in tables:
                conn.execute(f"CREATE TABLE {_ALIAS}.{incoming}.{_quote(table)} AS "
                             f"SELECT * FROM {_SERVED}.{_quote(layer)}.{_quote(table)}")
                published[f"{layer}.{table}"] = conn.execute(
                    f"SELECT count(*) FROM {_ALIAS}.{incoming}.{_quote(table)}").fetchone()[0]
        # One multi-statement string is one transaction in Postgres (its simple query protocol):
        # every layer swapped at once, or none.
        swap = [statement for layer in layers for statement in _swap_statements(layer)]
        if swap:
            _postgres_execute(conn, "; ".join(swap))
        conn.execute(f"DETACH {_ALIAS}")
    return published


def _tables_by_schema(conn: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    rows = conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_catalog = ? AND table_schema <> 'main' ORDER BY 1, 2", [_SERVED]).fetchall()
    found: dict[str, list[str]] = {}
    for schema, table in rows:
        found.setdefault(schema, []).append(table)
    return found


def _swap_statements(layer: str) -> list[str]:
    live, incoming, previous = _quote(layer), _quote(layer + INCOMING), _quote(layer + PREVIOUS)
    return [
        f"DROP SCHEMA IF EXISTS {previous} CASCADE",
        # The first publish has no live schema to move away.
        f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = {sql_string(layer)}) THEN "
        f"ALTER SCHEMA {live} RENAME TO {previous}; END IF; END $$",
        f"ALTER SCHEMA {incoming} RENAME TO {live}",
        f"DROP SCHEMA IF EXISTS {previous} CASCADE",
    ]


def _postgres_execute(conn: duckdb.DuckDBPyConnection, sql: str) -> None:
    conn.execute(f"CALL postgres_execute({sql_string(_ALIAS)}, {sql_string(sql)})")
    # The scanner caches the catalog it has seen; the schemas just changed under it.
    conn.execute("CALL pg_clear_cache()")
