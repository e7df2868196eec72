"""The README's first command on embedded defaults: embedded PostgreSQL and Redis, web + worker + beat, demo data."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import psycopg
import pytest
import requests

from omnichannel import embedded
from tests.omnichannel.test_embedded import server_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "serve exited early:\n" + proc.stdout.read()[-4000:]
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
def var_dir():
    path = server_dir()  # not under pytest's basetemp (see server_dir)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_serve_runs_the_whole_product_on_embedded_defaults(var_dir):
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "OMNICHANNEL_TESTING", "CELERY_QUEUE", "MEDIA_ROOT")}
    env.update(DJANGO_SETTINGS_MODULE="omnichannel.settings", OMNICHANNEL_VAR_DIR=str(var_dir))
    proc = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{base}/healthz", proc, timeout=120)  # initdb, migrations and demo data first
        pgdata = var_dir / "postgres"
        assert embedded.postgres_running(pgdata) and (var_dir / "redis.sock").exists()
        assert not list(var_dir.glob("db.*"))  # no database file: the server keeps its data in postgres/
        s = requests.Session()
        assert s.get(f"{base}/demo/").status_code == 200
        r = s.post(f"{base}/demo/messages/", data={"visitor": "v" * 20, "body": "Hello from the demo shop"},
                   headers={"X-CSRFToken": s.cookies["csrftoken"], "Referer": f"{base}/demo/"})
        assert r.status_code == 200, r.text
        assert r.json()["messages"][-1]["body"] == "Hello from the demo shop"
        login = s.get(f"{base}/accounts/login/")
        assert login.status_code == 200
        r = s.post(f"{base}/accounts/login/", data={"username": "alice", "password": "demo-pass-2026"},
                   headers={"X-CSRFToken": s.cookies["csrftoken"], "Referer": f"{base}/accounts/login/"})
        assert r.url.endswith("/console/") and "Hello from the demo shop" in r.text
        # The worker (through the embedded Redis broker) delivered the demo's seeded agent reply.
        db = psycopg.connect(host=str(embedded.postgres_socket_dir(pgdata)), user="postgres", dbname="omnichannel",
                             autocommit=True)
        deadline = time.time() + 30
        status = None
        while time.time() < deadline:
            status = db.execute("SELECT delivery_status FROM conversations_message WHERE direction='out' "
                                "AND kind='message' ORDER BY id LIMIT 1").fetchone()[0]
            if status == "sent":
                break
            time.sleep(0.5)
        db.close()
        assert status == "sent"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        embedded.stop_postgres(var_dir / "postgres")  # only does something when serve failed to
    assert "Agent console : http://127.0.0.1" in out and "demo-pass-2026" in out
    assert "Embedded PostgreSQL on postgres://" in out
    assert proc.returncode == 0 and not embedded.postgres_running(pgdata)  # serve stopped what it started
