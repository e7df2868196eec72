"""The admin of agents, teams, skills, users and API tokens, with the rules of agents.actions: only admins
assign roles, nobody changes their own, and the superuser/staff flags, groups and raw permissions of users
are a superuser's alone (a non-superuser neither sees them nor edits a superuser)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from .actions import can_change_role, do_change_agent_role, do_create_api_token, do_set_agent_role, is_admin
from .models import AgentProfile, AgentSkill, ApiToken, Skill, Team

User = get_user_model()
PRIVILEGED_USER_FIELDS = ("is_superuser", "is_staff", "groups", "user_permissions")


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


class AgentProfileForm(forms.ModelForm):
    def clean_languages(self):
        value = self.cleaned_data.get("languages")
        if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 35 for v in value):
            raise forms.ValidationError('A list of language codes, e.g. ["en", "es"]')
        return value


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    form = AgentProfileForm
    list_display = ["user", "display_name", "role", "status", "max_concurrent", "max_concurrent_async",
                    "missed_offers", "last_seen_at"]
    list_filter = ["role", "status", "teams"]
    search_fields = ["user__username", "display_name", "user__email"]
    filter_horizontal = ["teams"]
    inlines = [AgentSkillInline]
    readonly_fields = ["status", "status_changed_at", "last_seen_at", "last_assigned_at", "missed_offers"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(self.readonly_fields)
        if obj is not None:
            fields.append("user")  # a profile stays its user's: no moving a role onto another account
            if not can_change_role(request.user, obj):
                fields.append("role")
        elif not is_admin(request.user):
            fields.append("role")
        return fields

    def save_model(self, request, obj, form, change):
        role = obj.role
        if change:
            obj.role = AgentProfile.objects.get(pk=obj.pk).role
            super().save_model(request, obj, form, change)
            do_change_agent_role(actor=request.user, agent=obj, role=role)  # the field is read-only unless allowed
        else:
            if role != AgentProfile.Role.AGENT and not (is_admin(request.user) and (
                    request.user.is_superuser or obj.user_id != request.user.pk)):
                role = AgentProfile.Role.AGENT
            obj.role = AgentProfile.Role.AGENT
            super().save_model(request, obj, form, change)
            do_set_agent_role(agent=obj, role=role)


admin.site.unregister(User)


@admin.register(User)
class GuardedUserAdmin(UserAdmin):
    """Django's user admin, minus what lets a non-superuser raise anyone's privileges (their own included)."""

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        return [(name, {**opts, "fields": [f for f in opts["fields"] if f not in PRIVILEGED_USER_FIELDS]})
                for name, opts in fieldsets]

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False  # also guards the password form (UserAdmin.user_change_password asks this)
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["user", "name"]

    def clean(self):
        data = super().clean()
        user = data.get("user")
        if user is not None and user.api_tokens.count() >= 20:
            raise forms.ValidationError("This user has 20 tokens: revoke one first.")
        return data


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are listed by name and prefix, never by key (only its hash is stored). Deleting one revokes it;
    a token added here shows its key once, in the message after saving."""

    form = ApiTokenForm
    list_display = ["name", "user", "prefix", "created_at", "last_used_at"]
    list_filter = ["created_at"]
    search_fields = ["name", "user__username", "prefix"]
    autocomplete_fields = ["user"]

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        token, key = do_create_api_token(user=obj.user, name=obj.name)
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = token.pk, token.prefix, token.key_hash, token.created_at
        obj._state.adding = False
        messages.warning(request, f"The key of “{token.name}” for {token.user}: {key} — copy it now: it is "
                                  "not shown again.")
