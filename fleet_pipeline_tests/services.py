"""Throwaway Postgres and Redis servers on loopback, for the tests of the distributed mode.

Each server is a process of this test run, in a folder of its own (``initdb`` into a temporary
directory, Redis without persistence), listening on 127.0.0.1 at a free port, and stopped when the
``with`` block ends. Nothing here is specific to one test: the lake tests, the cluster tests and
anything else that needs a real Postgres or Redis start theirs with :func:`start_postgres` and
:func:`start_redis`.

The servers come from Debian's packages, installed by ``make services`` (which ``.ci/run`` runs
before the tests). A machine without them fails here with that instruction, never with a skip: a
test of the distributed mode that silently does not run proves nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Debian installs the server binaries outside PATH (/usr/lib/postgresql/<major>/bin); the client
# tools and `pg_config` are on it. The newest major first.
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
STARTUP_TIMEOUT_S = 60.0
MISSING = "{what} is not installed: run `make services` (installs postgresql and redis-server from Debian)"


class ServiceUnavailable(RuntimeError):
    """A server this test needs is not installed or did not start."""


def postgres_bin_dir() -> Path:
    """The folder of ``initdb``, ``pg_ctl`` and ``postgres``: Debian's, else wherever PATH has them."""
    for candidate in sorted(Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/")), key=_major, reverse=True):
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    raise ServiceUnavailable(MISSING.format(what="PostgreSQL (initdb, postgres)"))


def _major(path: Path) -> int:
    try:
        return int(path.parent.name)
    except ValueError:
        return 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_service_user() -> dict[str, object]:
    """Postgres refuses to run as root: as root, run it as the unprivileged ``postgres`` user
    Debian's package creates (or ``nobody``), owning the data folder."""
    if os.geteuid() != 0:
        return {}
    import pwd

    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": entry.pw_uid, "group": entry.pw_gid}
    raise ServiceUnavailable("running as root and no `postgres` or `nobody` user to run PostgreSQL as")


def _chown_tree(path: Path, ids: dict[str, object]) -> None:
    if not ids:
        return
    for folder in (path, *path.parents):
        # The server must be able to reach its data folder through every parent (tmp folders are 0700).
        if folder == Path("/"):
            break
        if folder.stat().st_uid == 0 and not folder.stat().st_mode & 0o001:
            folder.chmod(folder.stat().st_mode | 0o001)
    os.chown(path, ids["user"], ids["group"])


@contextmanager
def start_postgres(tmpdir: Path | str, database: str = "fleet") -> Iterator[str]:
    """A new Postgres cluster in ``tmpdir``, serving on 127.0.0.1; yields its DSN
    (``postgresql://<user>@127.0.0.1:<port>/<database>``, trust authentication on loopback only)."""
    bin_dir = postgres_bin_dir()
    root = Path(tmpdir) / "postgres"
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir(parents=True, exist_ok=True)
    ids = _as_service_user()
    _chown_tree(root, ids)
    _chown_tree(sockets, ids)
    user = "fleet"
    initdb = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "--no-sync", "-E", "UTF8",
         "--locale=C"],
        capture_output=True, text=True, check=False, **ids,
    )
    if initdb.returncode != 0:
        raise ServiceUnavailable(f"initdb into {data} failed: {initdb.stderr.strip()[-800:]}")
    port = free_port()
    log = root / "postgres.log"
    with open(log, "ab") as log_file:
        server = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={sockets}", "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, **ids,
        )
    try:
        _wait_for_port(port, server, "PostgreSQL", log)
        _create_database(bin_dir, port, user, database, log)
        yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
    finally:
        # SIGINT is Postgres' fast shutdown; SIGTERM (smart) would wait for every client to leave.
        _stop(server, signal.SIGINT)


def _create_database(bin_dir: Path, port: int, user: str, database: str, log: Path) -> None:
    createdb = bin_dir / "createdb"
    command = [str(createdb if createdb.exists() else "createdb"), "-h", "127.0.0.1", "-p", str(port),
               "-U", user, database]
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        # The port opens a moment before the server accepts connections ("starting up").
        if time.monotonic() > deadline or "starting up" not in done.stderr:
            raise ServiceUnavailable(f"createdb {database} failed: {done.stderr.strip()} (log {log})")
        time.sleep(0.2)


def create_database(dsn: str, name: str) -> str:
    """A new database ``name`` on the server of ``dsn``; its DSN (tests keep their state apart so)."""
    import psycopg2

    admin = psycopg2.connect(dsn)
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    return dsn.rsplit("/", 1)[0] + "/" + name


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise ServiceUnavailable(MISSING.format(what="Redis (redis-server)"))
    return found


@contextmanager
def start_redis(tmpdir: Path | str) -> Iterator[str]:
    """A Redis server on 127.0.0.1 without persistence, its files in ``tmpdir``; yields its URL
    (``redis://127.0.0.1:<port>/0``)."""
    binary = redis_server_binary()
    root = Path(tmpdir) / "redis"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = root / "redis.log"
    with open(log, "ab") as log_file:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root), "--save", "",
             "--appendonly", "no", "--protected-mode", "yes"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _wait_for_port(port, server, "Redis", log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(server)


def _wait_for_port(port: int, server: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ServiceUnavailable(f"{what} exited with {server.returncode} at start: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    _stop(server)
    raise ServiceUnavailable(f"{what} did not listen on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S:.0f} s: "
                             f"{_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace").strip()[-800:]
    except OSError:
        return "(no log)"


def _stop(server: subprocess.Popen, how: signal.Signals = signal.SIGTERM) -> None:
    if server.poll() is not None:
        return
    server.send_signal(how)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
