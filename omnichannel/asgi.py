import gc
import importlib
import os

from django.apps import apps
from django.core.asgi import get_asgi_application
from django.db import connection

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnichannel.settings")
django_asgi_app = get_asgi_application()

# After django.setup() (get_asgi_application): the consumers' modules import models.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from .websocket_urls import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)


def freeze_startup_heap() -> None:
    """Move every object alive after startup (Django's apps, models, URL resolvers, modules: ~130,000
    objects) out of the cyclic garbage collector's reach. They live as long as the process anyway, and a
    full (generation 2) collection traversed all of them: 50-180 ms during which the server's event loop
    and its sync thread both stood still, every few seconds to minutes under websocket traffic
    (bench_widget's p99 was such pauses). Objects made later are collected as before."""
    _import_first_use_modules()
    gc.collect()
    gc.freeze()


def _import_first_use_modules() -> None:
    """Modules the sockets and requests import on first use (the apps' actions and tasks, the channel layer's
    backend, Redis, the connection pool): imported before the freeze, their ~10,000 objects are frozen too."""
    for app in apps.get_app_configs():
        for name in ("actions", "tasks", "consumers"):
            try:
                importlib.import_module(f"{app.name}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{app.name}.{name}":
                    raise
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND")
    if backend:
        importlib.import_module(backend.rsplit(".", 1)[0])
    for name in ("redis", "redis.asyncio"):
        importlib.import_module(name)
    if connection.settings_dict.get("OPTIONS", {}).get("pool"):
        importlib.import_module("psycopg_pool")


if not settings.TESTING:  # a test process imports this module at some arbitrary point, with test objects alive
    freeze_startup_heap()
