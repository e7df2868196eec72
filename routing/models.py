"""Routing rules, the queue and the stored routing decisions (agents, teams and skills: agents.models)."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from conversations.conditions import CONVERSATION, clean_model_field


class RoutingRule(models.Model):
    """An admin-configured rule: the first active rule (by position) that matches and can be served wins.

    ``conditions``: ``[{"field": "prechat.department", "op": "eq", "value": "Billing"}, …]`` combined by
    ``match`` (all/any), in the condition language about a conversation: fields and ops are catalogued in
    conversations/conditions.py (FIELDS, PREFIXES, OPERATORS), e.g. inbox, channel, priority, prechat.<key>,
    segment, vip_level, history.conversations, last_agent, country, language, text, tags, attributes.<key>,
    meta.<key>, business_hours (op within, {"tz", "days"}).
    """

    class Target(models.TextChoices):
        AGENT = "agent", "A specific agent"
        TEAM = "team", "A team"
        SKILL = "skill", "Agents with a skill"
        LAST_AGENT = "last_agent", "The last agent who served the customer"
        ACCOUNT_MANAGER = "account_manager", "The segment's account manager"

    name = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=100, help_text="Lower runs first.")
    is_active = models.BooleanField(default=True)
    match = models.CharField(max_length=3, choices=[("all", "All conditions"), ("any", "Any condition")],
                             default="all")
    conditions = models.JSONField(default=list, blank=True)
    target = models.CharField(max_length=20, choices=Target.choices, default=Target.TEAM)
    target_agent = models.ForeignKey("agents.AgentProfile", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    target_team = models.ForeignKey("agents.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    target_skill = models.ForeignKey("agents.Skill", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    skill_min_level = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1),
                                                                              MaxValueValidator(5)])
    secondary_target = models.CharField(max_length=20, choices=Target.choices, blank=True)
    secondary_agent = models.ForeignKey("agents.AgentProfile", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    secondary_team = models.ForeignKey("agents.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    secondary_skill = models.ForeignKey("agents.Skill", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    set_priority = models.SmallIntegerField(null=True, blank=True, choices=[(0, "Low"), (1, "Normal"), (2, "High"),
                                                                           (3, "Urgent")])
    set_tags = models.CharField(max_length=200, blank=True, help_text="Comma separated")
    set_team = models.ForeignKey("agents.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name

    def clean_fields(self, exclude=None) -> None:
        clean_model_field(self, exclude, "conditions", subject=CONVERSATION, clean_fields=super().clean_fields)


class RoutingConfig(models.Model):
    """One row: what happens when no rule can be served."""

    class Overflow(models.TextChoices):
        QUEUE = "queue", "Wait in the queue for the inbox's teams"
        TICKET = "ticket", ("Become a ticket for later follow-up (open, unassigned, tagged follow-up); "
                            "live chats wait in the queue")
        BOT = "bot", "Hand to the bot (falls back to the queue until the bot exists)"

    overflow = models.CharField(max_length=10, choices=Overflow.choices, default=Overflow.QUEUE)
    reopen_window_hours = models.PositiveIntegerField(
        default=72, help_text="A customer writing again within this window goes back to the same agent.")
    returning_first = models.BooleanField(
        default=False, help_text="On: a customer writing again after a solved or closed conversation (within the "
                                 "reopen window) goes back to its agent, when available, before the rules. Off: the "
                                 "rules first (e.g. \"chatted more than 3 times\" -> Tier 2), that agent after them.")
    average_handle_seconds = models.PositiveIntegerField(default=300, help_text="Used for the estimated wait.")

    def __str__(self) -> str:
        return "Routing settings"

    @classmethod
    def get(cls) -> RoutingConfig:
        return cls.objects.get_or_create(pk=1)[0]


class QueueEntry(models.Model):
    """A conversation waiting for an agent (or offered to one, waiting for the accept)."""

    class State(models.TextChoices):
        WAITING = "waiting", "Waiting"
        OFFERED = "offered", "Offered"

    conversation = models.OneToOneField("conversations.Conversation", on_delete=models.CASCADE,
                                        related_name="queue_entry")
    inbox = models.ForeignKey("conversations.Inbox", on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=10, choices=State.choices, default=State.WAITING)
    priority = models.SmallIntegerField(default=1)
    enqueued_at = models.DateTimeField()
    offered_to = models.ForeignKey("agents.AgentProfile", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="offers")
    offer_expires_at = models.DateTimeField(null=True, blank=True)
    excluded_agents = models.JSONField(default=list, blank=True, help_text="Agents who missed this offer or let go of this conversation (until they are next online).")
    for_team = models.ForeignKey("agents.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                 help_text="Transferred to this team: it waits for this team's agents only.")

    class Meta:
        indexes = [
            # Queue order: highest priority first, then longest waiting.
            models.Index(fields=["state", "-priority", "enqueued_at"], name="routing_queue_order"),
            # The offer-timeout sweep.
            models.Index(fields=["offer_expires_at"], name="routing_offer_expiry",
                         condition=models.Q(state="offered")),
        ]

    def __str__(self) -> str:
        return f"{self.state} #{self.conversation_id}"


class RoutingDecision(models.Model):
    """Why a conversation went where it went: rules evaluated, candidates and why they were skipped."""

    class Outcome(models.TextChoices):
        ASSIGNED = "assigned", "Assigned"
        OFFERED = "offered", "Offered"
        QUEUED = "queued", "Queued"
        TICKET = "ticket", "Ticket for follow-up"
        MISSED = "missed", "Offer missed"

    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE,
                                     related_name="routing_decisions")
    created_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    rule = models.ForeignKey(RoutingRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    agent = models.ForeignKey("agents.AgentProfile", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    method = models.CharField(max_length=20, blank=True)
    summary = models.CharField(max_length=300)
    details = models.JSONField(default=dict)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["conversation", "-id"], name="routing_decision_conv")]

    def __str__(self) -> str:
        return self.summary


class AgentLoad(models.Model):
    """How many conversations each agent is working, per channel class: open conversations assigned to the user
    plus live-chat offers waiting for their accept, live chat (web chat) apart from asynchronous channels.

    Written only by PostgreSQL triggers (migration 0005) on the conversations, the queue and the
    inboxes, in the same transaction as the change, however it is made (actions, admin, bulk, raw SQL):
    routing reads an agent's load here with one key lookup instead of counting their conversations. The
    application never writes these rows; routing.tasks reconciles them with the counts hourly (and logs any
    drift, which should never happen)."""

    user_id = models.BigIntegerField(primary_key=True)
    chats = models.IntegerField(default=0)
    asynchronous = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"user {self.user_id}: {self.chats} live, {self.asynchronous} asynchronous"
