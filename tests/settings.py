"""Settings for the test suite: production settings on real PostgreSQL and Redis.

Environment defaults are applied before omnichannel.settings reads them, so a bare
`pytest` uses the same services as scripts/test.sh.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/omnichannel")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/5")
os.environ.setdefault("OMNICHANNEL_TESTING", "True")
os.environ.setdefault("CELERY_QUEUE", "omnichannel-test")
os.environ.setdefault("CHANNEL_LAYER_PREFIX", "omnitest")
os.environ.setdefault("CACHE_PREFIX", "omnitest")
os.environ.setdefault("OUTBOUND_WEBHOOK_ALLOWED_PRIVATE_HOSTS", "127.0.0.1,localhost")
os.environ.setdefault("MEDIA_ROOT", "/tmp/omnichannel-test-media")

from omnichannel.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_CLASSES": []}  # noqa: F405
