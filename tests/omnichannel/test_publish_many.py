"""realtime.publish_many(): a batch of events gets the same log, sequence numbers and sends as publish() would."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import transaction

from omnichannel import realtime
from omnichannel.models import RealtimeEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent():
    """Frames handed to the channel layer, in order (publish's and publish_many's after-commit sends)."""
    frames: list[tuple[str, dict]] = []
    with mock.patch("omnichannel.realtime._send", lambda group, frame: frames.append((group, frame))), \
            mock.patch("omnichannel.realtime._send_many", frames.extend):
        yield frames


def test_publish_many_numbers_each_stream_in_order_after_publish(sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            realtime.publish({"n": 0}, streams=["inbox.1"])
            realtime.publish_many([({"n": 1}, "inbox.2"), ({"n": 2}, "inbox.1"), ({"n": 3}, "inbox.1"),
                                   ({"n": 4}, "inbox.2")])
            assert sent == []  # nothing is sent before commit
            realtime.publish({"n": 5}, streams=["inbox.1"])
    logged = {(e.stream, e.seq): e.payload["n"] for e in RealtimeEvent.objects.all()}
    assert logged == {("inbox.1", 1): 0, ("inbox.1", 2): 2, ("inbox.1", 3): 3, ("inbox.1", 4): 5,
                      ("inbox.2", 1): 1, ("inbox.2", 2): 4}
    assert sorted((g, f["seq"], f["n"]) for g, f in sent) == sorted(
        (stream, seq, n) for (stream, seq), n in logged.items())
    assert realtime.current_cursors(["inbox.1", "inbox.2"]) == {"inbox.1": 4, "inbox.2": 2}


@pytest.mark.django_db(transaction=True)  # no test-wide transaction around this one
def test_publish_many_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError):
        realtime.publish_many([({"n": 1}, "inbox.1")])


def test_batched_publishes_are_written_together_at_the_end_in_order(sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            realtime.publish({"n": 0}, streams=["inbox.1"])
            with realtime.batched():
                realtime.publish({"n": 1}, streams=["inbox.2", "inbox.1"])
                with realtime.batched():  # nested: the outer block writes
                    realtime.publish({"n": 2}, streams=["inbox.1"])
                assert RealtimeEvent.objects.count() == 1  # not written yet
                realtime.publish({"n": 3}, streams=["inbox.2"])
            assert RealtimeEvent.objects.count() == 5
            assert sent == []  # nothing is sent before commit
    logged = {(e.stream, e.seq): e.payload for e in RealtimeEvent.objects.all()}
    assert {k: v["n"] for k, v in logged.items()} == {("inbox.1", 1): 0, ("inbox.1", 2): 1, ("inbox.1", 3): 2,
                                                      ("inbox.2", 1): 1, ("inbox.2", 2): 3}
    assert all(v["seq"] == seq and v["stream"] == stream for (stream, seq), v in logged.items())
    assert [(g, f["seq"], f["n"]) for g, f in sent] == [
        ("inbox.1", 1, 0), ("inbox.1", 2, 1), ("inbox.2", 1, 1), ("inbox.1", 3, 2), ("inbox.2", 2, 3)]


def test_batched_writes_nothing_when_the_block_raises():
    with transaction.atomic():
        with pytest.raises(ValueError), realtime.batched():
            realtime.publish({"n": 1}, streams=["inbox.1"])
            raise ValueError
        assert not RealtimeEvent.objects.exists()
        realtime.publish({"n": 2}, streams=["inbox.1"])  # not batched any more
        assert RealtimeEvent.objects.count() == 1


async def test_frames_sent_together_reach_every_group_in_order_in_one_pipeline():
    """_send_many on the pubsub layer: one pipeline of PUBLISHes, not a group_send per frame; every frame
    arrives, in the order given."""
    import asyncio

    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer
    from channels_redis.pubsub import RedisSingleShardConnection

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("test.pipeline.a", channel)
    await layer.group_add("test.pipeline.b", channel)
    frames = [("test.pipeline.b" if i % 3 == 0 else "test.pipeline.a", {"n": i}) for i in range(20)]
    try:
        with mock.patch.object(RedisSingleShardConnection, "publish", side_effect=AssertionError("one by one")):
            await sync_to_async(realtime._send_many)(frames)
        received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in frames]
    finally:
        await layer.group_discard("test.pipeline.a", channel)
        await layer.group_discard("test.pipeline.b", channel)
    assert [m["event"] for m in received] == [frame for _, frame in frames]
    assert {m["type"] for m in received} == {"realtime.event"}
