"""REST API (token auth): contacts, conversations, messages, and the API channel's inbound endpoint.

Entry points stay thin: parse, access-check, call an action, serialize. Each view's ``extend_schema`` says what
it answers, so the OpenAPI schema (/api/v1/schema/) is what the views return: tests/conversations/
test_api_schema.py validates it and runs schemathesis over every operation. The error answers (400, 401, 403,
404, 429, 413, 415) and their one shape are added to every operation by omnichannel.api.ApiSchema.
"""

from __future__ import annotations

import math

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.models import Team
from omnichannel.errors import NotFound
from omnichannel.files import SAFE_INLINE_TYPES, attachment_response
from omnichannel.integrations.api import inbound as api_inbound
from omnichannel.integrations.twilio_sms import actions as sms_actions
from routing.models import RoutingDecision

from . import actions, channels, selectors
from .models import Attachment, Contact, Conversation, Message, ProactiveRequest

User = get_user_model()


# The largest id or number a column holds (bigint); a bigger one in a query or a body is bad input, not a 500.
MAX_INT = 2**63 - 1
MAX_OFFSET = 10**9


def _agent_required(request) -> None:
    if selectors.get_agent(request.user) is None:
        raise NotFound("Not found")


class ApiPagination(LimitOffsetPagination):
    """``limit`` (at most 500) and ``offset``; a negative or unreadable one is ignored (the defaults), an offset
    past any table's end is refused."""

    max_limit = 500

    def get_offset(self, request):
        offset = super().get_offset(request)
        if offset > MAX_OFFSET:
            raise ValidationError({"offset": [f"Ensure this value is less than or equal to {MAX_OFFSET}."]})
        return offset


