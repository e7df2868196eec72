"""Widget interface text, translated with Django's catalogs (locale/<lang>/LC_MESSAGES/django.po)."""

from django.utils import translation
from django.utils.translation import gettext_lazy as _

from .models import WidgetConfig

STRINGS = {
    "open": _("Open chat"),
    "close": _("Close chat"),
    "popout": _("Open in a new window"),
    "send": _("Send"),
    "placeholder": _("Type your message…"),
    "attach": _("Attach a file"),
    "start": _("Start chat"),
    "end": _("End chat"),
    "end_confirm": _("End this chat?"),
    "typing": _("%(name)s is typing…"),
    "agent": _("Agent"),
    "you": _("You"),
    "read": _("Read"),
    "sending": _("Sending…"),
    "queued_offline": _("Will send when you're back online"),
    "failed": _("Not sent"),
    "retry": _("Retry"),
    "queue_position": _("You are number %(position)s in the queue."),
    "wait_estimate": _("Estimated wait: about %(minutes)s min."),
    "offline_title": _("Leave us a message"),
    "offline_sent": _("Thanks! We'll answer you by email."),
    "name": _("Name"),
    "email": _("Email"),
    "message": _("Message"),
    "submit": _("Send message"),
    "survey_comment": _("Anything else you'd like to tell us? (optional)"),
    "survey_submit": _("Send feedback"),
    "survey_thanks": _("Thank you for your feedback!"),
    "rating_1": _("Poor"),
    "rating_2": _("Fair"),
    "rating_3": _("Average"),
    "rating_4": _("Good"),
    "rating_5": _("Excellent"),
    "transcript": _("Email me the transcript"),
    "transcript_sent": _("The transcript is on its way."),
    "new_chat": _("Start a new chat"),
    "chat_ended": _("This chat has ended."),
    "reconnecting": _("Reconnecting…"),
    "required": _("required"),
}


def widget_strings(language: str) -> dict[str, str]:
    with translation.override(language):
        return {key: str(value) for key, value in STRINGS.items()}


# The widget's default texts (WidgetConfig's field defaults, in English): shown translated in the visitor's
# language while the admin has not replaced them with texts of their own.
CONFIG_DEFAULTS = {
    "title": _("We're here to help"),
    "greeting": _("Hi! Ask us anything, we usually reply in a few minutes."),
    "prechat_message": _("Tell us a little about you."),
    "offline_message": _("We're offline right now. Leave a message and we'll answer by email."),
    "queue_message": _("Thanks! An agent will be with you shortly."),
    "postchat_question": _("How was your chat?"),
    "button_text": _("Chat with us"),
}
FIELD_LABELS = {"Name": _("Name"), "Email": _("Email"), "Department": _("Department")}


def localized_config(config, language: str) -> dict:
    """The config's visitor-facing texts and pre-chat fields in `language`: an admin's own text as written,
    a default in translation (the department choices stay as configured: routing rules match them)."""
    with translation.override(language):
        out = {}
        for field, translated in CONFIG_DEFAULTS.items():
            value = getattr(config, field)
            out[field] = str(translated) if value == WidgetConfig._meta.get_field(field).default else value
        fields = config.fields
        if not config.prechat_fields:
            fields = [dict(f, label=str(FIELD_LABELS.get(f["label"], f["label"]))) for f in fields]
        out["prechat_fields"] = fields
    return out
