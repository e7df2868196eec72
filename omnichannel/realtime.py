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
import json
import logging
import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from omnichannel import library_internals, pgtrip, queries

from .models import RealtimeEvent, RealtimeStream

logger = logging.getLogger(__name__)

Event = dict[str, Any]

PRESENCE_GROUP = "presence"


def inbox_stream(inbox_id: int) -> str:
    return f"inbox.{inbox_id}"


def agent_stream(user_id: int) -> str:
    return f"agent.{user_id}"


def _log_event(stream: str, event: Event) -> Event:
    """Allocate the stream's next sequence number and store the event under it; returns the frame.

    Raw SQL, not the ORM: both happen in one statement (queries.log_event_sql, a data-modifying CTE: one round
    trip per stream, not two); the row lock on the stream is held until commit."""
    connection = transaction.get_connection()
    with connection.cursor() as cursor:
        cursor.execute(*queries.log_event_sql(stream, json.dumps({**event, "stream": stream, "seq": 0}),
                                              timezone.now()))
        seq = cursor.fetchone()[0]
    return {**event, "stream": stream, "seq": seq}


def publish(event: Event, *, streams: Iterable[str]) -> None:
    """Record `event` on each stream and deliver it after the current transaction commits.
    The log's writes bypass the ORM: raw SQL, a data-modifying CTE per stream (_log_event)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("publish() must be called inside the action's transaction")
    pending = getattr(_local, "batch", None)
    if pending is not None:  # inside batched(): written with the others when the batch ends
        pending.extend((event, stream) for stream in sorted(set(streams)))
        return
    for stream in sorted(set(streams)):  # sorted: consistent lock order across actions
        frame = _log_event(stream, event)
        transaction.on_commit(lambda s=stream, f=frame: _send(s, f), robust=True)


def publish_many(events: Iterable[tuple[Event, str]], *, before: tuple[str, list] | None = None,
                 writes: list[tuple[str, list]] | None = None, commit: bool = False) -> None:
    """publish() for a batch of (event, stream) pairs, as a sweep makes them: per stream one sequence
    allocation and, for all, one INSERT of the log rows; all frames sent by one callback after commit.
    Each stream's events keep their order and get consecutive sequence numbers.

    `before`: (sql, params) of the caller's own statements (none returning rows) to run first, in the same round
    trip as the log (omnichannel.pgtrip). `writes`: realtime.defer's statements. `commit`: see batched().
    Raw SQL, not the ORM (_log_many)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("publish_many() must be called inside the action's transaction")
    frames = _log_many(list(events), before=before, writes=writes or [], commit=commit)
    if frames:
        transaction.on_commit(lambda: _send_many(frames), robust=True)


def batching() -> bool:
    """True inside batched() (publish() calls are being collected for the end of the block)."""
    return getattr(_local, "batch", None) is not None


def _log_many(events: list[tuple[Event, str]], *, before: tuple[str, list] | None = None,
              writes: list[tuple[str, list]] = (), commit: bool = False) -> list[tuple[str, Event]]:
    """PostgreSQL: allocate every stream's sequence numbers and store all the events in one statement (a
    data-modifying CTE); the streams' rows are upserted in sorted order (publish()'s lock order). Returns the
    frames in the order given, each stream's numbered consecutively in that order. `before`: publish_many's.
    `writes`: independent writes (realtime.defer) made part of that statement, as data-modifying WITH queries.
    `commit`: the transaction's COMMIT goes last in the same round trip (batched(commit=True))."""
    tail = [(queries.COMMIT_SQL, [])] if commit else []
    if not events:
        if before is not None or writes or tail:
            pgtrip.trip([*(pgtrip.split(*before) if before is not None else []), *writes, *tail])
        return []
    counts: dict[str, int] = {}
    for _event, stream in events:
        counts[stream] = counts.get(stream, 0) + 1
    offsets = dict.fromkeys(counts, 0)
    rows = []  # (stream, position within the stream's batch, 1-based)
    for event, stream in events:
        offsets[stream] += 1
        rows.append((stream, offsets[stream], counts[stream], json.dumps({**event, "stream": stream, "seq": 0})))
    sql, params = queries.log_many_sql(counts, rows, timezone.now(), writes)
    lead, lead_params = before if before is not None else ("", [])
    results = pgtrip.trip(pgtrip.split((f"{lead}; " if lead else "") + sql, [*lead_params, *params]) + tail)
    last = dict(results[-1 - len(tail)])  # the caller's statements' results come first, the COMMIT last
    # The first sequence number of each stream's batch: last - count + 1.
    frames = []
    for (event, stream), (_stream, pos, _n, _payload) in zip(events, rows, strict=True):
        frames.append((stream, {**event, "stream": stream, "seq": last[stream] - counts[stream] + pos}))
    return frames


