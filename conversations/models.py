"""Contacts, segments, inboxes, conversations (tickets), messages and their timeline.

Only ``conversations.actions`` (and the other apps' ``actions`` modules) change
these rows; views, the API, consumers, tasks, webhooks and the admin call them.
"""

from __future__ import annotations

import json
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


def _new_token() -> str:
    return secrets.token_urlsafe(24)


class ChannelKind(models.TextChoices):
    WEBCHAT = "webchat", "Web chat"
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    MESSENGER = "messenger", "Messenger"
    INSTAGRAM = "instagram", "Instagram"
    WHATSAPP = "whatsapp", "WhatsApp"
    X = "x", "X"
    API = "api", "API"


class Segment(models.Model):
    """A group of contacts such as a VIP level. Membership by hand or by rule.

    ``rule`` (optional) is ``{"match": "all"|"any", "conditions": [{"field": "attributes.spend_tier",
    "op": "gte", "value": 5}, …]}`` in the condition language (conversations/conditions.py) about a contact:
    fields ``name``, ``email``, ``phone``, ``country``, ``language``, ``attributes.<key>``.
    """

    name = models.CharField(max_length=100, unique=True)
    label = models.CharField(
        max_length=50, blank=True, help_text='Short tag shown on rows, e.g. "VIP-Spend 5" or "VIP-Upset-2".'
    )
    color = models.CharField(max_length=7, default="#6b7280", help_text="Hex colour, e.g. #d97706")
    priority_level = models.PositiveSmallIntegerField(default=0, help_text="Higher is more important.")
    account_manager = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="managed_segments",
    )
    rule = models.JSONField(null=True, blank=True, help_text="Optional membership rule; empty = by hand only.")

    class Meta:
        ordering = ["-priority_level", "name"]

    def __str__(self) -> str:
        return self.label or self.name

    def clean_fields(self, exclude=None) -> None:
        # a cycle: conversations.conditions imports this module
        from .conditions import CONTACT, clean_model_field

        clean_model_field(self, exclude, "rule", subject=CONTACT, clean_fields=super().clean_fields, rule=True)


class Contact(models.Model):
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=32, blank=True)
    country = models.CharField(max_length=2, blank=True)
    language = models.CharField(max_length=10, blank=True)
    custom_attributes = models.JSONField(default=dict, blank=True)
    segments = models.ManyToManyField(Segment, through="ContactSegment", related_name="contacts", blank=True)
    # Set when this contact was merged into another; its history moved there.
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.name or self.email or self.phone or f"Contact #{self.pk}"

    @property
    def first_name(self) -> str:
        return (self.name or "").split(" ")[0]

    @property
    def custom_attributes_json(self) -> str:
        return json.dumps(self.custom_attributes or {}, ensure_ascii=False)


class ContactSegment(models.Model):
    class Source(models.TextChoices):
        MANUAL = "manual", "By hand"
        RULE = "rule", "By rule"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.MANUAL)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact", "segment"], name="contact_segment_unique")]


