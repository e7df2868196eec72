"""The bare Django Channels relay that bench_widget measures the product against.

``/ws/relay/``: the consumer joins a group of its own (one per connection) and, for every frame it
receives, ``group_send``s it to that group; the group message comes back through the channel layer
and the consumer sends it to the socket unchanged. Nothing else: no database, no auth, no JSON
parsing. It runs with the product's settings (``omnichannel.settings``: same ``CHANNEL_LAYERS``,
so ``CHANNEL_LAYER=core|pubsub`` applies) under the same ASGI server and process count.

    daphne -b 127.0.0.1 -p 8765 bench.relay_asgi:application
"""

from __future__ import annotations

import os
import uuid

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnichannel.settings")
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class RelayConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.group = f"relay.{uuid.uuid4().hex}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None) -> None:
        await self.channel_layer.group_send(self.group, {"type": "relay.echo", "text": text_data})

    async def relay_echo(self, message: dict) -> None:
        await self.send(text_data=message["text"])

    async def disconnect(self, code) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)


application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/relay/", RelayConsumer.as_asgi())])})
