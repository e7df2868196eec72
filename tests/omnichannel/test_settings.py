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
