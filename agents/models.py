"""The people who work conversations: agents' profiles (role, limits, languages, presence), teams and skills.

Part of the core: conversations, routing, SLA and the console all read them. The tables keep the names they
had when these models lived in routing (``routing_team``, ``routing_agentprofile``, ...): raw SQL, the agents'
load triggers (routing migration 0005) and the routing setup's version trigger name them.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Team(models.Model):
    """A team or department. Members see the conversations of the team's inboxes."""

    name = models.CharField(max_length=100, unique=True)
    inboxes = models.ManyToManyField(
        "conversations.Inbox", related_name="teams", blank=True,
        help_text="Inboxes whose conversations this team's members may see and work.",
    )
    lead = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="led_teams"
    )

    class Method(models.TextChoices):
        LEAST_BUSY = "least_busy", "Least busy (fewest active, then longest idle)"
        ROUND_ROBIN = "round_robin", "Round robin"
        MOST_CAPABLE = "most_capable", "Most capable (highest skill level)"
        STICKY = "sticky", "Last agent preferred, then least busy"

    distribution_method = models.CharField(max_length=20, choices=Method.choices, default=Method.LEAST_BUSY)
    sticky_minutes = models.PositiveIntegerField(default=1440, help_text="How long the last agent stays preferred.")
    auto_accept = models.BooleanField(default=True, help_text="Off: live chats are offered and must be accepted.")
    offer_timeout_seconds = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(5), MaxValueValidator(3600)],
        help_text="Seconds an agent has to accept an offered live chat (5 to 3600).")

    class Meta:
        db_table = "routing_team"  # the table it had in routing (raw SQL and the load triggers name it)
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Skill(models.Model):
    """A skill such as a language, a product or a channel speciality (public Facebook posts)."""

    name = models.CharField(max_length=100, unique=True)

    class Meta:
        db_table = "routing_skill"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentProfile(models.Model):
    class Role(models.TextChoices):
        AGENT = "agent", "Agent"
        SUPERVISOR = "supervisor", "Supervisor"
        ADMIN = "admin", "Admin"

    class Status(models.TextChoices):
        ONLINE = "online", "Online"
        AWAY = "away", "Away"
        OFFLINE = "offline", "Offline"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent")
    display_name = models.CharField(max_length=100, blank=True)
    avatar_url = models.URLField(blank=True, help_text="Shown to visitors in the chat widget.")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.AGENT)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OFFLINE)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # Refreshed by the console's websocket heartbeat; the presence sweep sets agents
    # whose console closed offline once this is older than PRESENCE_TIMEOUT_SECONDS.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    teams = models.ManyToManyField(Team, related_name="members", blank=True)
    languages = models.JSONField(default=list, blank=True, help_text='ISO codes, e.g. ["en", "es"]')
    skills = models.ManyToManyField(Skill, through="AgentSkill", related_name="agents", blank=True)
    max_concurrent = models.PositiveSmallIntegerField(
        default=3, help_text="Concurrent live chats (web chat). Newer agents: 1–2.",
    )
    max_concurrent_async = models.PositiveSmallIntegerField(
        default=10, help_text="Concurrent open conversations on asynchronous channels (email, SMS, social, API).",
    )
    timezone = models.CharField(max_length=64, blank=True, help_text="e.g. America/New_York")
    last_assigned_at = models.DateTimeField(null=True, blank=True)
    missed_offers = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "routing_agentprofile"
        indexes = [
            # Presence sweep: agents online/away whose heartbeat stopped.
            models.Index(fields=["status", "last_seen_at"], name="routing_agent_presence"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return self.display_name or self.user.get_full_name() or self.user.get_username()

    @property
    def sees_all_inboxes(self) -> bool:
        return self.role in (self.Role.SUPERVISOR, self.Role.ADMIN)


class AgentSkill(models.Model):
    agent = models.ForeignKey(AgentProfile, on_delete=models.CASCADE)
    skill = models.ForeignKey(Skill, on_delete=models.CASCADE)
    level = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(5)],
                                             help_text="1 (basic) to 5 (expert)")

    class Meta:
        db_table = "routing_agentskill"
        constraints = [models.UniqueConstraint(fields=["agent", "skill"], name="routing_agentskill_unique")]

    def __str__(self) -> str:
        return f"{self.agent} · {self.skill} ({self.level})"


class ApiToken(models.Model):
    """A REST API key of a user. Only its SHA-256 is stored: the key is shown once, when it is created
    (agents.actions.do_create_api_token); `prefix` (its first characters) tells keys apart in lists."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses it, e.g. “Shop backend”.")
    prefix = models.CharField(max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
