"""The agent console's websocket: a fan-out pipe with replay.

Connect to ``/ws/console/?cursors=<json {stream: last_seq}>``. The server joins the
groups of every stream the agent may see, replays everything after each cursor from
the event log, then forwards live events in sequence order. A live event that skips a
number (the channel layer delivers at most once) makes the server fetch the gap from
the log first, so the console sees every event once, in order. A cursor older than the
retained log gets ``{"type": "resync"}``: the console reloads.

Client frames: ``{"type": "heartbeat"}``, ``{"type": "status", "status": "online|away|offline"}``,
``{"type": "typing", "conversation_id": N, "typing": true}``. Bad frames get
``{"type": "error", "message": …}``.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from omnichannel import realtime

from . import selectors

MAX_FRAME_BYTES = 64 * 1024


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        self.agent = await database_sync_to_async(selectors.get_agent)(user) if user else None
        if self.agent is None:
            await self.close(code=4401)
            return
        self.user = user
        self.streams = await self._load_streams()
        self.cursors: dict[str, int] = {}
        for stream in self.streams:
            await self.channel_layer.group_add(stream, self.channel_name)
        await self.channel_layer.group_add(realtime.PRESENCE_GROUP, self.channel_name)
        await self.accept()
        client = self._client_cursors()
        current = await database_sync_to_async(realtime.current_cursors)(self.streams)
        await self.send_json({"type": "hello", "streams": current})
        for stream in self.streams:
            start = client.get(stream)
            if start is None or start > current[stream]:
                self.cursors[stream] = current[stream]
            else:
                self.cursors[stream] = start
                if not await self._replay(stream, until=current[stream]):
                    return

    def _client_cursors(self) -> dict[str, int]:
        raw = parse_qs(self.scope.get("query_string", b"").decode()).get("cursors", ["{}"])[0]
        try:
            data = json.loads(raw)
        except ValueError:
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): int(v) for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}

    @database_sync_to_async
    def _load_streams(self) -> list[str]:
        return [realtime.inbox_stream(i) for i in selectors.visible_inbox_ids(self.user)]

    async def _replay(self, stream: str, *, until: int | None = None) -> bool:
        """Send logged events of `stream` after our cursor (up to `until`); False if we asked for a resync."""
        cursor = self.cursors[stream]
        while until is None or cursor < until:
            events = await database_sync_to_async(realtime.events_after)(stream, cursor, limit=500)
            if not events:
                break
            if events[0]["seq"] != cursor + 1:
                await self.send_json({"type": "resync", "stream": stream})
                await self.close(code=4409)
                return False
            for frame in events:
                if until is not None and frame["seq"] > until:
                    break
                await self.send_json(frame)
                cursor = frame["seq"]
            self.cursors[stream] = cursor
            if len(events) < 500:
                break
        return True

    async def realtime_event(self, message: dict) -> None:
        frame = message["event"]
        stream, seq = frame.get("stream"), frame.get("seq")
        if stream is None:  # ephemeral (typing, presence)
            await self.send_json(frame)
            return
        cursor = self.cursors.get(stream)
        if cursor is None or seq <= cursor:
            return  # not ours, or already sent during replay
        if seq > cursor + 1:
            await self._replay(stream, until=seq - 1)
        await self.send_json(frame)
        self.cursors[stream] = seq

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        if text_data is None or len(text_data) > MAX_FRAME_BYTES:
            await self.send_json({"type": "error", "message": "Frames must be JSON text under 64 KB"})
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_json({"type": "error", "message": "Frame is not valid JSON"})
            return
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "message": "Frame must be a JSON object"})
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict, **kwargs) -> None:
        kind = content.get("type")
        if kind == "heartbeat":
            await database_sync_to_async(self._heartbeat)()
            await self.send_json({"type": "heartbeat_ack"})
        elif kind == "status":
            error = await database_sync_to_async(self._set_status)(content.get("status"))
            if error:
                await self.send_json({"type": "error", "message": error})
        elif kind == "typing":
            error = await database_sync_to_async(self._typing)(content.get("conversation_id"),
                                                                bool(content.get("typing")))
            if error:
                await self.send_json({"type": "error", "message": error})
        else:
            await self.send_json({"type": "error", "message": f"Unknown frame type {kind!r}"})

    def _heartbeat(self) -> None:
        from routing.actions import do_touch_presence

        if self.agent.pk:
            do_touch_presence(agent=self.agent)

    def _set_status(self, status) -> str | None:
        from routing.actions import do_set_agent_status
        from routing.models import AgentProfile

        if status not in AgentProfile.Status.values:
            return "status must be online, away or offline"
        if self.agent.pk:
            do_set_agent_status(agent=self.agent, status=status, reason="console")
        return None

    def _typing(self, conversation_id, typing: bool) -> str | None:
        from .actions import do_notify_typing

        try:
            conversation = selectors.access_conversation_by_id(self.user, conversation_id)
        except selectors.NotFound:
            return "Conversation not found"
        do_notify_typing(conversation=conversation, who="agent", typing=typing, actor=self.user)
        return None

    async def disconnect(self, code) -> None:
        for stream in getattr(self, "streams", []):
            await self.channel_layer.group_discard(stream, self.channel_name)
        if getattr(self, "agent", None) is not None:
            await self.channel_layer.group_discard(realtime.PRESENCE_GROUP, self.channel_name)
