from django.contrib import admin

from .actions import do_set_agent_role
from .models import AgentProfile, AgentSkill, Skill, Team


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "lead", "distribution_method", "auto_accept"]
    filter_horizontal = ["inboxes"]


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    search_fields = ["name"]


class AgentSkillInline(admin.TabularInline):
    model = AgentSkill
    extra = 1


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "display_name", "role", "status", "max_concurrent", "max_concurrent_async",
                    "missed_offers", "last_seen_at"]
    list_filter = ["role", "status", "teams"]
    search_fields = ["user__username", "display_name", "user__email"]
    filter_horizontal = ["teams"]
    inlines = [AgentSkillInline]
    readonly_fields = ["status", "status_changed_at", "last_seen_at", "last_assigned_at", "missed_offers"]

    def save_model(self, request, obj, form, change):
        role = obj.role
        if change:
            obj.role = AgentProfile.objects.get(pk=obj.pk).role
        super().save_model(request, obj, form, change)
        do_set_agent_role(agent=obj, role=role)
