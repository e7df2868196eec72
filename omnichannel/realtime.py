"""publish(): the only way an action reaches the channel layer.

Call only from ``<app>/actions.py``. Each event is written to the replay log with the
next sequence number of its stream inside the caller's transaction (the stream row
stays locked until commit, so sequence numbers commit in order), and is sent to the
stream's group after the transaction commits.

Streams (= channel-layer groups) choose the audience, which is a security decision:
``inbox.<id>`` reaches agents who may see that inbox; ``agent.<user_id>`` one agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .models import RealtimeEvent, RealtimeStream

logger = logging.getLogger(__name__)

Event = dict[str, Any]

PRESENCE_GROUP = "presence"


def inbox_stream(inbox_id: int) -> str:
    return f"inbox.{inbox_id}"


def agent_stream(user_id: int) -> str:
    return f"agent.{user_id}"


def _next_seq(stream: str) -> int:
    """Allocate the next sequence number of `stream` in one statement; the row lock is held until commit."""
    table = RealtimeStream._meta.db_table
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" (name, last_seq) VALUES (%s, 1) '
            f'ON CONFLICT (name) DO UPDATE SET last_seq = "{table}".last_seq + 1 RETURNING last_seq',
            [stream],
        )
        return cursor.fetchone()[0]


def publish(event: Event, *, streams: Iterable[str]) -> None:
    """Record `event` on each stream and deliver it after the current transaction commits."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("publish() must be called inside the action's transaction")
    for stream in sorted(set(streams)):  # sorted: consistent lock order across actions
        seq = _next_seq(stream)
        frame = {**event, "stream": stream, "seq": seq}
        RealtimeEvent.objects.create(stream=stream, seq=seq, payload=frame)
        transaction.on_commit(lambda s=stream, f=frame: _send(s, f), robust=True)


def publish_ephemeral(event: Event, *, groups: Iterable[str]) -> None:
    """Deliver a transient event (typing, presence) with no replay; after commit if in a transaction."""
    group_list = list(groups)
    transaction.on_commit(lambda: [_send(g, event) for g in group_list], robust=True)


_local = threading.local()


def _run(coroutine_function, *args) -> None:
    """Run a channel-layer coroutine from sync code.

    In a thread an ASGI server runs sync code in (sync_to_async), the server's event loop serves it, as
    async_to_sync does. Elsewhere (Celery workers, commands) each thread keeps one event loop of its own:
    async_to_sync would make a new loop per call, and with it a new channel layer and Redis connection per
    event (about 5 ms of CPU each); a kept loop reuses them.
    """
    main_loop_pid = getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None)
    if main_loop_pid == os.getpid() and getattr(SyncToAsync.threadlocal, "main_event_loop", None) is not None:
        async_to_sync(coroutine_function)(*args)
        return
    pid, loop = getattr(_local, "loop", (None, None))
    if pid != os.getpid() or loop is None or loop.is_closed():  # a forked child never reuses its parent's loop
        loop = asyncio.new_event_loop()
        _local.loop = (os.getpid(), loop)
    loop.run_until_complete(coroutine_function(*args))


def _send(group: str, frame: Event) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        _run(layer.group_send, group, {"type": "realtime.event", "event": frame})
    except Exception:
        # The event is in the replay log; consoles fetch it on their next gap check/reconnect.
        logger.exception("channel layer send to %s failed", group)


def current_cursors(streams: Iterable[str]) -> dict[str, int]:
    """The last sequence number of each stream (0 for streams with no event yet)."""
    names = list(streams)
    found = dict(RealtimeStream.objects.filter(name__in=names).values_list("name", "last_seq"))
    return {name: found.get(name, 0) for name in names}


def events_after(stream: str, seq: int, *, limit: int = 1000) -> list[Event]:
    return list(
        RealtimeEvent.objects.filter(stream=stream, seq__gt=seq).order_by("seq").values_list("payload", flat=True)[
            :limit
        ]
    )


def oldest_retained_seq(stream: str) -> int | None:
    return RealtimeEvent.objects.filter(stream=stream).order_by("seq").values_list("seq", flat=True).first()
