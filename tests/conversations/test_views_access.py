"""Open consoles follow access changes at once (routing.signals): an agent removed from a team stops
receiving its inboxes' events, an agent added to one starts, a deactivated agent's console is closed, a
supervisor sees a new inbox; presence writes do not disturb anyone."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from omnichannel.realtime import inbox_stream
from tests.conversations.test_consumers import _connect, _hello, _post

pytestmark = [pytest.mark.django_db(transaction=True)]


async def _resynced(comm) -> None:
    frame = await comm.receive_json_from(timeout=5)
    while frame["type"] == "presence":
        frame = await comm.receive_json_from(timeout=5)
    assert frame == {"type": "resync", "reason": "access"}
    assert (await comm.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4409}


async def test_removed_from_a_team_stops_receiving_at_once_and_added_starts(world):
    comm, ok, _ = await _connect(world.alice)
    assert ok and inbox_stream(world.inbox_a.id) in await _hello(comm)
    await database_sync_to_async(lambda: world.alice.agent.teams.remove(world.support))()
    await _resynced(comm)
    comm, ok, _ = await _connect(world.alice)  # the page reloads and reconnects
    assert ok and await _hello(comm) == {}
    await database_sync_to_async(_post)(world, inbox=world.inbox_a)
    assert await comm.receive_nothing(timeout=1)
    await database_sync_to_async(lambda: world.alice.agent.teams.add(world.sales))()
    await _resynced(comm)
    comm, ok, _ = await _connect(world.alice)
    assert ok and list(await _hello(comm)) == [inbox_stream(world.inbox_b.id)]
    await comm.disconnect()


async def test_deactivated_agent_is_closed_and_supervisor_sees_a_new_inbox(world):
    from conversations.models import ChannelKind, Inbox

    agent, ok, _ = await _connect(world.alice)
    await _hello(agent)
    boss, ok, _ = await _connect(world.bob)
    await _hello(boss)

    def deactivate():
        world.alice.is_active = False
        world.alice.save()

    await database_sync_to_async(deactivate)()
    await _resynced(agent)
    assert await boss.receive_nothing(timeout=1)  # bob's set did not change
    await database_sync_to_async(lambda: Inbox.objects.create(name="New chat", kind=ChannelKind.WEBCHAT))()
    await _resynced(boss)


async def test_presence_changes_do_not_resync_anyone(world):
    from agents.actions import do_set_agent_status, do_touch_presence

    comm, ok, _ = await _connect(world.alice)
    await _hello(comm)

    def presence():
        do_set_agent_status(agent=world.charlie.agent, status="away")
        do_touch_presence(agent=world.charlie.agent)

    await database_sync_to_async(presence)()
    frame = await comm.receive_json_from(timeout=5)
    assert frame["type"] == "presence"
    assert await comm.receive_nothing(timeout=1)
    await comm.disconnect()
