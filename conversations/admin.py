"""Admin: configuration models are edited directly; conversation changes go through actions."""

from __future__ import annotations

import re

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.shortcuts import redirect
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from . import actions, channels
from .conditions import CONTACT, clean_rule, help_text
from .models import (
    Attachment,
    CannedMessage,
    Contact,
    ContactIdentity,
    ContactSegment,
    Conversation,
    ConversationEvent,
    InboundDelivery,
    Inbox,
    Message,
    MessageTemplate,
    Segment,
    SmsConsent,
    SmsConsentEvent,
    Tag,
    _new_token,
)


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["name", "label", "color", "priority_level", "account_manager", "rule"]
        help_texts = {"rule": 'Optional membership rule, {"match": "all" or "any", "conditions": [...]}; empty = by '
                            "hand only. " + help_text(CONTACT)}

    def clean_rule(self):
        return clean_rule(self.cleaned_data.get("rule"), subject=CONTACT)

    def clean_color(self):
        color = self.cleaned_data["color"]
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", color or ""):
            raise forms.ValidationError("Use a hex colour such as #d97706")
        return color


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ["name", "label", "swatch", "priority_level", "account_manager", "has_rule"]
    actions = ["reapply_rules"]

    @admin.display(description="Colour")
    def swatch(self, obj):
        return format_html('<span style="display:inline-block;width:14px;height:14px;background:{}"></span> {}',
                           obj.color, obj.color)

    @admin.display(boolean=True)
    def has_rule(self, obj):
        return bool(obj.rule)

    @admin.action(description="Re-apply membership rules to all contacts")
    def reapply_rules(self, request, queryset):
        count = 0
        for contact in Contact.objects.filter(merged_into__isnull=True).iterator():
            with transaction.atomic():
                actions.do_apply_segment_rules(contact)
            count += 1
        self.message_user(request, f"Rules re-applied to {count} contacts.")


class IdentityInline(admin.TabularInline):
    model = ContactIdentity
    extra = 0


class ContactSegmentInline(admin.TabularInline):
    model = ContactSegment
    extra = 0
    readonly_fields = ["source", "added_at"]


class ContactForm(forms.ModelForm):
    def clean_custom_attributes(self):
        value = self.cleaned_data.get("custom_attributes")
        if not isinstance(value, dict):
            raise forms.ValidationError('Enter a JSON object, e.g. {"plan": "pro"}.')
        return value


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    form = ContactForm
    list_display = ["id", "name", "email", "phone", "country", "created_at", "merged_into"]
    search_fields = ["name", "email", "phone", "identities__value"]
    list_filter = ["segments"]
    inlines = [IdentityInline, ContactSegmentInline]
    readonly_fields = ["merged_into", "created_at", "updated_at"]
    actions = ["merge_contacts"]

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return
        data = {f: getattr(obj, f) for f in ("name", "email", "phone", "country", "language", "custom_attributes")}
        obj.refresh_from_db()
        actions.do_update_contact(actor=request.user, contact=obj, **data)

    @admin.action(description="Merge selected contacts into the oldest one")
    def merge_contacts(self, request, queryset):
        contacts = list(queryset.order_by("id"))
        if len(contacts) < 2:
            self.message_user(request, "Select at least two contacts.", messages.ERROR)
            return
        target = contacts[0]
        try:
            for source in contacts[1:]:
                actions.do_merge_contacts(actor=request.user, source=source, target=target)
        except actions.ActionError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"Merged {len(contacts) - 1} contact(s) into #{target.pk}.")


class InboxForm(forms.ModelForm):
    new_secret = forms.CharField(required=False, max_length=128, widget=forms.PasswordInput(render_value=False),
                                 help_text="Leave empty to keep the current secret. It is never shown back.")
    regenerate_secret = forms.BooleanField(required=False, help_text="Generate a new random secret.")

    class Meta:
        model = Inbox
        fields = ["name", "kind", "is_active", "settings"]

    def clean_settings(self):
        value = self.cleaned_data.get("settings")
        if not isinstance(value, dict):
            raise forms.ValidationError('Enter a JSON object, e.g. {"webhook_url": "https://shop.example/hook"}.')
        return value


@admin.register(Inbox)
class InboxAdmin(admin.ModelAdmin):
    form = InboxForm
    list_display = ["name", "kind", "is_active", "created_at"]
    list_filter = ["kind", "is_active"]
    readonly_fields = ["public_token", "secret_hint", "endpoints", "created_at"]

    @admin.display(description="Secret")
    def secret_hint(self, obj):
        return f"…{obj.secret[-4:]}" if obj and obj.secret else "-"

    @admin.display(description="Endpoints")
    def endpoints(self, obj):
        if not obj or not obj.pk:
            return "Save the inbox to see its endpoints."
        channel = channels.for_inbox(obj)
        rows = channel.endpoints(obj, settings.PUBLIC_BASE_URL) if channel.endpoints else []
        parts = [format_html('{}: <textarea readonly rows="2" cols="90">{}</textarea>{}', e.label, e.value,
                             format_html("<br><small>{}</small>", e.note) if e.note else "") for e in rows]
        if channel.settings_help:
            parts.append(format_html("Settings: <code>{}</code>", channel.settings_help))
        return format_html_join(mark_safe("<br>"), "{}", ((part,) for part in parts)) if parts else "-"

    def save_model(self, request, obj, form, change):
        if form.cleaned_data.get("regenerate_secret"):
            obj.secret = _new_token()
        elif form.cleaned_data.get("new_secret"):
            obj.secret = form.cleaned_data["new_secret"]
        super().save_model(request, obj, form, change)


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ["name"]


