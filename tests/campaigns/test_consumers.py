"""The visitor's websocket over the real Redis channel layer: origins, tokens, messages both ways, replay."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from campaigns import actions
from campaigns.models import VisitorSession
from conversations.models import Message
from omnichannel.asgi import application

from .conftest import ORIGIN

pytestmark = [pytest.mark.django_db(transaction=True)]


def _start(chat):
    session, token = actions.do_start_visitor_session(inbox=chat, visitor_token=None,
                                                      info=actions.SessionInfo(page_url="https://shop.example/"))
    return session, token


async def _open(chat, token, *, origin=ORIGIN, cursor=None):
    path = f"/ws/widget/{chat.public_token}/?token={token}"
    if cursor is not None:
        path += f"&cursor={cursor}"
    comm = WebsocketCommunicator(application, path, headers=[(b"origin", origin.encode())])
    connected, code = await comm.connect(timeout=5)
    return comm, connected, code


async def _hello(comm):
    frame = await comm.receive_json_from(timeout=5)
    assert frame["type"] == "hello"
    return frame


async def test_origin_and_token_are_enforced(chat):
    _, token = await database_sync_to_async(_start)(chat)
    comm, ok, code = await _open(chat, token, origin="https://evil.example")
    assert not ok and code == 4403
    for bad in (token[:-4] + "AAAA", ""):
        comm, ok, _ = await _open(chat, bad)
        assert ok  # accepted only to be told why, then closed: nothing else is sent
        assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    comm = WebsocketCommunicator(application, f"/ws/widget/nope/?token={token}", headers=[(b"origin", ORIGIN.encode())])
    ok, code = await comm.connect()
    assert not ok and code == 4404


async def test_visitor_and_agent_talk_both_ways(chat, world):
    from conversations.actions import do_add_note, do_send_agent_reply

    session, token = await database_sync_to_async(_start)(chat)
    comm, ok, _ = await _open(chat, token)
    assert ok
    await _hello(comm)
    await comm.send_json_to({"type": "message", "body": "Hi 👋 <b>x</b>", "client_id": "c-1"})
    frames = {f["type"]: f for f in [await comm.receive_json_from(timeout=5) for _ in range(2)]}
    echo, ack = frames["message"], frames["ack"]  # the ack is direct, the echo comes through the layer
    assert echo["type"] == "message" and echo["message"]["body"] == "Hi 👋 <b>x</b>"
    assert echo["message"]["client_id"] == "c-1" and echo["message"]["from"] == "visitor"
    assert ack == {"type": "ack", "client_id": "c-1", "message_id": echo["message"]["id"],
                   "conversation_id": echo["message"]["conversation_id"]}
    # The same client_id again (a resend after reconnect) is stored once.
    await comm.send_json_to({"type": "message", "body": "Hi 👋 <b>x</b>", "client_id": "c-1"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "ack"
    assert await database_sync_to_async(Message.objects.filter(direction="in").count)() == 1

    conv = await database_sync_to_async(lambda: Message.objects.get(direction="in").conversation)()
    await database_sync_to_async(do_send_agent_reply)(actor=world.alice, conversation=conv, body="Hello Vera")
    await database_sync_to_async(do_add_note)(actor=world.alice, conversation=conv, body="internal: VIP")
    joined = await comm.receive_json_from(timeout=5)
    assert joined["message"]["from"] == "system" and "joined the chat" in joined["message"]["body"]
    card = await comm.receive_json_from(timeout=5)
    assert card["type"] == "agent" and card["agent"]["name"] == "Alice"
    reply = await comm.receive_json_from(timeout=5)
    assert reply["message"]["body"] == "Hello Vera" and reply["message"]["agent"]["name"] == "Alice"
    assert await comm.receive_nothing(timeout=0.5), "notes never reach the visitor"
    await comm.disconnect()


async def test_reconnect_replays_missed_agent_messages(chat, world):
    from conversations.actions import do_send_agent_reply

    session, token = await database_sync_to_async(_start)(chat)
    msg = await database_sync_to_async(actions.do_visitor_message)(session=session, body="hi", client_id="c-1")
    comm, ok, _ = await _open(chat, token)
    hello = await _hello(comm)
    cursor = list(hello["streams"].values())[0]
    await comm.disconnect()
    conv = await database_sync_to_async(lambda: msg.conversation)()
    for i in range(3):
        await database_sync_to_async(do_send_agent_reply)(actor=world.alice, conversation=conv, body=f"r{i}")
    comm, ok, _ = await _open(chat, token, cursor=cursor)
    await _hello(comm)
    frames = [await comm.receive_json_from(timeout=5) for _ in range(5)]
    bodies = [f["message"]["body"] for f in frames if f["type"] == "message"]
    assert bodies == ["Alice joined the chat", "r0", "r1", "r2"]
    assert [f["seq"] for f in frames] == list(range(cursor + 1, cursor + 6))
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


async def test_typing_read_receipts_and_end(chat, world):
    from conversations.actions import do_mark_read, do_notify_typing, do_send_agent_reply

    session, token = await database_sync_to_async(_start)(chat)
    msg = await database_sync_to_async(actions.do_visitor_message)(session=session, body="hi", client_id="c-1")
    conv = await database_sync_to_async(lambda: msg.conversation)()
    reply = await database_sync_to_async(do_send_agent_reply)(actor=world.alice, conversation=conv, body="yo")
    comm, ok, _ = await _open(chat, token)
    await _hello(comm)
    await database_sync_to_async(do_notify_typing)(conversation=conv, who="agent", typing=True, actor=world.alice)
    typing = await comm.receive_json_from(timeout=5)
    assert typing == {"type": "typing", "typing": True, "agent": {"name": "Alice", "avatar": ""}}
    await comm.send_json_to({"type": "read", "up_to": reply.id})
    await comm.send_json_to({"type": "heartbeat"})  # frames are handled in order: the ack means read is done
    assert (await comm.receive_json_from(timeout=5))["type"] == "heartbeat_ack"
    await database_sync_to_async(reply.refresh_from_db)()
    assert reply.delivery_status == "read"
    await database_sync_to_async(do_mark_read)(conversation=conv, by="agent", up_to=msg.id, actor=world.alice)
    read = await comm.receive_json_from(timeout=5)
    assert (read["type"], read["by"], read["up_to"]) == ("read", "agent", msg.id)
    await comm.send_json_to({"type": "queue"})
    assert (await comm.receive_json_from(timeout=5))["position"] is None
    await comm.send_json_to({"type": "end"})
    frames = [await comm.receive_json_from(timeout=5) for _ in range(3)]
    types = [f["type"] for f in frames]
    assert "status" in types and "ended" in types
    status = next(f for f in frames if f["type"] == "status")
    assert status["active"] is False
    await comm.send_json_to({"type": "end"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "error"
    await comm.disconnect()


def _queue_two_visitors(chat):
    from agents.models import AgentProfile
    from routing.actions import do_route_conversation

    AgentProfile.objects.update(status="offline")  # nobody online: both chats wait in the queue
    first, _ = _start(chat)
    a = actions.do_visitor_message(session=first, body="first", client_id="a")
    session, token = _start(chat)
    b = actions.do_visitor_message(session=session, body="second", client_id="b")
    for message in (a, b):
        assert do_route_conversation(conversation_id=message.conversation_id).outcome == "queued"
    return token


async def test_queue_position_and_bad_frames(chat, world):
    token = await database_sync_to_async(_queue_two_visitors)(chat)
    comm, ok, _ = await _open(chat, token)
    await _hello(comm)
    await comm.send_json_to({"type": "queue"})
    queue = await comm.receive_json_from(timeout=5)
    # Nobody online: the place in the queue, and no estimate (it would be a guess).
    assert queue["position"] == 2 and queue["estimated_wait_seconds"] is None
    await comm.send_to(text_data="{nope")
    assert (await comm.receive_json_from())["type"] == "error"
    await comm.send_json_to({"type": "message", "body": ["x"]})
    assert (await comm.receive_json_from())["message"] == "body must be text"
    await comm.send_json_to({"type": "message", "body": "   ", "client_id": "z"})
    err = await comm.receive_json_from()
    assert err["type"] == "error" and err["client_id"] == "z"
    await comm.send_json_to({"type": "hack"})
    assert (await comm.receive_json_from())["type"] == "error"
    await comm.disconnect()


async def test_visitor_reaches_only_their_own_conversation(chat, world):
    other, _ = await database_sync_to_async(_start)(chat)
    other_msg = await database_sync_to_async(actions.do_visitor_message)(session=other, body="private",
                                                                         client_id="o")
    session, token = await database_sync_to_async(_start)(chat)
    comm, ok, _ = await _open(chat, token, cursor=0)
    await _hello(comm)
    from conversations.actions import do_send_agent_reply

    conv = await database_sync_to_async(lambda: other_msg.conversation)()
    await database_sync_to_async(do_send_agent_reply)(actor=world.alice, conversation=conv, body="for other")
    assert await comm.receive_nothing(timeout=0.7)
    await comm.disconnect()
    assert await database_sync_to_async(VisitorSession.objects.count)() == 2


def _backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _terminate(pid: int) -> bool:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            return cursor.fetchone()[0]
    finally:
        connection.close()  # a pool thread's: it would outlive the test database


async def _ack(comm, client_id):
    for _ in range(5):
        frame = await comm.receive_json_from(timeout=5)
        if frame["type"] == "ack":
            assert frame["client_id"] == client_id
            return frame
    raise AssertionError("no ack")


async def test_socket_outlives_its_database_connection(chat):
    """The consumers keep their connection between frames; one dropped by PostgreSQL is replaced, not fatal."""
    from asgiref.sync import sync_to_async

    session, token = await database_sync_to_async(_start)(chat)
    comm, ok, _ = await _open(chat, token)
    await _hello(comm)
    await comm.send_json_to({"type": "message", "body": "before", "client_id": "k-1"})
    await _ack(comm, "k-1")
    # The consumers' sync thread (where database_sync_to_async runs too) kept its connection: drop it
    # from another thread, as a PostgreSQL restart would.
    pid = await database_sync_to_async(_backend_pid)()
    assert await sync_to_async(_terminate, thread_sensitive=False)(pid)
    await comm.send_json_to({"type": "message", "body": "after", "client_id": "k-2"})
    await _ack(comm, "k-2")
    bodies = await database_sync_to_async(lambda: list(Message.objects.order_by("id").values_list("body", flat=True)))()
    assert bodies == ["before", "after"]
    await comm.disconnect()
