"""Postgres and Redis as plain processes on loopback, for ``fleet-pipeline cluster up`` and the tests.

No Docker engine here (docs/distributed.md): the services are Debian's binaries (``make services``
installs them) started by their own tools, each with its data and its log in one folder. Postgres
refuses to run as root; started by root, it runs as the ``postgres`` user its package creates, and
its folder must be reachable by that user (a path of world-readable folders, not /root or a
pytest tmp dir). A missing binary is an error naming ``make services``, never a reason to skip:
a test of the distributed mode that silently does not run proves nothing.

:func:`throwaway_postgres` and :func:`throwaway_redis` start servers for one test module or one
benchmark, in a temporary folder removed afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# Where Debian's packages put the Postgres server tools (besides PATH).
POSTGRES_BIN_DIRS = ("/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
POSTGRES_RUN_AS = "postgres"
POSTGRES_USER = "fleet"
# The cluster's webserver, daemon, run workers and steps, and every lake connection (catalog reads
# and each table's write turn) hold sessions: Postgres's default of 100 is reached under load.
POSTGRES_MAX_CONNECTIONS = 200


class ServiceError(RuntimeError):
    """A service binary is missing or a service did not start; the message says what to do."""


def find_binary(name: str, extra_dirs: tuple[str, ...] = ()) -> str:
    """The path of ``name`` on PATH or in ``extra_dirs``, else a ServiceError naming `make services`."""
    found = shutil.which(name) or next((str(Path(d, name)) for d in extra_dirs if Path(d, name).is_file()), None)
    if found is None:
        raise ServiceError(f"{name} is not installed (looked on PATH and in {', '.join(extra_dirs) or 'nothing else'}): "
                           "run `make services` (Debian's postgresql and redis-server packages)")
    return found


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, what: str, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    hint = f"; its log: {log}" if log else ""
    raise ServiceError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s{hint}")


def _as_service_user() -> list[str]:
    """The command prefix that runs a Postgres tool as a user other than root (none when not root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(POSTGRES_RUN_AS)
    except KeyError:
        raise ServiceError(f"running as root and there is no {POSTGRES_RUN_AS!r} user to run Postgres as: "
                           "run `make services` (Debian's postgresql package creates it)") from None
    return [find_binary("runuser", ("/usr/sbin", "/sbin")), "-u", POSTGRES_RUN_AS, "--"]


@dataclass
class Postgres:
    """One Postgres cluster in ``folder`` (data, socket, log), listening on 127.0.0.1:``port``."""

    folder: Path
    port: int
    # Extra server settings (``name=value``), e.g. ``fsync=off`` for a server thrown away afterwards.
    server_settings: tuple[str, ...] = field(default=())

    @property
    def data(self) -> Path:
        return self.folder / "pgdata"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def url(self, database: str, driver: str = "psycopg2") -> str:
        """A connection URL; ``driver`` named for SQLAlchemy (``postgresql+psycopg2://``), or ``""``."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{POSTGRES_USER}@127.0.0.1:{self.port}/{database}"

    def _tool(self, name: str) -> list[str]:
        return [*_as_service_user(), find_binary(name, POSTGRES_BIN_DIRS)]

    def start(self, timeout_s: float = 60) -> None:
        """initdb on first use (trust on loopback: the cluster is for this machine alone), then start."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(POSTGRES_RUN_AS)
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.folder.chmod(0o755)
            reach = subprocess.run([*_as_service_user(), "test", "-w", str(self.folder)], capture_output=True)
            if reach.returncode != 0:
                raise ServiceError(f"Postgres runs as the {POSTGRES_RUN_AS!r} user (it refuses root), who cannot "
                                   f"reach {self.folder}: a folder above it is private (e.g. under /root). "
                                   "Set FLEET_DATA_DIR to a folder other users can traverse")
        if not (self.data / "PG_VERSION").exists():
            self._run([*self._tool("initdb"), "-D", str(self.data), "-U", POSTGRES_USER, "--auth=trust",
                       "-E", "UTF8", "--locale=C", "--no-instructions"], "initdb")
        options = " ".join([f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
                            f"-c max_connections={POSTGRES_MAX_CONNECTIONS}",
                            *(f"-c {setting}" for setting in self.server_settings)])
        self._run([*self._tool("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w",
                   "-t", str(int(timeout_s)), "start"], "pg_ctl start")

    def create_database(self, name: str) -> str:
        """Create ``name`` unless it exists; its ``postgresql://`` URL (libpq's form, no driver)."""
        import psycopg2

        conn = psycopg2.connect(self.url("postgres", driver=""))
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cursor:
                cursor.execute("select 1 from pg_database where datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f'create database "{name}"')
        finally:
            conn.close()
        return self.url(name, driver="")

    def stop(self) -> None:
        """A fast shutdown (open sessions are ended); nothing when it is not running."""
        if (self.data / "postmaster.pid").exists():
            self._run([*self._tool("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], "pg_ctl stop")

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _run(self, command: list[str], what: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.folder)
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise ServiceError(f"Postgres {what} failed (exit {done.returncode}): " + " | ".join(output)
                               + f"; the server log is {self.log}")


@dataclass
class Redis:
    """One Redis server with its folder (dump, log, pid file), listening on 127.0.0.1:``port``."""

    folder: Path
    port: int

    @property
    def log(self) -> Path:
        return self.folder / "redis.log"

    @property
    def pid_file(self) -> Path:
        return self.folder / "redis.pid"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout_s: float = 30) -> None:
        """Start it daemonized (its own pid file); nothing saved to disk between restarts is needed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        server = find_binary("redis-server", ("/usr/bin", "/usr/local/bin"))
        done = subprocess.run([server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                               "--daemonize", "yes", "--pidfile", str(self.pid_file), "--logfile", str(self.log),
                               "--save", "", "--appendonly", "no"], capture_output=True, text=True)
        if done.returncode != 0:
            raise ServiceError(f"redis-server failed to start (exit {done.returncode}): {done.stderr.strip()}")
        wait_for_port(self.port, "redis-server", timeout_s, self.log)

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout_s: float = 15) -> None:
        pid = self.pid()
        if pid is not None:
            stop_process(pid, timeout_s)
        self.pid_file.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stop_process(pid: int, timeout_s: float = 15, group: bool = False) -> None:
    """SIGTERM ``pid`` (its process group with ``group``), then SIGKILL if it outlives ``timeout_s``."""
    send = os.killpg if group else os.kill
    try:
        send(pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not (_group_alive(pid) if group else process_alive(pid)):
            return
        time.sleep(0.2)
    try:
        send(pid, 9)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit if it is this process's child: until then it stays a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs: its exited members (zombies not yet collected
    by their parent) do not count, or a stop would wait its whole timeout for nothing."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return bool(live_group_members(pgid))


def live_group_members(pgid: int) -> list[int]:
    """The pids of process group ``pgid`` that have not exited (zombies not yet collected excluded)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@contextmanager
def _throwaway_folder(prefix: str) -> Iterator[Path]:
    # Under /tmp, not a pytest folder: Postgres started by root runs as the postgres user, and
    # pytest's folders are private to their owner.
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def throwaway_postgres(prefix: str = "fleet-postgres-") -> Iterator[Postgres]:
    """A new Postgres on a free loopback port in a temporary folder, without fsync (its data is
    thrown away with the folder when the block ends); ``create_database`` gives each user its own."""
    with _throwaway_folder(prefix) as folder:
        server = Postgres(folder / "postgres", free_port(), server_settings=("fsync=off",))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def throwaway_redis(prefix: str = "fleet-redis-") -> Iterator[Redis]:
    """A new Redis (no persistence) on a free loopback port in a temporary folder, stopped at the end."""
    with _throwaway_folder(prefix) as folder:
        server = Redis(folder, free_port())
        server.start()
        try:
            yield server
        finally:
            server.stop()