def _paginate(view, request, qs, serializer_class) -> Response:
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(qs, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


class JsonObjectField(serializers.DictField):
    """A JSON object stored as PostgreSQL jsonb: one that jsonb cannot hold (a NUL character in a key or a string,
    a number out of range such as 1e999, nesting past 20 levels) is bad input, a 400 that names the field."""

    MAX_DEPTH = 20

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if problem := self._problem(value, 0):
            raise ValidationError(problem)
        return value

    def _problem(self, value, depth: int) -> str | None:
        if depth > self.MAX_DEPTH:
            return "Nested too deeply."
        if isinstance(value, str):
            return "NUL characters are not allowed." if "\x00" in value else None
        if isinstance(value, float) and not math.isfinite(value):
            return "A number out of range."
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in str(key):
                    return "NUL characters are not allowed."
                if problem := self._problem(item, depth + 1):
                    return problem
        if isinstance(value, list):
            for item in value:
                if problem := self._problem(item, depth + 1):
                    return problem
        return None


def _json_only(serializer) -> dict:
    """The request body a view documents: JSON (the views also read forms, but JSON is the API's format)."""
    return {"application/json": serializer}


# --- serializers --------------------------------------------------------------------


class IdentityOutput(serializers.Serializer):
    kind = serializers.CharField()
    value = serializers.CharField()


class SegmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    label = serializers.CharField()
    color = serializers.CharField()


class ContactOutput(serializers.ModelSerializer):
    identities = serializers.SerializerMethodField()
    segments = serializers.SerializerMethodField()

    class Meta:
        model = Contact
        fields = ["id", "name", "email", "phone", "country", "language", "custom_attributes", "identities",
                  "segments", "created_at"]

    @extend_schema_field(IdentityOutput(many=True))
    def get_identities(self, obj) -> list[dict]:
        return [{"kind": i.kind, "value": i.value} for i in obj.identities.all()]

    @extend_schema_field(SegmentOutput(many=True))
    def get_segments(self, obj) -> list[dict]:
        return [{"id": s.id, "name": s.name, "label": s.label, "color": s.color} for s in obj.segments.all()]


class AttachmentOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Attachment
        fields = ["id", "filename", "content_type", "size", "url"]

    def get_url(self, obj) -> str:
        return f"/api/v1/attachments/{obj.id}"


class SenderOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class MessageOutput(serializers.ModelSerializer):
    private = serializers.SerializerMethodField()
    sender = serializers.SerializerMethodField()
    attachments = AttachmentOutput(many=True, read_only=True)

    class Meta:
        model = Message
        fields = ["id", "uuid", "conversation_id", "inbox_id", "direction", "sender_type", "sender", "kind",
                  "private", "body", "provider_message_id", "delivery_status", "failure_reason", "attachments",
                  "created_at"]

    def get_private(self, obj) -> bool:
        return obj.is_note

    @extend_schema_field(SenderOutput(allow_null=True))
    def get_sender(self, obj) -> dict | None:
        if obj.sender_user_id:
            return {"id": obj.sender_user_id, "username": obj.sender_user.get_username()}
        return None


PRIORITY_BY_NAME = {label.lower(): value for value, label in Conversation.Priority.choices}
PRIORITY_NAMES = list(PRIORITY_BY_NAME)


class ConversationContactOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.CharField()


class ConversationOutput(serializers.ModelSerializer):
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    channel = serializers.CharField(source="inbox.kind", read_only=True)
    contact = serializers.SerializerMethodField()
    priority = serializers.SerializerMethodField()

    class Meta:
        model = Conversation
        fields = ["id", "inbox_id", "channel", "contact", "status", "priority", "assignee_id", "team_id",
                  "subject", "tags", "meta", "created_at", "updated_at", "first_agent_reply_at",
                  "last_customer_message_at", "last_message_at", "waiting_since", "solved_at", "closed_at",
                  "merged_into_id"]

    @extend_schema_field(ConversationContactOutput)
    def get_contact(self, obj) -> dict:
        return {"id": obj.contact_id, "name": obj.contact.name, "email": obj.contact.email}

    @extend_schema_field(serializers.ChoiceField(choices=PRIORITY_NAMES))
    def get_priority(self, obj) -> str:
        return Conversation.Priority(obj.priority).label.lower()


class RoutingRuleRef(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class RoutingDecisionOutput(serializers.ModelSerializer):
    """A stored routing decision (routing.models.RoutingDecision), as the console's side panel shows it: what
    became of the conversation, by which rule, to which agent, and why (the rules tried, each target's
    candidates and why they were skipped)."""

    rule = serializers.SerializerMethodField()
    agent_id = serializers.SerializerMethodField(help_text="The user id of the agent it went to, if any.")
    details = serializers.JSONField(help_text="Why: `rules` (each rule with `matched` and its conditions' "
                                              "explanation lines) and `targets` (each target's `method` and "
                                              "`candidates`, with `skipped` reasons or `load`/`limit`).")

    class Meta:
        model = RoutingDecision
        fields = ["id", "outcome", "summary", "method", "rule", "agent_id", "details", "created_at"]

    @extend_schema_field(RoutingRuleRef(allow_null=True))
    def get_rule(self, obj) -> dict | None:
        return {"id": obj.rule_id, "name": obj.rule.name} if obj.rule_id else None

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_agent_id(self, obj) -> int | None:
        return obj.agent.user_id if obj.agent_id else None


def _decisions(conversation: Conversation):
    return (RoutingDecision.objects.filter(conversation_id=conversation.id).select_related("rule", "agent")
            .order_by("-id"))


class ConversationDetailOutput(ConversationOutput):
    routing = serializers.SerializerMethodField(help_text="The latest routing decision (null before routing): "
                                                          "all of them at /conversations/{id}/routing/.")

    class Meta(ConversationOutput.Meta):
        fields = [*ConversationOutput.Meta.fields, "routing"]

    @extend_schema_field(RoutingDecisionOutput(allow_null=True))
    def get_routing(self, obj) -> dict | None:
        decision = _decisions(obj).first()
        return RoutingDecisionOutput(decision).data if decision is not None else None


class ContactInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True)
    country = serializers.CharField(max_length=2, required=False, allow_blank=True)
    language = serializers.CharField(max_length=10, required=False, allow_blank=True)
    custom_attributes = JsonObjectField(required=False)


# --- contacts -----------------------------------------------------------------------


class ContactListApi(APIView):
    pagination_class = ApiPagination

    @extend_schema(responses=ContactOutput(many=True), parameters=[
        OpenApiParameter("q", str, description="A part of the contact's name, email or phone.")])
    def get(self, request):
        _agent_required(request)
        qs = selectors.visible_contacts(request.user).prefetch_related("identities", "segments").order_by("-id")
        if q := request.query_params.get("q", "").strip()[:200]:
            qs = qs.filter(name__icontains=q) | qs.filter(email__icontains=q) | qs.filter(phone__icontains=q)
        return _paginate(self, request, qs, ContactOutput)

    @extend_schema(request=_json_only(ContactInput), responses={201: ContactOutput})
    def post(self, request):
        _agent_required(request)
        data = ContactInput(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            contact = Contact.objects.create()
            actions.do_update_contact(actor=request.user, contact=contact, **data.validated_data)
        return Response(ContactOutput(contact).data, status=status.HTTP_201_CREATED)


class ContactDetailApi(APIView):
    @extend_schema(responses=ContactOutput)
    def get(self, request, contact_id: int):
        return Response(ContactOutput(selectors.access_contact_by_id(request.user, contact_id)).data)

    @extend_schema(request=_json_only(ContactInput), responses=ContactOutput)
    def patch(self, request, contact_id: int):
        contact = selectors.access_contact_by_id(request.user, contact_id)
        data = ContactInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        actions.do_update_contact(actor=request.user, contact=contact, **data.validated_data)
        contact.refresh_from_db()
        return Response(ContactOutput(contact).data)


# --- conversations ------------------------------------------------------------------


class InboundInput(serializers.Serializer):
    source_id = serializers.CharField(max_length=255, help_text="The customer's id in your system/channel.")
    body = serializers.CharField(allow_blank=True, trim_whitespace=False, required=False, default="")
    provider_message_id = serializers.CharField(max_length=255, required=False, allow_null=True,
                                                help_text="Your message id; a retried request with the same "
                                                          "id is stored once.")
    subject = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    conversation_id = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_INT,
                                               help_text="Continue this conversation (else the contact's open "
                                                         "one, or a new one).")
    contact = ContactInput(required=False)
    meta = serializers.DictField(required=False)


FILES_HELP = "Attachments (multipart only), each at most the channel's limit."


class InboundFilesInput(InboundInput):
    files = serializers.ListField(child=serializers.FileField(), required=False, help_text=FILES_HELP)


class InboundOutput(serializers.Serializer):
    """A customer's message, stored and processed: 201 when new, 200 when it was stored before."""

    duplicate = serializers.BooleanField(help_text="True when this provider_message_id was stored before.")
    conversation_id = serializers.IntegerField()
    message = MessageOutput()


class InboundPendingOutput(serializers.Serializer):
    """202: the message is stored but could not be processed yet; it is shortly. Retry with the same
    provider_message_id to get it."""

    duplicate = serializers.BooleanField()
    pending = serializers.BooleanField()
    delivery_id = serializers.IntegerField(help_text="The stored inbound delivery that will be processed.")
    detail = serializers.CharField()


INBOUND_RESPONSES = {
    201: OpenApiResponse(InboundOutput, description="A new message, stored and processed."),
    200: OpenApiResponse(InboundOutput, description="This provider_message_id was stored before (`duplicate`)."),
    202: OpenApiResponse(InboundPendingOutput, description="Stored, not processed yet (`pending`): retry with the "
                                                           "same provider_message_id to get the message."),
}


def _receive_inbound(request, inbox, data: dict) -> Response:
    """Store the customer's message first (once per provider id), then process it: the API channel's inbound
    path (omnichannel.integrations.api.inbound). 201 with the message; 200 for a message stored before; 202
    when it is stored but could not be processed yet (its task will)."""
    conversation = None
    if data.get("conversation_id"):
        conversation = selectors.access_conversation_by_id(request.user, data["conversation_id"])
    result = api_inbound.receive(
        inbox=inbox, source_id=data["source_id"], body=data.get("body", ""),
        provider_message_id=data.get("provider_message_id"), contact=data.get("contact"),
        subject=data.get("subject", ""), files=request.FILES.getlist("files"), meta=data.get("meta"),
        conversation=conversation,
    )
    if result.message is None:
        return Response(InboundPendingOutput({
            "duplicate": result.duplicate, "pending": True, "delivery_id": result.pending,
            "detail": "The message is stored and will be processed shortly."}).data,
            status=status.HTTP_202_ACCEPTED)
    return Response(
        InboundOutput({"duplicate": result.duplicate, "conversation_id": result.message.conversation_id,
                       "message": result.message}).data,
        status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED,
    )


class InboxIncomingApi(APIView):
    """The API channel: an integration posts a customer's message (contact and conversation found or created)."""

    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(request={"application/json": InboundInput, "multipart/form-data": InboundFilesInput},
                   responses=INBOUND_RESPONSES)
    def post(self, request, inbox_id: int):
        return _post_incoming(request, inbox_id)


def _post_incoming(request, inbox_id) -> Response:
    inbox = selectors.access_inbox_by_id(request.user, inbox_id)
    if not channels.for_inbox(inbox).can(channels.API_INBOUND):
        raise actions.ActionError("Only API inboxes accept customer messages through the API")
    data = InboundInput(data=request.data)
    data.is_valid(raise_exception=True)
    return _receive_inbound(request, inbox, data.validated_data)


class ConversationCreateInput(InboundInput):
    inbox_id = serializers.IntegerField(min_value=1, max_value=MAX_INT,
                                        help_text="The API inbox the customer wrote to.")


class ConversationCreateFilesInput(ConversationCreateInput):
    files = serializers.ListField(child=serializers.FileField(), required=False, help_text=FILES_HELP)


class ConversationListQuery(serializers.Serializer):
    """The conversation list's filters, as the console's inbox list takes them (selectors.InboxFilters)."""

    view = serializers.ChoiceField(choices=list(selectors.VIEWS), required=False,
                                   help_text="mine, unassigned, teams (my teams' queues) or all (default).")
    status = serializers.ChoiceField(choices=[*Conversation.Status.values, "active", "any"], required=False,
                                     help_text="A status, `active` (open, pending, on hold) or `any`; "
                                               "default open.")
    inbox = serializers.IntegerField(required=False, min_value=-MAX_INT, max_value=MAX_INT)
    kind = serializers.CharField(required=False, help_text="The channel: email, sms, api, webchat…")
    priority = serializers.IntegerField(required=False, min_value=-MAX_INT, max_value=MAX_INT,
                                        help_text="0 low, 1 normal, 2 high, 3 urgent.")
    tag = serializers.CharField(required=False)
    segment = serializers.IntegerField(required=False, min_value=-MAX_INT, max_value=MAX_INT)
    q = serializers.CharField(required=False, help_text="Search the subject, the contact and the messages.")
    sort = serializers.ChoiceField(choices=["waiting", "sla"], required=False,
                                   help_text="waiting (longest waiting first, default) or sla (most urgent "
                                             "SLA first).")


class ConversationListApi(APIView):
    pagination_class = ApiPagination
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(responses=ConversationOutput(many=True), parameters=[ConversationListQuery])
    def get(self, request):
        _agent_required(request)
        ConversationListQuery(data=request.query_params).is_valid(raise_exception=True)
        filters = selectors.InboxFilters.from_params(request.query_params)
        if filters.errors:
            raise actions.ActionError("; ".join(filters.errors))
        qs = selectors.filter_conversations_for_agent(request.user, filters).select_related(
            "inbox", "contact").prefetch_related("tags")
        return _paginate(self, request, qs, ConversationOutput)

    @extend_schema(request={"application/json": ConversationCreateInput,
                            "multipart/form-data": ConversationCreateFilesInput},
                   responses=INBOUND_RESPONSES)
    def post(self, request):
        """Start (or continue) a conversation with a customer's first message on an API inbox."""
        _agent_required(request)
        if not hasattr(request.data, "get"):
            raise actions.ActionError("The body must be a JSON object")
        inbox_id = request.data.get("inbox_id")
        if inbox_id in (None, ""):
            raise actions.ActionError("inbox_id is required", field="inbox_id")
        try:  # a number, in the range of ids: "abc" or 10**30 is bad input (400), not an unknown inbox
            inbox_id = ConversationCreateInput().fields["inbox_id"].run_validation(inbox_id)
        except ValidationError as exc:
            raise ValidationError({"inbox_id": exc.detail}) from None
        return _post_incoming(request, inbox_id)


class ConversationUpdateInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=Conversation.Status.choices, required=False)
    priority = serializers.ChoiceField(choices=PRIORITY_NAMES, required=False)
    assignee_id = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_INT,
                                           help_text="The agent's user id; null unassigns.")
    team_id = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_INT,
                                       help_text="null takes the conversation off its team.")
    note = serializers.CharField(max_length=1000, required=False, allow_blank=True,
                                 help_text="With assignee_id or team_id: a transfer note for the next agent "
                                           "(stored as an internal note).")
    subject = serializers.CharField(max_length=255, required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=64, allow_blank=False), required=False,
                                 max_length=actions.MAX_TAGS)


