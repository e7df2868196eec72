from django import forms
from django.contrib import admin

from .models import QueueEntry, RoutingConfig, RoutingDecision, RoutingRule

OPS = {"eq", "neq", "gt", "gte", "lt", "lte", "contains", "startswith", "in", "not_in", "any_of", "exists", "within"}
FIELDS = {"inbox", "channel", "priority", "segment", "vip_level", "history.conversations",
          "history.open_high_priority", "last_agent", "account_manager", "country", "state", "zip", "timezone",
          "language", "page_url", "campaign", "text", "tags", "business_hours"}


class RoutingRuleForm(forms.ModelForm):
    class Meta:
        model = RoutingRule
        fields = ["name", "position", "is_active", "match", "conditions", "target", "target_agent", "target_team",
                  "target_skill", "skill_min_level", "secondary_target", "secondary_agent", "secondary_team",
                  "secondary_skill", "set_priority", "set_tags", "set_team"]

    def clean_conditions(self):
        conditions = self.cleaned_data.get("conditions")
        if conditions is None:
            conditions = []
        if not isinstance(conditions, list):
            raise forms.ValidationError('A list such as [{"field": "language", "op": "eq", "value": "es"}]')
        for cond in conditions:
            if not isinstance(cond, dict) or "field" not in cond or "op" not in cond:
                raise forms.ValidationError(f"{cond!r}: each condition needs field, op and usually value")
            if not isinstance(cond["field"], str) or not isinstance(cond["op"], str):
                raise forms.ValidationError(f"{cond!r}: field and op are text, such as \"language\" and \"eq\"")
            field = cond["field"]
            if field not in FIELDS and not field.startswith(("prechat.", "attributes.", "meta.")):
                raise forms.ValidationError(f"Unknown field {field!r}")
            if field.startswith(("prechat.", "attributes.", "meta.")) and not field.partition(".")[2].strip(". "):
                raise forms.ValidationError(f"{field!r}: name the answer or attribute, e.g. prechat.department")
            if cond["op"] not in OPS:
                raise forms.ValidationError(f"Unknown op {cond['op']!r}; use one of {', '.join(sorted(OPS))}")
            if cond["op"] == "within":
                from conversations.business_hours import hours_errors

                errors = hours_errors(cond.get("value"))
                if errors or not cond.get("value"):
                    raise forms.ValidationError(f"{field} within: " + ("; ".join(errors) or "give the hours"))
        return conditions

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
