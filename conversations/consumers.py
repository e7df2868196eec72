"""The agent console's websocket: a fan-out pipe with replay (see omnichannel.consumers).

Connect to ``/ws/console/?cursors=<json {stream: last_seq}>``. The agent joins the stream of
every inbox it may see. Client frames: ``{"type": "heartbeat"}``, ``{"type": "status", "status":
"online|away|offline"}``, ``{"type": "typing", "conversation_id": N, "typing": true}``,
``{"type": "read", "conversation_id": N, "up_to": message_id}``. Bad frames get
``{"type": "error", "message": …}``.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from django.contrib.auth import get_user_model

from agents.actions import do_set_agent_status, do_touch_presence
from agents.models import AgentProfile
from omnichannel import realtime
from omnichannel.consumers import ReplayConsumer, db_sync_to_async, parse_cursors

from . import selectors
from .actions import do_mark_read, do_notify_typing


class ConsoleConsumer(ReplayConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        self.agent = await db_sync_to_async(selectors.get_agent)(user) if user else None
        if self.agent is None:
            # Accept only to tell the console why (4401: sign in again); it then goes to the login page.
            await self.accept()
            await self.close(code=4401)
            return
        self.user = user
        streams = await self._load_streams()
        await self.channel_layer.group_add(realtime.PRESENCE_GROUP, self.channel_name)
        await self.accept()
        query = parse_qs(self.scope.get("query_string", b"").decode())
        await self.join_streams(streams, parse_cursors(query.get("cursors", ["{}"])[0]))

    @db_sync_to_async
    def _load_streams(self) -> list[str]:
        return [realtime.inbox_stream(i) for i in selectors.visible_inbox_ids(self.user)]

    async def realtime_event(self, message: dict) -> None:
        if message["event"].get("type") == "access_changed":  # routing.signals: not forwarded
            await self._recheck_access()
            return
        await super().realtime_event(message)

    async def _recheck_access(self) -> None:
        """Who may see what changed somewhere: if this agent's inboxes changed, the page resyncs."""
        streams = await db_sync_to_async(self._fresh_streams)()
        if set(streams) != set(getattr(self, "streams", streams)):
            await self.send_json({"type": "resync", "reason": "access"})
            await self.close(code=4409)

    def _fresh_streams(self) -> list[str]:
        user = get_user_model().objects.filter(pk=self.user.pk).first()
        return [realtime.inbox_stream(i) for i in selectors.visible_inbox_ids(user)] if user else []

    async def receive_json(self, content: dict, **kwargs) -> None:
        kind = content.get("type")
        if kind == "heartbeat":
            await db_sync_to_async(self._heartbeat)()
            await self.send_json({"type": "heartbeat_ack"})
            return
        handler = {"status": self._set_status, "typing": self._typing, "read": self._read}.get(kind)
        if handler is None:
            await self.send_error(f"Unknown frame type {kind!r}")
            return
        error = await db_sync_to_async(handler)(content)
        if error:
            await self.send_error(error)

    def _heartbeat(self) -> None:
        if self.agent.pk:
            do_touch_presence(agent=self.agent)

    def _set_status(self, content: dict) -> str | None:
        status = content.get("status")
        if status not in AgentProfile.Status.values:
            return "status must be online, away or offline"
        if self.agent.pk:
            do_set_agent_status(agent=self.agent, status=status, reason="console")
        return None

    def _conversation(self, content: dict):
        try:
            return selectors.access_conversation_by_id(self.user, content.get("conversation_id"))
        except selectors.NotFound:
            return None

    def _typing(self, content: dict) -> str | None:
        conversation = self._conversation(content)
        if conversation is None:
            return "Conversation not found"
        do_notify_typing(conversation=conversation, who="agent", typing=bool(content.get("typing")),
                         actor=self.user)
        return None

    def _read(self, content: dict) -> str | None:
        conversation = self._conversation(content)
        if conversation is None:
            return "Conversation not found"
        up_to = content.get("up_to")
        if not isinstance(up_to, int) or isinstance(up_to, bool):
            return "up_to must be a message id"
        do_mark_read(conversation=conversation, by="agent", up_to=up_to, actor=self.user)
        return None

    async def disconnect(self, code) -> None:
        await self.leave_streams()
        if getattr(self, "agent", None) is not None:
            await self.channel_layer.group_discard(realtime.PRESENCE_GROUP, self.channel_name)