class ConversationDetailApi(APIView):
    @extend_schema(responses=ConversationDetailOutput)
    def get(self, request, conversation_id: int):
        conversation = selectors.access_conversation_by_id(request.user, conversation_id)
        return Response(ConversationDetailOutput(conversation).data)

    @extend_schema(request=_json_only(ConversationUpdateInput), responses=ConversationDetailOutput)
    def patch(self, request, conversation_id: int):
        conversation = selectors.access_conversation_by_id(request.user, conversation_id)
        data = ConversationUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        with transaction.atomic():
            if "status" in v:
                actions.do_change_status(actor=request.user, conversation=conversation, status=v["status"])
            if "priority" in v:
                actions.do_change_priority(actor=request.user, conversation=conversation,
                                           priority=PRIORITY_BY_NAME[v["priority"]])
            if "subject" in v:
                actions.do_change_subject(actor=request.user, conversation=conversation, subject=v["subject"])
            if "tags" in v:
                actions.do_set_tags(actor=request.user, conversation=conversation, names=v["tags"])
            assign = {}
            if "assignee_id" in v:
                assign["assignee"] = _user_or_error(v["assignee_id"])
            if "team_id" in v:
                assign["team"] = _team_or_error(v["team_id"])
            if assign:
                actions.do_assign_conversation(actor=request.user, conversation=conversation,
                                               note=v.get("note", ""), **assign)
            elif v.get("note"):
                raise actions.ActionError("A note goes with a transfer: give assignee_id or team_id", field="note")
        conversation = selectors.access_conversation_by_id(request.user, conversation_id)
        return Response(ConversationDetailOutput(conversation).data)


