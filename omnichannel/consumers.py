"""Shared websocket plumbing: JSON frames with clear error frames, and stream replay.

A consumer tracks a cursor (last sequence number sent) per stream. On connect it replays the
event log after the client's cursor; live events are forwarded in order, a skipped number makes
it fetch the gap from the log first (the channel layer delivers at most once), and a cursor older
than the retained log gets ``{"type": "resync"}``.

Database work goes through ``db_sync_to_async`` (below), never straight from async code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from asgiref.sync import SyncToAsync
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.db import close_old_connections, connections
from django.http.request import split_domain_port, validate_host

from . import realtime

MAX_FRAME_BYTES = 64 * 1024
REPLAY_BATCH = 500


DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """An origin as (scheme, host, port), the port made explicit (80 for http, 443 for https), so
    ``https://example.com`` and ``https://example.com:443`` are the same origin and ``:8443`` is another one.
    A path is ignored (``PUBLIC_BASE_URL`` may have one). None for anything that is not an http(s) origin:
    empty, ``null`` (an opaque origin), no host, a bad port."""
    try:
        parts = urlsplit((value or "").strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or DEFAULT_PORTS[scheme]


def origin_in(origin: str, allowed: Iterable[str]) -> bool:
    """Whether ``origin`` is one of ``allowed``: same scheme, host and port. An allowed entry
    ``https://*.example.com`` (as in Django's CSRF_TRUSTED_ORIGINS) stands for example.com and every
    subdomain, with that scheme and port."""
    candidate = parse_origin(origin)
    if candidate is None:
        return False
    scheme, host, port = candidate
    for entry in allowed:
        entry = (entry or "").strip()
        if "://*." in entry:
            wild = parse_origin(entry.replace("://*.", "://", 1))
            if wild and wild[0] == scheme and wild[2] == port and (host == wild[1] or host.endswith("." + wild[1])):
                return True
        elif parse_origin(entry) == candidate:
            return True
    return False


def socket_own_origin(scope: dict) -> str | None:
    """The origin a page must have to be ours for this socket: the socket's scheme (http for ws, https for
    wss, or the proxy's X-Forwarded-Proto behind a proxy) and its Host header, when the Host is one we
    serve (ALLOWED_HOSTS: a rebound DNS name does not make the attacker's origin ours)."""
    headers = dict(scope.get("headers") or [])
    host = headers.get(b"host", b"").decode("latin-1").strip()
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme") or "ws", scope.get("scheme"))
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        header = proxy[0].removeprefix("HTTP_").replace("_", "-").lower().encode()
        forwarded = headers.get(header, b"").decode("latin-1").split(",")[0].strip().lower()
        if forwarded:
            scheme = "https" if forwarded == proxy[1] else "http"
    return f"{scheme}://{host}"


def console_origins(scope: dict) -> list[str]:
    """The origins the console's pages are served from: the socket's own, PUBLIC_BASE_URL's and
    CSRF_TRUSTED_ORIGINS (the origins Django's CSRF check accepts for the console's forms)."""
    own = socket_own_origin(scope)
    return [*([own] if own else []), settings.PUBLIC_BASE_URL, *settings.CSRF_TRUSTED_ORIGINS]


class SameOriginWebsocket:
    """ASGI middleware for a socket authenticated by cookie (the console): the handshake's Origin must be
    one of ``console_origins`` in scheme, host and port, else the handshake is refused (403) before the
    consumer runs. A missing or opaque Origin is refused: browsers always send one. Channels'
    AllowedHostsOriginValidator compared the host alone, so a page on another port of the same host could
    open an agent's socket with her cookie (cross-site websocket hijacking)."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            origin = dict(scope.get("headers") or []).get(b"origin", b"").decode("latin-1")
            if not origin_in(origin, console_origins(scope)):
                return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


class db_sync_to_async(SyncToAsync):  # noqa: N801 - used like channels' database_sync_to_async
    """``database_sync_to_async`` for the websocket consumers, keeping the thread's connection open.

    Consumers run no ``ThreadSensitiveContext``, so every thread-sensitive call of a process runs in
    asgiref's one sync thread: one connection there serves every socket of the process, one call at a
    time. Under ``DB_CONN_MAX_AGE=0`` (the HTTP side's setting: there each request gets its own thread)
    channels' ``database_sync_to_async`` closed it after every frame and the next frame paid a fresh
    connect (7-10 ms here). This one gives that thread's connection ``WEBSOCKET_DB_CONN_MAX_AGE``
    seconds instead; it is still health-checked before use and dropped when broken or left in a bad
    state, exactly as Django's ``close_old_connections`` does between requests.
    """

    def thread_handler(self, loop, *args, **kwargs):
        _keep_thread_connections()
        close_old_connections()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            close_old_connections()


# The replay log's reads (a socket's hello cursors, replays, gap fills) get a thread of their own, so a
# console filling a gap does not queue behind every visitor message being stored in the sync thread
# (with two processes their after-commit sends race and ~2 % of a console's events arrive out of order).
REPLAY_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ws-replay")


def replay_read(func):
    return db_sync_to_async(func, thread_sensitive=False, executor=REPLAY_EXECUTOR)


def _keep_thread_connections() -> None:
    max_age = settings.WEBSOCKET_DB_CONN_MAX_AGE
    for conn in connections.all():
        own = conn.settings_dict.get("CONN_MAX_AGE")
        if own is None or own >= max_age or conn.settings_dict.get("OPTIONS", {}).get("pool"):
            continue  # a pooled connection goes back to the pool after each frame (borrowing costs ~0.1 ms)
        # This thread's wrapper only (each thread has its own): the shared settings dict stays as is.
        conn.settings_dict = {**conn.settings_dict, "CONN_MAX_AGE": max_age}
        if conn.connection is not None:
            conn.close_at = time.monotonic() + max_age


class ReplayConsumer(AsyncJsonWebsocketConsumer):
    streams: list[str]
    cursors: dict[str, int]

    async def dispatch(self, message: dict) -> None:
        """Run the handler at once. Channels' own dispatch first runs ``close_old_connections`` in the
        process's one sync thread before *every* handler, so a console's pure forwarding of
        ``realtime.event`` queued behind every visitor message being stored. Here every database call
        goes through ``db_sync_to_async``, which does that cleanup itself, in the thread that uses it."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def join_streams(self, streams: list[str], client_cursors: dict[str, int]) -> bool:
        """Join the groups, say hello with the current cursors, replay what the client missed.

        Must be called after accept(). Returns False if the client was told to resync."""
        self.streams = streams
        self.cursors = {}
        for stream in streams:
            await self.channel_layer.group_add(stream, self.channel_name)
        current = await replay_read(realtime.current_cursors)(streams)
        await self.send_json({"type": "hello", "streams": current})
        for stream in streams:
            start = client_cursors.get(stream)
            if start is None or start > current[stream]:
                self.cursors[stream] = current[stream]
            else:
                self.cursors[stream] = start
                if not await self._replay(stream, until=current[stream]):
                    return False
        return True

    async def leave_streams(self) -> None:
        for stream in getattr(self, "streams", []):
            await self.channel_layer.group_discard(stream, self.channel_name)

    async def _replay(self, stream: str, *, until: int | None = None) -> bool:
        cursor = self.cursors[stream]
        while until is None or cursor < until:
            events = await replay_read(realtime.events_after)(stream, cursor, limit=REPLAY_BATCH)
            if not events:
                break
            if events[0]["seq"] != cursor + 1:
                await self.send_json({"type": "resync", "stream": stream})
                await self.close(code=4409)
                return False
            for frame in events:
                if until is not None and frame["seq"] > until:
                    break
                await self.send_json(self.to_client(frame))
                cursor = frame["seq"]
            self.cursors[stream] = cursor
            if len(events) < REPLAY_BATCH:
                break
        return True

    def to_client(self, frame: dict) -> dict:
        return frame

    async def realtime_event(self, message: dict) -> None:
        frame = message["event"]
        stream, seq = frame.get("stream"), frame.get("seq")
        if stream is None:  # ephemeral (typing, presence)
            await self.send_json(self.to_client(frame))
            return
        cursor = self.cursors.get(stream)
        if cursor is None or seq <= cursor:
            return  # not ours, or already sent during replay
        if seq > cursor + 1 and not await self._replay(stream, until=seq - 1):
            return
        await self.send_json(self.to_client(frame))
        self.cursors[stream] = seq

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        if text_data is None or len(text_data) > MAX_FRAME_BYTES:
            await self.send_error("Frames must be JSON text under 64 KB")
            return
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            await self.send_error("Frame is not valid JSON")
            return
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_error("Frame must be a JSON object with a \"type\" string")
            return
        await self.receive_json(content)

    async def send_error(self, message: str, **extra) -> None:
        await self.send_json({"type": "error", "message": message, **extra})


def parse_cursors(raw: str) -> dict[str, int]:
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}
