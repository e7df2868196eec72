"""The visitor's widget socket: ``/ws/widget/<inbox public token>/?token=<visitor token>&cursor=<seq>``.

The Origin must be in the inbox's allowed origins (checked here: the widget runs on the customer's
site, so Django's ALLOWED_HOSTS does not apply). The visitor token is signed by us and scoped to one
inbox; it only ever reaches its own contact's stream. Client frames:
``message {body, client_id}``, ``typing {typing}``, ``read {up_to}``, ``end``, ``queue``, ``heartbeat``.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from django.conf import settings

from conversations.actions import do_mark_read, do_notify_typing
from conversations.models import ChannelKind, Inbox
from conversations.payloads import visitor_stream
from omnichannel.consumers import ReplayConsumer, db_sync_to_async, origin_in
from omnichannel.errors import ActionError
from routing.actions import queue_position

from . import actions
from .models import VisitorSession, WidgetConfig

# An open socket applies admin changes to its widget config (rate limit, uploads) within this many seconds.
CONFIG_MAX_AGE = 30.0


def origin_allowed(origins: list[str], origin: str) -> bool:
    """Whether a page of ``origin`` may use the widget: any site when the config lists no origins, else one
    of them or our own (PUBLIC_BASE_URL: the pop-up page), compared in scheme, host and port (a default port
    is the same as none)."""
    if not origins:
        return True
    return origin_in(origin, [*origins, settings.PUBLIC_BASE_URL])


class WidgetConsumer(ReplayConsumer):
    async def connect(self) -> None:
        token = self.scope["url_route"]["kwargs"]["public_token"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        headers = dict(self.scope.get("headers", []))
        origin = headers.get(b"origin", b"").decode("latin-1")
        result = await db_sync_to_async(self._authenticate)(token, query.get("token", [""])[0], origin)
        if result == 4401:
            # A stale or forged visitor token: accept only to say so (the widget starts a fresh session).
            await self.accept()
            await self.close(code=4401)
            return
        if isinstance(result, int):  # unknown chat or origin not allowed: refuse the handshake itself
            await self.close(code=result)
            return
        self.session, self.config = result
        self.config_read_at = time.monotonic()
        self.last_typing = 0.0
        await self.accept()
        stream = visitor_stream(self.session.inbox_id, self.session.contact_id)
        cursor = query.get("cursor", [""])[0]
        cursors = {stream: int(cursor)} if cursor.isascii() and cursor.isdigit() and len(cursor) <= 18 else {}
        await self.join_streams([stream], cursors)

    def _authenticate(self, public_token: str, visitor_token: str,
                      origin: str) -> tuple[VisitorSession, WidgetConfig] | int:
        inbox = Inbox.objects.filter(public_token=public_token, kind=ChannelKind.WEBCHAT, is_active=True).first()
        if inbox is None:
            return 4404
        config = actions.get_config(inbox)
        if not origin_allowed(config.origins, origin):
            return 4403
        visitor_id = actions.read_visitor_token(inbox, visitor_token)
        if visitor_id is None:
            return 4401
        session = actions.held_session(inbox, visitor_id)
        if session is None:
            return 4401
        while session.contact.merged_into_id:
            session.contact = session.contact.merged_into
        return session, config

    def _config(self) -> WidgetConfig:
        """The inbox's widget config, re-read at most every CONFIG_MAX_AGE seconds (not per message)."""
        if time.monotonic() - self.config_read_at > CONFIG_MAX_AGE:
            self.config = actions.get_config(self.session.inbox)
            self.config_read_at = time.monotonic()
        return self.config

    async def receive_json(self, content: dict, **kwargs) -> None:
        kind = content.get("type")
        if kind == "heartbeat":
            await self.send_json({"type": "heartbeat_ack"})
            return
        if kind == "typing" and content.get("typing"):
            now = time.monotonic()
            if now - self.last_typing < 1.0:
                return  # at most one "typing" a second per socket ("stopped" always goes through)
            self.last_typing = now
        handler = {"message": self._message, "typing": self._typing, "read": self._read, "end": self._end,
                   "queue": self._queue}.get(kind)
        if handler is None:
            await self.send_error(f"Unknown frame type {kind!r}")
            return
        try:
            reply = await db_sync_to_async(handler)(content)
        except ActionError as exc:
            await self.send_error(exc.message, client_id=content.get("client_id"), field=exc.field)
            return
        if reply:
            await self.send_json(reply)

    def _message(self, content: dict) -> dict:
        body = content.get("body")
        if not isinstance(body, str):
            raise ActionError("body must be text", field="body")
        client_id = content.get("client_id")
        if client_id is not None and not isinstance(client_id, str):
            raise ActionError("client_id must be a string", field="client_id")
        # The socket opens before the pre-chat form is sent: the action re-reads the answers when they changed.
        message = actions.do_visitor_message(session=self.session, body=body, client_id=client_id,
                                             config=self._config(), held_session=True)
        self.last_typing = 0.0  # typing the next message is news at once
        return {"type": "ack", "client_id": client_id, "message_id": message.id,
                "conversation_id": message.conversation_id}

    def _typing(self, content: dict) -> None:
        conversation = actions.active_conversation(self.session)
        if conversation is not None:
            do_notify_typing(conversation=conversation, who="contact", typing=bool(content.get("typing")))

    def _read(self, content: dict) -> None:
        up_to = content.get("up_to")
        if not isinstance(up_to, int) or isinstance(up_to, bool):
            raise ActionError("up_to must be a message id", field="up_to")
        conversation = actions.latest_conversation(self.session)
        if conversation is not None:
            do_mark_read(conversation=conversation, by="contact", up_to=up_to)

    def _end(self, content: dict) -> dict:
        conversation = actions.active_conversation(self.session)
        if conversation is None:
            raise ActionError("There is no open chat to end")
        actions.do_end_chat(conversation=conversation, by="visitor")
        return {"type": "ended", "conversation_id": conversation.id}

    def _queue(self, content: dict) -> dict:
        conversation = actions.active_conversation(self.session)
        position, wait = queue_position(conversation) if conversation else (None, None)
        return {"type": "queue", "position": position, "estimated_wait_seconds": wait}

    async def disconnect(self, code) -> None:
        await self.leave_streams()