class ConversationRoutingApi(APIView):
    """The conversation's stored routing decisions, newest first: why it went where it went (read only)."""

    pagination_class = ApiPagination

    @extend_schema(responses=RoutingDecisionOutput(many=True))
    def get(self, request, conversation_id: int):
        conversation = selectors.access_conversation_by_id(request.user, conversation_id)
        return _paginate(self, request, _decisions(conversation), RoutingDecisionOutput)


def _user_or_error(user_id):
    if user_id is None:
        return None
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise actions.ActionError(f"No agent with id {user_id}", field="assignee_id")
    return user


def _team_or_error(team_id):
    if team_id is None:
        return None
    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        raise actions.ActionError(f"No team with id {team_id}", field="team_id")
    return team


class MessageInput(serializers.Serializer):
    body = serializers.CharField(allow_blank=True, trim_whitespace=False, required=False, default="")
    direction = serializers.ChoiceField(choices=["incoming", "outgoing"], default="outgoing",
                                        help_text="incoming: a customer's message (API inboxes only); "
                                                  "outgoing: an agent reply sent to the customer.")
    private = serializers.BooleanField(default=False, help_text="An internal note, never sent to the customer.")
    provider_message_id = serializers.CharField(max_length=255, required=False, allow_null=True)


class MessageFilesInput(MessageInput):
    files = serializers.ListField(child=serializers.FileField(), required=False, help_text=FILES_HELP)


