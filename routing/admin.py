from django import forms
from django.contrib import admin

from conversations.conditions import CONVERSATION, clean_conditions, help_text

from .models import QueueEntry, RoutingConfig, RoutingDecision, RoutingRule


class RoutingRuleForm(forms.ModelForm):
    class Meta:
        model = RoutingRule
        fields = ["name", "position", "is_active", "match", "conditions", "target", "target_agent", "target_team",
                  "target_skill", "skill_min_level", "secondary_target", "secondary_agent", "secondary_team",
                  "secondary_skill", "set_priority", "set_tags", "set_team"]
        help_texts = {"conditions": help_text(CONVERSATION)}

    def clean_conditions(self):
        return clean_conditions(self.cleaned_data.get("conditions"), subject=CONVERSATION)

    def clean(self):
        data = super().clean()
        for prefix, kind in (("target", data.get("target")), ("secondary", data.get("secondary_target"))):
            needs = {"agent": f"{prefix}_agent", "team": f"{prefix}_team", "skill": f"{prefix}_skill"}.get(kind or "")
            if needs and not data.get(needs):
                self.add_error(needs, f"Choose the {kind} for this target")
        return data


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    form = RoutingRuleForm
    list_display = ["position", "name", "is_active", "target", "target_team", "secondary_target"]
    list_display_links = ["name"]
    list_editable = ["position", "is_active"]


@admin.register(RoutingConfig)
class RoutingConfigAdmin(admin.ModelAdmin):
    list_display = ["__str__", "overflow", "reopen_window_hours"]

    def has_add_permission(self, request):
        return not RoutingConfig.objects.exists()


@admin.register(QueueEntry)
class QueueEntryAdmin(admin.ModelAdmin):
    list_display = ["conversation", "inbox", "state", "priority", "enqueued_at", "offered_to", "offer_expires_at"]
    list_filter = ["state", "inbox"]
    ordering = ["state", "-priority", "enqueued_at"]

    def has_add_permission(self, request):
        return False


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "conversation", "outcome", "agent", "summary"]
    list_filter = ["outcome"]
    readonly_fields = ["conversation", "created_at", "outcome", "rule", "agent", "method", "summary", "details"]

    def has_add_permission(self, request):
        return False
