"""Agents, teams and skills. Routing rules and the queue arrive with issue #4."""

from __future__ import annotations

from django.conf import settings
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

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Skill(models.Model):
    """A skill such as a language, a product or a channel speciality (public Facebook posts)."""

    name = models.CharField(max_length=100, unique=True)

    class Meta:
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
        default=3, help_text="Concurrent-conversation limit (live chats).",
    )

    class Meta:
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
    level = models.PositiveSmallIntegerField(default=1, help_text="1 (basic) to 5 (expert)")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "skill"], name="routing_agentskill_unique")]

    def __str__(self) -> str:
        return f"{self.agent} · {self.skill} ({self.level})"