class ConversationAdminForm(forms.ModelForm):
    class Meta:
        model = Conversation
        fields = ["status", "priority", "assignee", "team", "subject", "tags"]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """Changes made here go through the same actions as the console (timeline + live events)."""

    form = ConversationAdminForm
    list_display = ["id", "contact", "inbox", "status", "priority", "assignee", "team", "created_at"]
    list_filter = ["status", "priority", "inbox__kind", "inbox", "team"]
    search_fields = ["id", "subject", "contact__name", "contact__email"]
    list_select_related = ["contact", "inbox", "assignee", "team"]
    autocomplete_fields = ["tags"]
    actions = ["merge_conversations", "mark_solved"]

    def has_add_permission(self, request):
        return False  # conversations start from a customer message on a channel

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        current = Conversation.objects.get(pk=obj.pk)
        changed = set(form.changed_data)
        if "status" in changed:
            actions.do_change_status(actor=request.user, conversation=current, status=data["status"])
        if "priority" in changed:
            actions.do_change_priority(actor=request.user, conversation=current, priority=data["priority"])
        if "subject" in changed:
            actions.do_change_subject(actor=request.user, conversation=current, subject=data["subject"])
        assign = {}
        if "assignee" in changed:
            assign["assignee"] = data["assignee"]
        if "team" in changed:
            assign["team"] = data["team"]
        if assign:
            actions.do_assign_conversation(actor=request.user, conversation=current, **assign)

    def save_related(self, request, form, formsets, change):
        if "tags" in form.changed_data:
            actions.do_set_tags(actor=request.user, conversation=form.instance,
                                names=[t.name for t in form.cleaned_data["tags"]])

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            with transaction.atomic():
                return super().changeform_view(request, object_id, form_url, extra_context)
        except actions.ActionError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return redirect(request.path)

    @admin.action(description="Merge selected conversations into the oldest (same contact)")
    def merge_conversations(self, request, queryset):
        convs = list(queryset.order_by("id"))
        try:
            for source in convs[1:]:
                actions.do_merge_conversations(actor=request.user, source=source, target=convs[0])
        except actions.ActionError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"Merged into #{convs[0].pk}.")

    @admin.action(description="Mark selected conversations solved")
    def mark_solved(self, request, queryset):
        for conversation in queryset:
            actions.do_change_status(actor=request.user, conversation=conversation,
                                     status=Conversation.Status.SOLVED)


class AttachmentInline(admin.TabularInline):
    model = Attachment
    extra = 0
    readonly_fields = ["filename", "content_type", "size"]
    exclude = ["file"]
    can_delete = False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written only by actions (messages, inbound deliveries): listed and viewed, never edited here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ["id", "conversation", "direction", "sender_type", "kind", "delivery_status", "created_at"]
    list_filter = ["direction", "kind", "delivery_status", "inbox__kind"]
    search_fields = ["provider_message_id"]
    list_select_related = ["conversation"]
    inlines = [AttachmentInline]


@admin.register(ConversationEvent)
class ConversationEventAdmin(admin.ModelAdmin):
    list_display = ["id", "conversation", "kind", "actor", "created_at"]
    list_filter = ["kind"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CannedMessage)
class CannedMessageAdmin(admin.ModelAdmin):
    list_display = ["shortcut", "title", "owner"]
    search_fields = ["shortcut", "title", "body"]


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "body"]


class SmsConsentEventInline(admin.TabularInline):
    model = SmsConsentEvent
    extra = 0
    readonly_fields = ["state", "source", "detail", "at"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(SmsConsent)
class SmsConsentAdmin(admin.ModelAdmin):
    """Consent changes go through the action (history is kept); the admin shows them."""

    list_display = ["phone", "inbox", "state", "source", "changed_at"]
    list_filter = ["state", "inbox", "source"]
    search_fields = ["phone"]
    readonly_fields = ["inbox", "phone", "contact", "state", "source", "changed_at"]
    inlines = [SmsConsentEventInline]

    def has_add_permission(self, request):
        return False


@admin.register(InboundDelivery)
class InboundDeliveryAdmin(ReadOnlyAdmin):
    """Inbound webhooks as stored before the 200; a worker turns each into its message (read-only here)."""

    list_display = ["id", "inbox", "provider_message_id", "sender", "received_at", "processed_at", "message",
                    "attempts", "error"]
    list_filter = [("processed_at", admin.EmptyFieldListFilter), "inbox"]
    search_fields = ["provider_message_id", "sender"]
    list_select_related = ["inbox"]
    raw_id_fields = ["message"]