MESSAGE_CREATED = PolymorphicProxySerializer(
    component_name="MessageCreated", serializers=[MessageOutput, InboundOutput], resource_type_field_name=None,
)


class MessageListApi(APIView):
    pagination_class = ApiPagination
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(responses=MessageOutput(many=True))
    def get(self, request, conversation_id: int):
        conversation = selectors.access_conversation_by_id(request.user, conversation_id)
        qs = conversation.messages.select_related("sender_user").prefetch_related("attachments").order_by("id")
        return _paginate(self, request, qs, MessageOutput)

    @extend_schema(
        request={"application/json": MessageInput, "multipart/form-data": MessageFilesInput},
        responses={
            201: OpenApiResponse(MESSAGE_CREATED, description="The agent's reply or note (a message); for "
                                                              "`direction: incoming`, the customer's message as "
                                                              "the incoming endpoint answers it."),
            200: INBOUND_RESPONSES[200], 202: INBOUND_RESPONSES[202]})
    def post(self, request, conversation_id: int):
        conversation = selectors.access_conversation_by_id(request.user, conversation_id)
        data = MessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        files = request.FILES.getlist("files")
        if v["direction"] == "incoming":
            if not channels.for_inbox(conversation.inbox).can(channels.API_INBOUND):
                raise actions.ActionError("Customer messages can only be posted to API inboxes",
                                          field="direction")
            identity = conversation.contact.identities.filter(
                kind=channels.for_inbox(conversation.inbox).identity,
                scope=actions.identity_scope(conversation.inbox)).first()
            if identity is None:
                raise actions.ActionError("This conversation's contact has no API source_id")
            return _receive_inbound(request, conversation.inbox, {
                "source_id": identity.value, "body": v["body"], "conversation_id": conversation.id,
                "provider_message_id": v.get("provider_message_id")})
        if v["private"]:
            message = actions.do_add_note(actor=request.user, conversation=conversation, body=v["body"],
                                          attachments=files)
        else:
            message = actions.do_send_agent_reply(actor=request.user, conversation=conversation, body=v["body"],
                                                  attachments=files)
        return Response(MessageOutput(message).data, status=status.HTTP_201_CREATED)


