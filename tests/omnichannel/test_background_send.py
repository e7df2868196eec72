"""A worker process's after-commit frames go through its own sender thread (realtime.send_in_background): the
action returns without waiting for Redis, the frames arrive in order through the real channel layer, and
flush_background() waits for what is queued."""

from __future__ import annotations

import asyncio
import threading

import pytest
from channels.layers import get_channel_layer
from django.db import transaction

from omnichannel import realtime

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def background():
    realtime.send_in_background()
    yield
    realtime.flush_background()
    realtime.send_in_background(False)


def test_frames_leave_from_the_sender_thread_in_order(background):
    layer = get_channel_layer()
    group = "test.background.send"
    received: list[dict] = []
    threads: set[str] = set()
    ready = threading.Event()

    original = realtime._send_batch

    async def spy(batch):
        threads.add(threading.current_thread().name)
        await original(batch)

    async def listen() -> None:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        ready.set()
        try:
            while len(received) < 20:
                message = await asyncio.wait_for(layer.receive(channel), 10)
                received.append(message["event"])
        finally:
            await layer.group_discard(group, channel)

    listener = threading.Thread(target=lambda: asyncio.run(listen()))
    listener.start()
    assert ready.wait(10)
    realtime._send_batch = spy
    try:
        for n in range(4):
            with transaction.atomic():
                realtime.publish_many([({"type": "test", "n": n * 5 + i}, group) for i in range(5)])
        assert realtime.flush_background()
    finally:
        realtime._send_batch = original
    listener.join(15)
    assert [frame["n"] for frame in received] == list(range(20))
    assert [frame["seq"] for frame in received] == list(range(1, 21))
    assert threads == {"realtime-sender"}


def test_flush_with_nothing_sent_returns_at_once(background):
    assert realtime.flush_background(timeout=0.5)


def test_off_by_default_outside_workers():
    assert realtime._background_loop() is None