@contextmanager
def batched(*, commit: bool = False) -> Iterator[None]:
    """Inside the action's transaction: publish() calls are collected and written together by
    publish_many() when the block ends (one statement, one send callback after commit).
    Nothing is written if the block raises. For an action that publishes several events and catches no
    error of a nested action (a rolled-back savepoint's events would still be written).

    `commit=True`, for an action whose outermost transaction.atomic() ends right after this block (nothing
    runs in between): when that atomic block is the connection's only one (no savepoint, no
    caller's transaction), the COMMIT goes in the same round trip as the log; Django's commit then finds the
    transaction ended (psycopg skips it) and runs the on-commit callbacks as usual."""
    if getattr(_local, "batch", None) is not None:  # already batching: the outer block writes them
        yield
        return
    _local.batch = pending = []
    _local.deferred = deferred = []
    try:
        yield
    finally:
        _local.batch = None
        _local.deferred = None
    writes = [statement for sql, params in deferred for statement in pgtrip.split(sql, params)]
    if pending or writes:
        publish_many(pending, writes=writes, commit=commit and _may_commit_here())


def _may_commit_here() -> bool:
    connection = transaction.get_connection()
    return (connection.in_atomic_block and len(connection.atomic_blocks) == 1
            and not connection.savepoint_ids and not connection.needs_rollback and connection.commit_on_exit)


def defer(sql: str, params: list) -> bool:
    """Inside batched(): send the caller's statements (INSERT, UPDATE or DELETE, none returning
    rows) with the events' log when the block ends, instead of now; False (nothing deferred) outside it. Only for
    writes that nothing in the block reads back before it ends, and that do not depend on each other: they run
    together in the log's statement (each a data-modifying WITH query: one snapshot, no order among them)."""
    deferred = getattr(_local, "deferred", None)
    if deferred is None:
        return False
    deferred.append((sql, list(params)))
    return True


def _send_many(frames: list[tuple[str, Event]]) -> None:
    """Send frames in one event loop (not one async_to_sync per frame): each group's frames in order, the
    groups side by side (their round trips to the layer overlap; order only matters within a stream)."""
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _server_loop() or _background_loop()
    if loop is not None:  # in a server's sync thread: handed to the loop's sender task, in order, as _send does
        try:
            loop.call_soon_threadsafe(_enqueue_many, layer, frames)
            return
        except RuntimeError:  # the loop closed in the meantime: send from here
            pass
    by_group: dict[str, list[Event]] = {}
    for group, frame in frames:
        by_group.setdefault(group, []).append(frame)

    async def send_group(group: str, group_frames: list[Event]) -> None:
        for frame in group_frames:
            try:
                await layer.group_send(group, {"type": "realtime.event", "event": frame})
            except Exception:
                # The event is in the replay log; consoles fetch it on their next gap check/reconnect.
                logger.exception("channel layer send to %s failed", group)

    async def send_all() -> None:
        if await library_internals.publish_pipelined(layer, frames):
            return
        if len(by_group) == 1:
            await send_group(*next(iter(by_group.items())))
        else:
            await asyncio.gather(*(send_group(group, group_frames) for group, group_frames in by_group.items()))

    _run(send_all)


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
    loop = _server_loop() or _background_loop()
    if loop is not None:
        try:
            loop.call_soon_threadsafe(_enqueue, layer, group, frame)
            return
        except RuntimeError:  # the loop closed in the meantime: send from here
            pass
    try:
        _run(layer.group_send, group, {"type": "realtime.event", "event": frame})
    except Exception:
        # The event is in the replay log; consoles fetch it on their next gap check/reconnect.
        logger.exception("channel layer send to %s failed", group)


# --- sends from an ASGI server's sync threads ------------------------------------------
#
# A consumer's (or a request's) database work runs in a sync thread of the server's event loop, and
# async_to_sync(group_send) there held that thread (which every socket of the process shares) for a
# round trip to the loop and to Redis per stream. Instead the frame is handed to one sender task per
# loop, which sends in the order the frames were handed over: the thread goes on at once, and the
# frames of a process leave in the same order as before (publish order, one at a time).

