"""Settings come from the environment and fail loudly on bad values."""

import os
import subprocess
import sys

import pytest


def _load(**env):
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    clean.update(env)
    return subprocess.run([sys.executable, "-c", "import omnichannel.settings as s; d = s.DATABASES['default']; "
                           "print(d['ENGINE'], d['HOST'], d['NAME'], s.REDIS_URL, s.CELERY_BROKER_URL)"],
                          env=clean, capture_output=True, text=True, cwd=os.getcwd())


@pytest.mark.parametrize("env,needle", [
    ({"DEBUG": "maybe"}, "DEBUG"),
    ({"DATABASE_URL": "nosuchdb://x"}, "DATABASE_URL"),
    ({"DATABASE_URL": "mysql://u@h/db"}, "PostgreSQL"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ({"PUBLIC_BASE_URL": "example.com"}, "PUBLIC_BASE_URL"),
    ({"PRESENCE_TIMEOUT_SECONDS": "soon"}, "PRESENCE_TIMEOUT_SECONDS"),
    ({"DATABASE_URL": "postgres://u@h/db", "OMNICHANNEL_TESTING": "False"}, "SECRET_KEY"),
])
def test_bad_values_fail_loudly(env, needle):
    r = _load(**env)
    assert r.returncode != 0 and "ImproperlyConfigured" in r.stderr and needle in r.stderr


def test_embedded_defaults(tmp_path):
    """Without DATABASE_URL and REDIS_URL: the embedded PostgreSQL's socket in var/postgres, database
    omnichannel (manage.py serve starts it), and the embedded Redis' socket under var/."""
    r = _load(OMNICHANNEL_TESTING="False", OMNICHANNEL_VAR_DIR=str(tmp_path))
    assert r.returncode == 0, r.stderr
    engine, host, name, redis_url, broker = r.stdout.split()
    assert (engine, host, name) == ("django.db.backends.postgresql", str(tmp_path / "postgres"), "omnichannel")
    assert redis_url == f"unix://{tmp_path / 'redis.sock'}" and broker.startswith("redis+socket://")


def test_embedded_socket_is_read_from_the_running_servers_pid_file(tmp_path):
    """The package puts the socket elsewhere when the data directory's path is too long for one; every
    process finds it in postmaster.pid (its fifth line), as the package itself does."""
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres" / "postmaster.pid").write_text(
        f"1\n{tmp_path / 'postgres'}\n0\n5432\n/run/elsewhere\n\n0 0\nready\n")
    r = _load(OMNICHANNEL_TESTING="False", OMNICHANNEL_VAR_DIR=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == "/run/elsewhere"


def test_database_url_still_points_anywhere_else(tmp_path):
    r = _load(DATABASE_URL="postgres://u:p@db.example:6543/prod", SECRET_KEY="x" * 50, OMNICHANNEL_VAR_DIR=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1:3] == ["db.example", "prod"]


@pytest.mark.parametrize("testing,frozen", [("False", True), ("True", False)])
def test_the_asgi_server_freezes_its_startup_heap(testing, frozen):
    """A server process moves what startup made (and the modules sockets load on first use) out of the garbage
    collector's full passes; a test process, which imports the module at some arbitrary point, does not."""
    env = {**os.environ, "OMNICHANNEL_TESTING": testing, "SECRET_KEY": "x" * 50, "DJANGO_SETTINGS_MODULE":
           "omnichannel.settings"}
    r = subprocess.run([sys.executable, "-c", "import gc, sys, omnichannel.asgi; "
                        "print(gc.get_freeze_count(), 'sla.tasks' in sys.modules)"],
                       env=env, capture_output=True, text=True, cwd=os.getcwd())
    assert r.returncode == 0, r.stderr
    count, imported = r.stdout.split()
    assert (int(count) > 50_000, imported == "True") == (frozen, frozen)
