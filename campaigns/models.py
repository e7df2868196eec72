"""The website chat widget: per-inbox configuration, visitor sessions, post-chat surveys."""

from __future__ import annotations

from django.conf import settings
from django.db import models

DEFAULT_PRECHAT_FIELDS = [
    {"name": "name", "label": "Name", "type": "text", "required": True},
    {"name": "email", "label": "Email", "type": "email", "required": True},
    {"name": "department", "label": "Department", "type": "select", "required": False,
     "options": ["Sales", "Support", "Billing"]},
]
DEFAULT_DISPOSITIONS = ["Resolved", "Follow-up needed", "Sales lead", "Spam", "Other"]


class WidgetConfig(models.Model):
    """Everything an admin customizes about one web-chat inbox's widget, without code."""

    class Position(models.TextChoices):
        RIGHT = "right", "Bottom right"
        LEFT = "left", "Bottom left"

    class Mode(models.TextChoices):
        PANEL = "panel", "Embedded panel"
        POPUP = "popup", "Pop-up window"

    class Icon(models.TextChoices):
        CHAT = "chat", "Speech bubble"
        HELP = "help", "Question mark"
        WAVE = "wave", "Waving hand"

    inbox = models.OneToOneField("conversations.Inbox", on_delete=models.CASCADE, related_name="widget")
    # Appearance
    button_color = models.CharField(max_length=7, default="#0b5cad")
    button_text = models.CharField(max_length=40, blank=True, default="Chat with us")
    button_icon = models.CharField(max_length=10, choices=Icon.choices, default=Icon.CHAT)
    position = models.CharField(max_length=5, choices=Position.choices, default=Position.RIGHT)
    header_color = models.CharField(max_length=7, default="#0f2540")
    header_text_color = models.CharField(max_length=7, default="#ffffff")
    window_background = models.CharField(max_length=7, default="#ffffff")
    title = models.CharField(max_length=80, default="We're here to help")
    greeting = models.CharField(max_length=300, blank=True, default="Hi! Ask us anything, we usually reply in a "
                                                                      "few minutes.")
    show_agent_avatars = models.BooleanField(default=True)
    display_mode = models.CharField(max_length=5, choices=Mode.choices, default=Mode.PANEL)
    mobile_fullscreen = models.BooleanField(default=True, help_text="Full screen below 640 px wide.")
    mobile_button_text = models.CharField(max_length=40, blank=True, help_text="Shorter text on phones "
                                                                                "(empty: icon only).")
    # Security
    allowed_origins = models.TextField(
        blank=True, help_text="One origin per line, e.g. https://www.example.com. Empty: any origin (not "
                              "recommended).")
    require_identity_verification = models.BooleanField(
        default=False, help_text="Refuse visitors whose user_id is not signed with the inbox secret.")
    # Pre-chat survey
    prechat_enabled = models.BooleanField(default=True)
    prechat_message = models.CharField(max_length=200, blank=True, default="Tell us a little about you.")
    prechat_fields = models.JSONField(default=list, blank=True, help_text=(
        'List of {"name", "label", "type": text|email|tel|select|textarea, "required": bool, "options": [...]}'))
    # Availability
    offline_message = models.CharField(max_length=300, default="We're offline right now. Leave a message and "
                                                               "we'll answer by email.")
    queue_message = models.CharField(max_length=300, default="Thanks! An agent will be with you shortly.")
    business_hours = models.JSONField(default=dict, blank=True, help_text=(
        'Optional: {"tz": "Europe/Paris", "days": {"mon": [["09:00", "18:00"]], ...}}. Empty: always open.'))
    # Ending
    postchat_survey_enabled = models.BooleanField(default=True)
    postchat_question = models.CharField(max_length=200, default="How was your chat?")
    dispositions = models.JSONField(default=list, blank=True, help_text="Wrap-up choices for agents.")
    # Files and limits
    max_upload_mb = models.PositiveSmallIntegerField(default=10)
    allowed_upload_types = models.CharField(
        max_length=500, default="image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain")
    messages_per_minute = models.PositiveSmallIntegerField(default=30)

    def __str__(self) -> str:
        return f"Widget of {self.inbox}"

    @property
    def origins(self) -> list[str]:
        return [o.strip().rstrip("/").lower() for o in self.allowed_origins.splitlines() if o.strip()]

    @property
    def upload_types(self) -> set[str]:
        return {t.strip() for t in self.allowed_upload_types.split(",") if t.strip()}

    @property
    def fields(self) -> list[dict]:
        return self.prechat_fields or DEFAULT_PRECHAT_FIELDS

    @property
    def disposition_choices(self) -> list[str]:
        return self.dispositions or DEFAULT_DISPOSITIONS


class VisitorSession(models.Model):
    """One browser (anonymous visitor token) on one web-chat inbox."""

    inbox = models.ForeignKey("conversations.Inbox", on_delete=models.CASCADE, related_name="visitor_sessions")
    visitor_id = models.CharField(max_length=64)
    contact = models.ForeignKey("conversations.Contact", on_delete=models.CASCADE, related_name="visitor_sessions")
    verified_user_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    visits = models.PositiveIntegerField(default=1)
    page_url = models.URLField(max_length=2000, blank=True)
    page_title = models.CharField(max_length=300, blank=True)
    referrer = models.URLField(max_length=2000, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    browser_language = models.CharField(max_length=35, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    country = models.CharField(max_length=2, blank=True)
    city = models.CharField(max_length=100, blank=True)
    region = models.CharField(max_length=10, blank=True, help_text="State or province code, from GeoIP.")
    postal_code = models.CharField(max_length=20, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    prechat = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["inbox", "visitor_id"], name="visitor_session_unique")]

    def __str__(self) -> str:
        return f"visitor {self.visitor_id[:8]} on {self.inbox_id}"

    @property
    def source_id(self) -> str:
        """The contact identity this browser writes as: the verified user id, or the anonymous visitor id."""
        return f"user:{self.verified_user_id}" if self.verified_user_id else self.visitor_id


class ChatSurvey(models.Model):
    """The visitor's post-chat rating (1 poor … 5 excellent) and comment."""

    conversation = models.OneToOneField("conversations.Conversation", on_delete=models.CASCADE,
                                        related_name="survey")
    rating = models.PositiveSmallIntegerField()
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.rating}/5 on #{self.conversation_id}"


class WrapUp(models.Model):
    """An agent's disposition and note when a chat ends."""

    conversation = models.OneToOneField("conversations.Conversation", on_delete=models.CASCADE,
                                        related_name="wrap_up")
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    disposition = models.CharField(max_length=100)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.disposition} on #{self.conversation_id}"
