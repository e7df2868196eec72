"""Settings for the test suite: production settings on real PostgreSQL and Redis.

Environment defaults are applied before omnichannel.settings reads them, so a bare
`pytest` uses the same servers as scripts/test.sh: the embedded ones under var/ (which
scripts/test.sh starts and stops; `python -m omnichannel.embedded start --postgres
var/test-postgres --redis var/test-redis.sock --test` starts them by hand), unless
DATABASE_URL / REDIS_URL name others.
"""

import os
from pathlib import Path

from omnichannel import embedded

_VAR = Path(os.getenv("OMNICHANNEL_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
os.environ.setdefault("DATABASE_URL", embedded.postgres_url(_VAR / "test-postgres", "omnichannel"))
os.environ.setdefault("REDIS_URL", f"unix://{_VAR / 'test-redis.sock'}")
os.environ.setdefault("OMNICHANNEL_TESTING", "True")
os.environ.setdefault("CELERY_QUEUE", "omnichannel-test")
os.environ.setdefault("CHANNEL_LAYER_PREFIX", "omnitest")
os.environ.setdefault("CACHE_PREFIX", "omnitest")
os.environ.setdefault("OUTBOUND_WEBHOOK_ALLOWED_PRIVATE_HOSTS", "127.0.0.1,localhost")
os.environ.setdefault("MEDIA_ROOT", "/tmp/omnichannel-test-media")

from omnichannel.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_CLASSES": []}  # noqa: F405