class ContactIdentity(models.Model):
    """How a contact is known on one channel: an email address, a phone number, a PSID…

    ``scope`` separates ids that are only unique within an account (a Messenger PSID is
    page-scoped, an API ``source_id`` is inbox-scoped); it is empty for global ids.
    """

    class Kind(models.TextChoices):
        EMAIL = "email", "Email address"
        PHONE = "phone", "Phone number"
        WEBCHAT = "webchat", "Widget visitor id"
        MESSENGER = "messenger", "Messenger PSID"
        INSTAGRAM = "instagram", "Instagram IGSID"
        WHATSAPP = "whatsapp", "WhatsApp id"
        X = "x", "X user id"
        API = "api", "API source id"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    scope = models.CharField(max_length=64, blank=True, default="")
    value = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "scope", "value"], name="contact_identity_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class Inbox(models.Model):
    """One configured channel account (a website widget, a mailbox, a number, a page…)."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=ChannelKind.choices)
    is_active = models.BooleanField(default=True)
    settings = models.JSONField(
        default=dict, blank=True,
        help_text='Channel settings, e.g. {"webhook_url": "https://shop.example/hooks/omni"} for an API inbox.',
    )
    # Signing secret for outbound webhooks / identity verification; never shown in full.
    secret = models.CharField(max_length=128, default=_new_token)
    # Public, unguessable identifier (the widget's token).
    public_token = models.CharField(max_length=64, unique=True, default=_new_token)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "inboxes"

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Conversation(models.Model):
    """The ticket."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Pending"
        ON_HOLD = "on_hold", "On hold"
        SOLVED = "solved", "Solved"
        CLOSED = "closed", "Closed"

    class Priority(models.IntegerChoices):
        LOW = 0, "Low"
        NORMAL = 1, "Normal"
        HIGH = 2, "High"
        URGENT = 3, "Urgent"

    ACTIVE_STATUSES = (Status.OPEN, Status.PENDING, Status.ON_HOLD)

    inbox = models.ForeignKey(Inbox, on_delete=models.PROTECT, related_name="conversations")
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="conversations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    priority = models.SmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="assigned_conversations",
    )
    team = models.ForeignKey("agents.Team", null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="conversations")
    subject = models.CharField(max_length=255, blank=True)
    tags = models.ManyToManyField(Tag, related_name="conversations", blank=True)
    # Channel-specific context (pre-chat answers, page URL, thread ids…).
    meta = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    first_agent_reply_at = models.DateTimeField(null=True, blank=True)
    last_customer_message_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    # When the customer started waiting for an agent; cleared by an agent reply.
    waiting_since = models.DateTimeField(null=True, blank=True)
    solved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    last_message_preview = models.CharField(max_length=200, blank=True)
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The most urgent running SLA clock (kept by sla.actions): colour, countdown and "sort by SLA".
    sla_due_at = models.DateTimeField(null=True, blank=True)
    sla_warn_at = models.DateTimeField(null=True, blank=True)
    sla_metric = models.CharField(max_length=20, blank=True)
    sla_paused = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The console inbox list: visible inboxes, one status, longest waiting first.
            models.Index(fields=["inbox", "status", "waiting_since", "id"], name="conv_inbox_status_wait"),
            models.Index(fields=["status", "waiting_since", "id"], name="conv_status_wait"),
            # "Mine": an agent's own conversations.
            models.Index(fields=["assignee", "status", "waiting_since"], name="conv_assignee_status"),
            # The inbox sorted by SLA urgency.
            models.Index(fields=["status", "sla_due_at", "id"], name="conv_status_sla"),
            # Cross-channel history of one contact.
            models.Index(fields=["contact", "created_at"], name="conv_contact_created"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject or self.last_message_preview[:40]}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES


class Message(models.Model):
    class Direction(models.TextChoices):
        INCOMING = "in", "Incoming"
        OUTGOING = "out", "Outgoing"

    class SenderType(models.TextChoices):
        CONTACT = "contact", "Contact"
        AGENT = "agent", "Agent"
        BOT = "bot", "Bot"
        SYSTEM = "system", "System"

    class Kind(models.TextChoices):
        MESSAGE = "message", "Public message"
        NOTE = "note", "Internal note"

    class DeliveryStatus(models.TextChoices):
        RECEIVED = "received", "Received"
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        READ = "read", "Read"
        FAILED = "failed", "Failed"

    # Forward-only order for delivery status updates (failed is terminal from anywhere).
    DELIVERY_ORDER = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4}

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # db_index=False: the (conversation, id) index below serves every lookup by conversation.
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages",
                                     db_index=False)
    inbox = models.ForeignKey(Inbox, on_delete=models.PROTECT, related_name="+")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    sender_type = models.CharField(max_length=10, choices=SenderType.choices)
    sender_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MESSAGE)
    body = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=255, null=True, blank=True)
    # What a provider says of a message that the core has no column for: email threading headers, a social
    # post's id, a WhatsApp template's name. Keyed by the channel kind: {"email": {"message_id": …}}.
    meta = models.JSONField(default=dict, blank=True, db_default=models.Value({}, output_field=models.JSONField()))
    delivery_status = models.CharField(max_length=10, choices=DeliveryStatus.choices,
                                       default=DeliveryStatus.RECEIVED)
    failure_reason = models.CharField(max_length=500, blank=True)
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    # Until when an outbound message belongs to a delivery task in flight (conversations/tasks.py): the send that
    # claimed it (sending), the retry it scheduled or the task the re-drive enqueued (queued). The re-drive
    # takes it only after this time, so a second attempt never starts while the first may still complete.
    delivery_lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # A retried provider delivery is stored once.
            models.UniqueConstraint(fields=["inbox", "provider_message_id"], name="message_provider_id_unique",
                                    condition=Q(provider_message_id__isnull=False)),
        ]
        indexes = [
            models.Index(fields=["conversation", "id"], name="message_conversation_id"),
            # Re-drive sweep: outbound messages still queued.
            models.Index(fields=["delivery_status", "created_at"], name="message_outbox",
                         condition=Q(delivery_status__in=["queued", "sending"])),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.body[:40]}"

    @property
    def is_note(self) -> bool:
        return self.kind == self.Kind.NOTE


class Attachment(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to="attachments/%Y/%m/")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()

    def __str__(self) -> str:
        return self.filename

    @property
    def is_image(self) -> bool:
        return self.content_type in ("image/png", "image/jpeg", "image/gif", "image/webp")


