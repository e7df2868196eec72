import re

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from conversations.actions import MAX_ATTACHMENT_BYTES
from conversations.business_hours import hours_errors

from .models import ChatSurvey, VisitorSession, WidgetConfig, WrapUp
from .views import snippet

COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
FIELD_TYPES = {"text", "email", "tel", "select", "textarea"}


class WidgetConfigForm(forms.ModelForm):
    class Meta:
        model = WidgetConfig
        fields = [
            "inbox", "button_color", "button_text", "button_icon", "position", "header_color", "header_text_color",
            "window_background", "title", "greeting", "show_agent_avatars", "display_mode", "mobile_fullscreen",
            "mobile_button_text", "allowed_origins", "require_identity_verification", "prechat_enabled",
            "prechat_message", "prechat_fields", "offline_message", "queue_message", "business_hours",
            "postchat_survey_enabled", "postchat_question", "dispositions", "max_upload_mb", "allowed_upload_types",
            "messages_per_minute",
        ]
        widgets = {name: forms.TextInput(attrs={"type": "color"}) for name in
                   ("button_color", "header_color", "header_text_color", "window_background")}

    def clean(self):
        data = super().clean()
        for name in ("button_color", "header_color", "header_text_color", "window_background"):
            if data.get(name) and not COLOR.match(data[name]):
                self.add_error(name, "Use a hex colour such as #0b5cad")
        inbox = data.get("inbox")
        if inbox is not None and inbox.kind != "webchat":
            self.add_error("inbox", "Widget settings belong to a web-chat inbox")
        for line in (data.get("allowed_origins") or "").splitlines():
            if line.strip() and not re.match(r"^https?://[^/\s]+$", line.strip().rstrip("/")):
                self.add_error("allowed_origins", f"{line.strip()!r} is not an origin like https://www.example.com")
        fields = data.get("prechat_fields") or []
        if not isinstance(fields, list) or any(
                not isinstance(f, dict) or not f.get("name") or f.get("type", "text") not in FIELD_TYPES
                or (f.get("type") == "select" and not f.get("options")) for f in fields):
            self.add_error("prechat_fields", 'A list of {"name", "label", "type": text|email|tel|select|textarea, '
                                             '"required", "options" (for select)}')
        dispositions = data.get("dispositions")
        if dispositions is not None and (not isinstance(dispositions, list) or not all(
                isinstance(d, str) and 0 < len(d) <= 100 for d in dispositions)):
            self.add_error("dispositions", 'A list of names, e.g. ["Resolved", "Follow-up needed"]')
        cap = MAX_ATTACHMENT_BYTES // (1024 * 1024)
        if (data.get("max_upload_mb") or 0) > cap:
            self.add_error("max_upload_mb", f"At most {cap} MB (the server's limit for any attachment)")

        for error in hours_errors(data.get("business_hours")):
            self.add_error("business_hours", error)
        return data


@admin.register(WidgetConfig)
class WidgetConfigAdmin(admin.ModelAdmin):
    form = WidgetConfigForm
    list_display = ["inbox", "title", "display_mode", "position"]
    readonly_fields = ["embed_snippet"]

    class Media:
        js = ["admin-extras/select-on-click.js"]  # the snippet's select-all (no inline handlers: docs/security.md)

    @admin.display(description="Paste this into your website")
    def embed_snippet(self, obj):
        if not obj or not obj.pk:
            return "Save to get the snippet."
        return format_html('<textarea readonly rows="3" cols="100" data-select-on-click>{}</textarea>',
                           snippet(obj.inbox))


@admin.register(VisitorSession)
class VisitorSessionAdmin(admin.ModelAdmin):
    list_display = ["visitor_id", "inbox", "contact", "visits", "country", "last_seen_at"]
    list_filter = ["inbox"]
    readonly_fields = [f.name for f in VisitorSession._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(ChatSurvey)
class ChatSurveyAdmin(admin.ModelAdmin):
    list_display = ["conversation", "rating", "created_at"]
    list_filter = ["rating"]


@admin.register(WrapUp)
class WrapUpAdmin(admin.ModelAdmin):
    list_display = ["conversation", "disposition", "agent", "created_at"]
    list_filter = ["disposition"]
