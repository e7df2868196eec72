"""REST API (token auth): contacts, conversations, messages, and the API channel's inbound endpoint.

Entry points stay thin: parse, access-check, call an action, serialize.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.models import Team
from omnichannel.errors import NotFound
from omnichannel.files import attachment_response
from omnichannel.integrations.api import inbound as api_inbound
from omnichannel.integrations.twilio_sms import actions as sms_actions

from . import actions, channels, selectors
from .models import Attachment, Contact, Conversation, Message, ProactiveRequest

User = get_user_model()


def _agent_required(request) -> None:
    if selectors.get_agent(request.user) is None:
        raise NotFound("Not found")


# --- serializers --------------------------------------------------------------------


class ContactOutput(serializers.ModelSerializer):
    identities = serializers.SerializerMethodField()
    segments = serializers.SerializerMethodField()

    class Meta:
        model = Contact
        fields = ["id", "name", "email", "phone", "country", "language", "custom_attributes", "identities",
                  "segments", "created_at"]

    def get_identities(self, obj) -> list[dict]:
        return [{"kind": i.kind, "value": i.value} for i in obj.identities.all()]

    def get_segments(self, obj) -> list[dict]:
        return [{"id": s.id, "name": s.name, "label": s.label, "color": s.color} for s in obj.segments.all()]


class AttachmentOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Attachment
        fields = ["id", "filename", "content_type", "size", "url"]

    def get_url(self, obj) -> str:
        return f"/api/v1/attachments/{obj.id}"


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

    def get_sender(self, obj) -> dict | None:
        if obj.sender_user_id:
            return {"id": obj.sender_user_id, "username": obj.sender_user.get_username()}
        return None


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

    def get_contact(self, obj) -> dict:
        return {"id": obj.contact_id, "name": obj.contact.name, "email": obj.contact.email}

    def get_priority(self, obj) -> str:
        return Conversation.Priority(obj.priority).label.lower()


PRIORITY_BY_NAME = {label.lower(): value for value, label in Conversation.Priority.choices}


class ContactInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True)
    country = serializers.CharField(max_length=2, required=False, allow_blank=True)
    language = serializers.CharField(max_length=10, required=False, allow_blank=True)
    custom_attributes = serializers.DictField(required=False)


# --- contacts -----------------------------------------------------------------------


class ContactListApi(APIView):
    @extend_schema(responses=ContactOutput(many=True))
    def get(self, request):
        _agent_required(request)
        qs = selectors.visible_contacts(request.user).prefetch_related("identities", "segments").order_by("-id")
        if q := request.query_params.get("q", "").strip()[:200]:
            qs = qs.filter(name__icontains=q) | qs.filter(email__icontains=q) | qs.filter(phone__icontains=q)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ContactOutput(page, many=True).data)

    @extend_schema(request=ContactInput, responses={201: ContactOutput})
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

    @extend_schema(request=ContactInput, responses=ContactOutput)
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
    conversation_id = serializers.IntegerField(required=False, allow_null=True)
    contact = ContactInput(required=False)
    meta = serializers.DictField(required=False)


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
        return Response({"duplicate": result.duplicate, "pending": True, "delivery_id": result.pending,
                         "detail": "The message is stored and will be processed shortly."},
                        status=status.HTTP_202_ACCEPTED)
    return Response(
        {"duplicate": result.duplicate, "conversation_id": result.message.conversation_id,
         "message": MessageOutput(result.message).data},
        status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED,
    )


class InboxIncomingApi(APIView):
    """The API channel: an integration posts a customer's message (contact and conversation found or created)."""

    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(request=InboundInput, responses={201: MessageOutput, 200: MessageOutput})
    def post(self, request, inbox_id: int):
        return _post_incoming(request, inbox_id)


def _post_incoming(request, inbox_id) -> Response:
    inbox = selectors.access_inbox_by_id(request.user, inbox_id)
    if not channels.for_inbox(inbox).can(channels.API_INBOUND):
        raise actions.ActionError("Only API inboxes accept customer messages through the API")
    data = InboundInput(data=request.data)
    data.is_valid(raise_exception=True)
    return _receive_inbound(request, inbox, data.validated_data)


class ConversationListApi(APIView):
    @extend_schema(responses=ConversationOutput(many=True))
    def get(self, request):
        _agent_required(request)
        filters = selectors.InboxFilters.from_params(request.query_params)
        if filters.errors:
            raise actions.ActionError("; ".join(filters.errors))
        qs = selectors.filter_conversations_for_agent(request.user, filters).select_related(
            "inbox", "contact").prefetch_related("tags")
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ConversationOutput(page, many=True).data)

    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(request=InboundInput, responses={201: MessageOutput})
    def post(self, request):
        """Start (or continue) a conversation with a customer's first message on an API inbox."""
        _agent_required(request)
        if not hasattr(request.data, "get"):
            raise actions.ActionError("The body must be a JSON object")
        inbox_id = request.data.get("inbox_id")
        if inbox_id in (None, ""):
            raise actions.ActionError("inbox_id is required", field="inbox_id")
        return _post_incoming(request, inbox_id)


class ConversationUpdateInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=Conversation.Status.values, required=False)
    priority = serializers.ChoiceField(choices=list(PRIORITY_BY_NAME), required=False)
    assignee_id = serializers.IntegerField(required=False, allow_null=True)
    team_id = serializers.IntegerField(required=False, allow_null=True)
    note = serializers.CharField(max_length=1000, required=False, allow_blank=True,
                                 help_text="With assignee_id or team_id: a transfer note for the next agent "
                                           "(stored as an internal note).")
    subject = serializers.CharField(max_length=255, required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=64, allow_blank=False), required=False,
                                 max_length=actions.MAX_TAGS)


class ConversationDetailApi(APIView):
    @extend_schema(responses=ConversationOutput)
    def get(self, request, conversation_id: int):
        return Response(ConversationOutput(selectors.access_conversation_by_id(request.user, conversation_id)).data)

    @extend_schema(request=ConversationUpdateInput, responses=ConversationOutput)
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
        return Response(ConversationOutput(conversation).data)


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


class MessageListApi(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(responses=MessageOutput(many=True))
    def get(self, request, conversation_id: int):
        conversation = selectors.access_conversation_by_id(request.user, conversation_id)
        qs = conversation.messages.select_related("sender_user").prefetch_related("attachments").order_by("id")
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(MessageOutput(page, many=True).data)

    @extend_schema(request=MessageInput, responses={201: MessageOutput})
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

    @extend_schema(request=MessageUpdateInput, responses=MessageOutput)
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
    @extend_schema(request=TypingInput, responses={204: None})
    def post(self, request, conversation_id: int):
        """The customer is typing (API channel integrations that know it)."""
        conversation = selectors.access_conversation_by_id(request.user, conversation_id)
        data = TypingInput(data=request.data)
        data.is_valid(raise_exception=True)
        actions.do_notify_typing(conversation=conversation, who="contact", typing=data.validated_data["typing"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class AttachmentDownloadApi(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, attachment_id: int):
        att = Attachment.objects.select_related("message").filter(pk=attachment_id).first()
        if att is None:
            raise NotFound("Attachment not found")
        selectors.access_conversation_by_id(request.user, att.message.conversation_id)
        return attachment_response(att)


class ProactiveSmsInput(serializers.Serializer):
    to = serializers.CharField(max_length=32)
    body = serializers.CharField(required=False, allow_blank=True, default="")
    template = serializers.SlugField(required=False, allow_null=True)
    variables = serializers.DictField(required=False, default=dict)
    idempotency_key = serializers.CharField(max_length=100, help_text="Required: a retried request sends once.")


class ProactiveSmsApi(APIView):
    """Send a one-to-one SMS (e.g. an appointment reminder) to an opted-in contact; replies land in the console."""

    @extend_schema(request=ProactiveSmsInput, responses={201: MessageOutput, 200: MessageOutput})
    def post(self, request, inbox_id: int):
        inbox = selectors.access_inbox_by_id(request.user, inbox_id)
        data = ProactiveSmsInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        key = v["idempotency_key"]
        existing = ProactiveRequest.objects.filter(inbox=inbox, key=key).select_related("message").first()
        if existing is not None:
            return Response({"duplicate": True, "message": MessageOutput(existing.message).data})
        try:
            message = sms_actions.do_send_proactive_sms(actor=request.user, inbox=inbox, phone=v["to"], body=v["body"],
                                                    template=v.get("template"), variables=v["variables"],
                                                    idempotency_key=key)
        except IntegrityError:  # the same key sent concurrently: the other request won
            existing = ProactiveRequest.objects.select_related("message").get(inbox=inbox, key=key)
            return Response({"duplicate": True, "message": MessageOutput(existing.message).data})
        return Response({"duplicate": False, "message": MessageOutput(message).data}, status=status.HTTP_201_CREATED)


class SmsConsentInput(serializers.Serializer):
    phone = serializers.CharField(max_length=32)
    opted_in = serializers.BooleanField()
    source = serializers.ChoiceField(choices=["web_form", "checkout", "imported", "api", "agent"])
    detail = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class SmsConsentApi(APIView):
    """Record an opt-in (web form, checkout, import…) or opt-out, with its source and time."""

    @extend_schema(request=SmsConsentInput, responses={204: None})
    def post(self, request, inbox_id: int):
        inbox = selectors.access_inbox_by_id(request.user, inbox_id)
        data = SmsConsentInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        sms_actions.do_record_sms_consent(inbox=inbox, phone=v["phone"], opted_in=v["opted_in"], source=v["source"],
                                      detail=v["detail"])
        return Response(status=status.HTTP_204_NO_CONTENT)
