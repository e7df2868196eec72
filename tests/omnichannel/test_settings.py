"""Settings come from the environment and fail loudly on bad values."""

import os
import subprocess
import sys

import pytest


def _load(**env):
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    clean.update(env)
    return subprocess.run([sys.executable, "-c", "import omnichannel.settings as s; print(s.DATABASES['default']"
                           "['ENGINE'], s.REDIS_URL, s.CELERY_BROKER_URL)"],
                          env=clean, capture_output=True, text=True, cwd=os.getcwd())


@pytest.mark.parametrize("env,needle", [
    ({"DEBUG": "maybe"}, "DEBUG"),
    ({"DATABASE_URL": "nosuchdb://x"}, "DATABASE_URL"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ({"PUBLIC_BASE_URL": "example.com"}, "PUBLIC_BASE_URL"),
    ({"PRESENCE_TIMEOUT_SECONDS": "soon"}, "PRESENCE_TIMEOUT_SECONDS"),
    ({"DATABASE_URL": "postgres://u@h/db", "OMNICHANNEL_TESTING": "False"}, "SECRET_KEY"),
])
def test_bad_values_fail_loudly(env, needle):
    r = _load(**env)
    assert r.returncode != 0 and "ImproperlyConfigured" in r.stderr and needle in r.stderr


def test_embedded_defaults():
    r = _load(OMNICHANNEL_TESTING="False")
    assert r.returncode == 0, r.stderr
    engine, redis_url, broker = r.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert redis_url.startswith("unix://") and broker.startswith("redis+socket://")


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