SEND_QUEUE_LIMIT = 10_000
_send_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Queue] = weakref.WeakKeyDictionary()
_senders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = weakref.WeakKeyDictionary()
_sending: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()  # in flight


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop whose sync thread we are in (asgiref's sync_to_async), else None."""
    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None or loop.is_closed() or not loop.is_running():
        return None
    return loop


# --- sends from a worker process's own sender thread ------------------------------------
#
# A Celery worker process (send_in_background(), omnichannel/celery.py) hands its after-commit frames to an event
# loop of its own in a daemon thread, whose sender task sends them in order as a server's does: the task that
# committed goes on to its next one instead of waiting for Redis. The frames are in the replay log already; a
# process that exits flushes what is queued (flush_background), and a console that missed a frame anyway gets
# it from the log at its next gap check or reconnect.

_background_state: dict[str, Any] = {"enabled": False, "pid": None, "loop": None}
_background_lock = threading.Lock()


def send_in_background(enabled: bool = True) -> None:
    """This process's after-commit sends (outside an ASGI server) go through its sender thread."""
    _background_state["enabled"] = enabled


def _background_loop() -> asyncio.AbstractEventLoop | None:
    state = _background_state
    if not state["enabled"]:
        return None
    loop = state["loop"]
    if state["pid"] == os.getpid() and loop is not None and not loop.is_closed():
        return loop
    with _background_lock:
        if state["pid"] != os.getpid() or state["loop"] is None or state["loop"].is_closed():
            loop = asyncio.new_event_loop()  # a forked child never reuses its parent's loop or thread
            threading.Thread(target=loop.run_forever, name="realtime-sender", daemon=True).start()
            state["pid"], state["loop"] = os.getpid(), loop
    return state["loop"]


def flush_background(timeout: float = 5.0) -> bool:
    """Wait (up to `timeout` seconds) until this process's sender thread has sent what it was handed; True if
    it has (or there is none)."""
    state = _background_state
    loop = state["loop"]
    if state["pid"] != os.getpid() or loop is None or loop.is_closed() or not loop.is_running():
        return True

    async def drained() -> None:
        queue = _send_queues.get(loop)
        while queue is not None and (not queue.empty() or _sending.get(loop, 0)):
            await asyncio.sleep(0.005)

    try:
        asyncio.run_coroutine_threadsafe(drained(), loop).result(timeout)
        return True
    except Exception:  # noqa: BLE001 - a timeout or a closed loop: what is left is in the replay log
        logger.warning("realtime sender: frames still queued at exit (they are in the replay log)")
        return False


def _enqueue(layer, group: str, frame: Event) -> None:
    """In the loop: queue the frame for this loop's sender task (started on first use)."""
    loop = asyncio.get_running_loop()
    queue = _send_queues.get(loop)
    if queue is None:
        queue = _send_queues[loop] = asyncio.Queue()
        _senders[loop] = loop.create_task(_sender(queue), name="realtime-sender")
    if queue.qsize() >= SEND_QUEUE_LIMIT:
        # The layer is not keeping up (Redis down?): drop, as a failed send would; the log has the event.
        logger.error("channel layer send queue full; dropped an event for %s", group)
        return
    queue.put_nowait((layer, group, frame))


def _enqueue_many(layer, frames: list[tuple[str, Event]]) -> None:
    for group, frame in frames:
        _enqueue(layer, group, frame)


SENDER_BATCH = 100


async def _sender(queue: asyncio.Queue) -> None:
    """Send queued frames in order: what has piled up goes out together (one pipeline per Redis shard on the
    pubsub layer, _publish_pipelined), else one group_send each."""
    loop = asyncio.get_running_loop()
    while True:
        batch = [await queue.get()]
        while len(batch) < SENDER_BATCH and not queue.empty():
            batch.append(queue.get_nowait())
        _sending[loop] = len(batch)
        try:
            await _send_batch(batch)
        finally:
            _sending[loop] = 0


async def _send_batch(batch: list) -> None:
    layer = batch[0][0]
    try:
        if all(item[0] is layer for item in batch) and await library_internals.publish_pipelined(
                layer, [(group, frame) for _, group, frame in batch]):
            return
    except Exception:
        logger.exception("channel layer send of %d frames failed", len(batch))
        return
    for item_layer, group, frame in batch:
        try:
            await item_layer.group_send(group, {"type": "realtime.event", "event": frame})
        except Exception:
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