class MessageUpdateInput(serializers.Serializer):
    delivery_status = serializers.ChoiceField(choices=["sent", "delivered", "read", "failed"])
    failure_reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class MessageDetailApi(APIView):
    @extend_schema(responses=MessageOutput)
    def get(self, request, conversation_id: int, message_id: int):
        return Response(MessageOutput(self._message(request, conversation_id, message_id)).data)

    @extend_schema(request=_json_only(MessageUpdateInput), responses=MessageOutput)
    def patch(self, request, conversation_id: int, message_id: int):
        """The integration reports delivery (delivered/read/failed) of an agent reply."""
        message = self._message(request, conversation_id, message_id)
        if message.direction != Message.Direction.OUTGOING or message.is_note:
            raise actions.ActionError("Only outgoing messages have a delivery status")
        data = MessageUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        actions.do_update_delivery_status(message=message, status=data.validated_data["delivery_status"],
                                          reason=data.validated_data["failure_reason"])
        message.refresh_from_db()
        return Response(MessageOutput(message).data)

    def _message(self, request, conversation_id, message_id) -> Message:
        conversation = selectors.access_conversation_by_id(request.user, conversation_id)
        message = conversation.messages.filter(pk=message_id).first()
        if message is None:
            raise NotFound("Message not found")
        return message


class TypingInput(serializers.Serializer):
    typing = serializers.BooleanField()


class ConversationTypingApi(APIView):
    @extend_schema(request=_json_only(TypingInput), responses={204: None})
    def post(self, request, conversation_id: int):
        """The customer is typing (API channel integrations that know it)."""
        conversation = selectors.access_conversation_by_id(request.user, conversation_id)
        data = TypingInput(data=request.data)
        data.is_valid(raise_exception=True)
        actions.do_notify_typing(conversation=conversation, who="contact", typing=data.validated_data["typing"])
        return Response(status=status.HTTP_204_NO_CONTENT)


