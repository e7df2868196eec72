"""SLA policies, business calendars and the clocks that time every conversation."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from conversations.conditions import CONVERSATION, clean_model_field

from .escalations import clean_escalations

METRICS = ["first_response", "next_response", "periodic_update", "resolution"]
PRIORITY_NAMES = {0: "low", 1: "normal", 2: "high", 3: "urgent"}


class BusinessCalendar(models.Model):
    """Weekly opening intervals in a time zone, plus holidays.

    ``intervals``: ``{"mon": [["09:00", "12:00"], ["13:00", "17:30"]], "tue": [...], ...}`` (local wall time;
    several intervals a day; an interval may end at "24:00").
    """

    name = models.CharField(max_length=100, unique=True)
    timezone = models.CharField(max_length=64, default="UTC")
    intervals = models.JSONField(default=dict)

    def __str__(self) -> str:
        return self.name


class Holiday(models.Model):
    calendar = models.ForeignKey(BusinessCalendar, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["calendar", "date"], name="sla_holiday_unique")]
        ordering = ["date"]

    def __str__(self) -> str:
        return f"{self.date} {self.name}"


class SlaPolicy(models.Model):
    """The first active policy (by position) whose conditions match applies to a conversation.

    ``targets``: minutes per metric and priority, e.g. ``{"first_response": {"urgent": 15, "high": 60,
    "normal": 240, "low": 480}, "resolution": {"normal": 2880}}``. A missing entry means no target.
    ``conditions`` are routing rules' condition language about a conversation (conversations/conditions.py:
    channel, inbox, priority, segment, vip_level, tags, attributes.<key>, meta.<key>, team, text…).
    """

    name = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=100)
    is_active = models.BooleanField(default=True)
    match = models.CharField(max_length=3, choices=[("all", "All conditions"), ("any", "Any condition")],
                             default="all")
    conditions = models.JSONField(default=list, blank=True)
    targets = models.JSONField(default=dict)
    calendar = models.ForeignKey(BusinessCalendar, null=True, blank=True, on_delete=models.SET_NULL,
                                 help_text="Business hours for the targets counted in business time.")
    business_time_metrics = models.JSONField(default=list, blank=True,
                                             help_text='Metrics counted in business time, e.g. ["first_response"]')
    pause_statuses = models.JSONField(default=list, blank=True,
                                      help_text='Statuses that stop the clock, e.g. ["pending", "on_hold"]')
    warn_at_percent = models.PositiveSmallIntegerField(default=75)
    escalations = models.JSONField(default=dict, blank=True, help_text=(
        '{"warning": [{"action": "notify", "to": "assignee"}], "breach": [{"action": "raise_priority"}, '
        '{"action": "add_tag", "tag": "sla-breached"}, {"action": "reassign_team", "team": 3}, '
        '{"action": "notify", "to": "team_lead"}, {"action": "notify", "users": [5]}, '
        '{"action": "webhook", "url": "https://…"}]}'))

    class Meta:
        ordering = ["position", "id"]
        verbose_name_plural = "SLA policies"

    def __str__(self) -> str:
        return self.name

    def clean_fields(self, exclude=None) -> None:
        errors: dict = {}
        try:
            clean_model_field(self, exclude, "conditions", subject=CONVERSATION, clean_fields=super().clean_fields)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        if not (exclude and "escalations" in exclude) and "escalations" not in errors:
            try:
                clean_escalations(self.escalations)
            except ValidationError as exc:
                errors["escalations"] = exc.messages
        if errors:
            raise ValidationError(errors)

    def target_minutes(self, metric: str, priority: int) -> int | None:
        value = (self.targets or {}).get(metric, {}).get(PRIORITY_NAMES.get(priority, "normal"))
        try:
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None


class SlaClock(models.Model):
    """One target of one conversation: absolute due time, pauses, warning and breach, each recorded once."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        FULFILLED = "fulfilled", "Achieved"
        CANCELLED = "cancelled", "Cancelled"

    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE,
                                     related_name="sla_clocks")
    policy = models.ForeignKey(SlaPolicy, null=True, on_delete=models.SET_NULL, related_name="clocks")
    metric = models.CharField(max_length=20)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    target_seconds = models.PositiveIntegerField()
    business_time = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    # Seconds of the target consumed before the current running period (kept across pauses and re-policy).
    consumed_seconds = models.PositiveIntegerField(default=0)
    running_since = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    warn_at = models.DateTimeField(null=True, blank=True)
    warned_at = models.DateTimeField(null=True, blank=True)
    breached_at = models.DateTimeField(null=True, blank=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The breach sweep: running clocks not yet breached, by due time.
            models.Index(fields=["due_at"], name="sla_clock_due", condition=Q(state="running", breached_at=None)),
            # The warning sweep.
            models.Index(fields=["warn_at"], name="sla_clock_warn",
                         condition=Q(state="running", warned_at=None, breached_at=None)),
            models.Index(fields=["conversation", "state"], name="sla_clock_conversation"),
        ]

    def __str__(self) -> str:
        return f"{self.metric} #{self.conversation_id} {self.state}"

    @property
    def label(self) -> str:
        return self.metric.replace("_", " ").capitalize()


class SlaEvent(models.Model):
    """A clock transition: started, paused, resumed, warned, breached, fulfilled, fulfilled_late, cancelled."""

    clock = models.ForeignKey(SlaClock, on_delete=models.CASCADE, related_name="events")
    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20)
    at = models.DateTimeField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            # Warned and breached happen once per clock, even with two sweepers.
            models.UniqueConstraint(fields=["clock", "kind"], name="sla_event_once",
                                    condition=Q(kind__in=["warned", "breached", "fulfilled", "fulfilled_late"])),
        ]
        indexes = [models.Index(fields=["kind", "at"], name="sla_event_kind_at")]

    def __str__(self) -> str:
        return f"{self.kind} {self.clock_id}"


class SlaNotification(models.Model):
    """An in-console notification from an escalation (and by email once email exists for agents)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sla_notifications")
    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE, related_name="+")
    text = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.text
