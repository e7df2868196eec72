"""omnichannel/embedded.py: the embedded PostgreSQL and Redis of `manage.py serve` and scripts/test.sh.

One throw-away server per test module (initdb takes a couple of seconds); each test leaves it stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from omnichannel import embedded

ROOT = Path(__file__).resolve().parents[2]


def server_dir() -> Path:
    """A directory for a server's data, not under pytest's basetemp: run as root, the server runs as the
    package's own user, which must reach its data directory, and every pytest session (a concurrent run's
    too) takes other users' access to /tmp/pytest-of-<user> away again."""
    return Path(tempfile.mkdtemp(prefix="omni-embedded-"))


@pytest.fixture(scope="module")
def pgdata():
    base = server_dir()
    yield base / "pg"
    embedded.stop_postgres(base / "pg")
    shutil.rmtree(base, ignore_errors=True)


def _query(url: str, sql: str):
    with psycopg.connect(**_conninfo(url), autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def _conninfo(url: str) -> dict:
    import dj_database_url

    db = dj_database_url.parse(url)
    return {"host": db["HOST"], "user": db["USER"], "dbname": db["NAME"]}


def test_start_is_idempotent_and_stop_stops(pgdata):
    url = embedded.start_postgres(pgdata, "omni_embedded")
    assert url == embedded.postgres_url(pgdata, "omni_embedded")
    assert _conninfo(url)["host"] == str(embedded.postgres_socket_dir(pgdata))
    pid = embedded._live_postmaster(pgdata).pid
    assert _query(url, "SHOW max_connections") == embedded.SERVER_OPTIONS["max_connections"]
    assert _query(url, "SELECT current_database()") == "omni_embedded"
    # A second start (another process, as every `serve` child and the test script do) reuses the server.
    r = subprocess.run([sys.executable, "-m", "omnichannel.embedded", "start", "--postgres", str(pgdata),
                        "--database", "omni_embedded"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"export DATABASE_URL={url}"
    assert embedded._live_postmaster(pgdata).pid == pid
    # The extensions the migrations create ship with the package.
    with psycopg.connect(**_conninfo(url), autocommit=True) as conn:
        for extension in ("pg_trgm", "btree_gin"):
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {extension}")

    assert embedded.stop_postgres(pgdata) is True
    assert not embedded.postgres_running(pgdata) and not psutil.pid_exists(pid)
    assert embedded.stop_postgres(pgdata) is False
    # ...and it starts again on the same data, with its database still there.
    assert embedded.start_postgres(pgdata, "omni_embedded") == url
    assert _query(url, "SELECT count(*) FROM pg_database WHERE datname = 'omni_embedded'") == 1
    embedded.stop_postgres(pgdata)


def test_a_killed_servers_leftovers_do_not_stop_the_next_start(pgdata):
    url = embedded.start_postgres(pgdata, "omni_embedded")
    postmaster = embedded._live_postmaster(pgdata)
    children = postmaster.children()
    for proc in [postmaster, *children]:
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs([postmaster, *children], timeout=10)
    assert (pgdata / "postmaster.pid").exists()  # stale, and so is the socket's lock file
    assert not embedded.postgres_running(pgdata)

    assert embedded.start_postgres(pgdata, "omni_embedded") == url
    assert _query(url, "SELECT 1") == 1
    embedded.stop_postgres(pgdata)


def test_embedded_redis_is_reused_stopped_and_survives_a_stale_socket(tmp_path):
    sock = tmp_path / "r.sock"
    assert embedded.start_redis(sock, tmp_path, daemonize=True, save="") is None  # daemonized: no child to keep
    try:
        client = redis.Redis(unix_socket_path=str(sock))
        client.set("k", "v")
        pid = client.info("server")["process_id"]
        assert embedded.start_redis(sock, tmp_path, daemonize=True, save="") is None
        assert redis.Redis(unix_socket_path=str(sock)).info("server")["process_id"] == pid  # reused
        assert embedded.stop_redis(sock) is True
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert embedded.stop_redis(sock) is False

        os.mkfifo(sock)  # something left at the socket's path that nobody answers on
        proc = embedded.start_redis(sock, tmp_path)  # serve's way: a child process
        assert proc is not None and embedded.redis_running(sock)
        proc.terminate()
        proc.wait(10)
    finally:
        embedded.stop_redis(sock)