ATTACHMENT_TYPES = [*sorted(SAFE_INLINE_TYPES), "application/octet-stream"]


class AttachmentDownloadApi(APIView):
    @extend_schema(responses={
        **{(200, media_type): OpenApiResponse(OpenApiTypes.BINARY, description=(
            "The file: images (PNG, JPEG, GIF, WebP) inline, anything else as an application/octet-stream "
            "download.")) for media_type in ATTACHMENT_TYPES}})
    def get(self, request, attachment_id: int):
        """An attachment's file, to a user who may see its conversation."""
        att = Attachment.objects.select_related("message").filter(pk=attachment_id).first()
        if att is None:
            raise NotFound("Attachment not found")
        selectors.access_conversation_by_id(request.user, att.message.conversation_id)
        return attachment_response(att)


class ProactiveSmsInput(serializers.Serializer):
    to = serializers.CharField(max_length=32)
    body = serializers.CharField(required=False, allow_blank=True, default="")
    template = serializers.SlugField(required=False, allow_null=True)
    variables = JsonObjectField(required=False, default=dict)
    idempotency_key = serializers.CharField(max_length=100, help_text="Required: a retried request sends once.")


class ProactiveSmsOutput(serializers.Serializer):
    duplicate = serializers.BooleanField(help_text="True when this idempotency_key was sent before (nothing is "
                                                   "sent again).")
    conversation_id = serializers.IntegerField()
    message = MessageOutput()


def _sms_sent(message: Message, *, duplicate: bool) -> Response:
    return Response(ProactiveSmsOutput({"duplicate": duplicate, "conversation_id": message.conversation_id,
                                        "message": message}).data,
                    status=status.HTTP_200_OK if duplicate else status.HTTP_201_CREATED)


class ProactiveSmsApi(APIView):
    """Send a one-to-one SMS (e.g. an appointment reminder) to an opted-in contact; replies land in the console."""

    @extend_schema(request=_json_only(ProactiveSmsInput), responses={
        201: OpenApiResponse(ProactiveSmsOutput, description="Sent (queued for the provider)."),
        200: OpenApiResponse(ProactiveSmsOutput, description="This idempotency_key was sent before.")})
    def post(self, request, inbox_id: int):
        inbox = selectors.access_inbox_by_id(request.user, inbox_id)
        data = ProactiveSmsInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        key = v["idempotency_key"]
        existing = ProactiveRequest.objects.filter(inbox=inbox, key=key).select_related("message").first()
        if existing is not None:
            return _sms_sent(existing.message, duplicate=True)
        try:
            message = sms_actions.do_send_proactive_sms(actor=request.user, inbox=inbox, phone=v["to"], body=v["body"],
                                                    template=v.get("template"), variables=v["variables"],
                                                    idempotency_key=key)
        except IntegrityError:  # the same key sent concurrently: the other request won
            existing = ProactiveRequest.objects.select_related("message").get(inbox=inbox, key=key)
            return _sms_sent(existing.message, duplicate=True)
        return _sms_sent(message, duplicate=False)


class SmsConsentInput(serializers.Serializer):
    phone = serializers.CharField(max_length=32)
    opted_in = serializers.BooleanField()
    source = serializers.ChoiceField(choices=["web_form", "checkout", "imported", "api", "agent"])
    detail = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class SmsConsentApi(APIView):
    """Record an opt-in (web form, checkout, import…) or opt-out, with its source and time."""

    @extend_schema(request=_json_only(SmsConsentInput), responses={204: None})
    def post(self, request, inbox_id: int):
        inbox = selectors.access_inbox_by_id(request.user, inbox_id)
        data = SmsConsentInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        sms_actions.do_record_sms_consent(inbox=inbox, phone=v["phone"], opted_in=v["opted_in"], source=v["source"],
                                      detail=v["detail"])
        return Response(status=status.HTTP_204_NO_CONTENT)
