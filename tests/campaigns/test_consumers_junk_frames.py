"""Junk frames on the visitor's socket get an error frame and the socket keeps working: nothing a browser
can send crashes the consumer (a crash would close the socket with 1011 and lose the visitor's next messages)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from campaigns import actions
from conversations.models import Message
from omnichannel.asgi import application

from .conftest import ORIGIN

pytestmark = [pytest.mark.django_db(transaction=True)]


def _start(chat):
    return actions.do_start_visitor_session(inbox=chat, visitor_token=None,
                                            info=actions.SessionInfo(page_url="https://shop.example/"))[1]


JUNK = [
    [1, 2, 3],
    "just a string",
    None,
    {"type": ["message"]},
    {"type": "message", "body": "nul \x00 in the client id", "client_id": "c\x00"},
    {"type": "message", "body": "long client id", "client_id": "c" * 5000},
    {"type": "message", "body": "x" * 200_000, "client_id": "big"},
    {"type": "read", "up_to": 10**30},
    {"type": "read", "up_to": -1},
    {"type": "typing", "typing": {"a": 1}},
    {"type": "end", "extra": "\x00"},
    {"type": "queue", "x": 10**30},
]


async def test_junk_frames_get_errors_and_the_socket_keeps_working(chat, world):
    token = await database_sync_to_async(_start)(chat)
    comm = WebsocketCommunicator(application, f"/ws/widget/{chat.public_token}/?token={token}",
                                 headers=[(b"origin", ORIGIN.encode())])
    ok, _ = await comm.connect(timeout=5)
    assert ok
    assert (await comm.receive_json_from(timeout=5))["type"] == "hello"
    await comm.send_json_to({"type": "message", "body": "first", "client_id": "ok-1"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "ack"
    for frame in JUNK:
        await comm.send_json_to(frame)
        await comm.send_json_to({"type": "heartbeat"})  # answered only if the socket survived the frame
        replies = []
        while not replies or replies[-1]["type"] != "heartbeat_ack":
            replies.append(await comm.receive_json_from(timeout=5))
        types = [r["type"] for r in replies]
        if not (isinstance(frame, dict) and frame.get("type") in ("typing", "read")):  # silent when accepted
            assert {"error", "ack", "ended", "queue"} & set(types), (frame, types)
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            assert "error" in types, (frame, types)
    await comm.disconnect()
    bodies = await database_sync_to_async(lambda: list(Message.objects.values_list("body", flat=True)))()
    assert "first" in bodies and not any("\x00" in b for b in bodies)


CONSOLE_JUNK = [
    [1], {"type": {"x": 1}}, {"type": "status", "status": ["online"]}, {"type": "status", "status": "\x00"},
    {"type": "typing", "conversation_id": "abc", "typing": True}, {"type": "typing", "conversation_id": 10**30},
    {"type": "read", "conversation_id": 10**30, "up_to": "x"}, {"type": "read", "conversation_id": [1]},
]


async def test_console_junk_frames_get_errors_and_the_socket_keeps_working(world):
    from tests.conversations.test_consumers import _connect, _hello

    comm, ok, _ = await _connect(world.alice)
    assert ok
    await _hello(comm)
    for frame in CONSOLE_JUNK:
        await comm.send_json_to(frame)
        await comm.send_json_to({"type": "heartbeat"})
        replies = []
        while not replies or replies[-1]["type"] != "heartbeat_ack":
            replies.append(await comm.receive_json_from(timeout=5))
        assert "error" in [r["type"] for r in replies], frame
    await comm.disconnect()


async def test_a_deeply_nested_frame_gets_an_error(chat, world):
    token = await database_sync_to_async(_start)(chat)
    comm = WebsocketCommunicator(application, f"/ws/widget/{chat.public_token}/?token={token}",
                                 headers=[(b"origin", ORIGIN.encode())])
    assert (await comm.connect(timeout=5))[0]
    assert (await comm.receive_json_from(timeout=5))["type"] == "hello"
    await comm.send_to(text_data="[" * 20000 + "]" * 20000)
    assert (await comm.receive_json_from(timeout=5))["type"] == "error"
    await comm.send_json_to({"type": "heartbeat"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "heartbeat_ack"
    await comm.disconnect()