class ConversationEvent(models.Model):
    """A timeline row: who did what to the conversation, and when."""

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        ASSIGNED = "assigned", "Assigned"
        STATUS_CHANGED = "status_changed", "Status changed"
        PRIORITY_CHANGED = "priority_changed", "Priority changed"
        TAGS_CHANGED = "tags_changed", "Tags changed"
        MERGED = "merged", "Merged"
        CONTACT_MERGED = "contact_merged", "Contact merged"
        SUBJECT_CHANGED = "subject_changed", "Subject changed"
        DELIVERY_FAILED = "delivery_failed", "Delivery failed"
        WRAPPED_UP = "wrapped_up", "Wrapped up"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["conversation", "id"], name="convevent_conversation")]

    def __str__(self) -> str:
        return f"{self.kind} on #{self.conversation_id}"


class CannedMessage(models.Model):
    """A saved reply, expanded in the composer by typing ``#shortcut``."""

    shortcut = models.SlugField(max_length=50, help_text="Typed as #shortcut in the reply box.")
    title = models.CharField(max_length=100, blank=True)
    body = models.TextField(help_text="Placeholders: {{contact.first_name}}, {{contact.name}}, "
                                      "{{contact.email}}, {{agent.name}}, {{conversation.id}}")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="canned_messages", help_text="Empty = shared with everyone.")

    class Meta:
        ordering = ["shortcut"]
        constraints = [
            models.UniqueConstraint(fields=["shortcut"], condition=Q(owner__isnull=True),
                                    name="canned_shared_shortcut_unique"),
            models.UniqueConstraint(fields=["shortcut", "owner"], condition=Q(owner__isnull=False),
                                    name="canned_personal_shortcut_unique"),
        ]

    def __str__(self) -> str:
        return f"#{self.shortcut}"


class SmsConsent(models.Model):
    """A phone number's consent on one SMS inbox: opted in (with source) or opted out (STOP)."""

    class State(models.TextChoices):
        OPTED_IN = "opted_in", "Opted in"
        OPTED_OUT = "opted_out", "Opted out"

    inbox = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="sms_consents")
    phone = models.CharField(max_length=32)
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="sms_consents")
    state = models.CharField(max_length=10, choices=State.choices)
    source = models.CharField(max_length=30, help_text="keyword, web form, checkout, imported, api, twilio")
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["inbox", "phone"], name="sms_consent_unique")]

    def __str__(self) -> str:
        return f"{self.phone} {self.state}"


class SmsConsentEvent(models.Model):
    """Every consent change, with time and source (never rewritten)."""

    consent = models.ForeignKey(SmsConsent, on_delete=models.CASCADE, related_name="events")
    state = models.CharField(max_length=10, choices=SmsConsent.State.choices)
    source = models.CharField(max_length=30)
    detail = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.state} via {self.source}"


class MessageTemplate(models.Model):
    """A proactive message with placeholders: {{contact.first_name}}, {{contact.name}} and any {{variable}}."""

    name = models.SlugField(max_length=50, unique=True, help_text="e.g. appointment-reminder")
    body = models.TextField()

    def __str__(self) -> str:
        return self.name


class ProactiveRequest(models.Model):
    """An idempotency key of a proactive send: a retried request returns the first result."""

    inbox = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=100)
    message = models.ForeignKey("Message", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["inbox", "key"], name="proactive_key_unique")]

    def __str__(self) -> str:
        return self.key


class InboundDelivery(models.Model):
    """A provider's inbound webhook (an SMS), verified and stored once per provider message id before the 200.

    The webhook commits this row in one statement (INSERT … ON CONFLICT DO NOTHING on the unique constraint,
    so a retried or concurrent delivery is acknowledged and not stored again) and answers; a Celery task turns
    it into the contact, conversation and message through ``do_receive_inbound_message`` and marks it
    processed in that same transaction. Unprocessed rows are re-driven by beat: a lost task or a killed
    worker loses nothing, and a redelivered task finds the row processed.
    """

    inbox = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="+")
    provider_message_id = models.CharField(max_length=255)
    sender = models.CharField(max_length=255, help_text="the customer's address as posted (e.g. From)")
    payload = models.JSONField(help_text="every posted parameter")
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="failed processing attempts")
    error = models.CharField(max_length=500, blank=True, help_text="why it was not stored, or the last failure")

    class Meta:
        verbose_name_plural = "inbound deliveries"
        constraints = [
            # A retried provider delivery is stored once (the webhook's ON CONFLICT target).
            models.UniqueConstraint(fields=["inbox", "provider_message_id"], name="inbound_delivery_unique"),
        ]
        indexes = [
            # Unprocessed rows only: one sender's earlier rows (processed in arrival order) and the re-drive sweep.
            models.Index(fields=["inbox", "sender", "id"], name="inbound_delivery_pending",
                         condition=Q(processed_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return self.provider_message_id
