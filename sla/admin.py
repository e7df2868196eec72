from datetime import date

from django import forms
from django.contrib import admin, messages

from conversations.conditions import CONVERSATION, clean_conditions, help_text

from .calendar import Calendar
from .models import BusinessCalendar, Holiday, SlaClock, SlaEvent, SlaNotification, SlaPolicy

METRICS = {"first_response", "next_response", "periodic_update", "resolution"}
PRIORITIES = {"low", "normal", "high", "urgent"}
STATUSES = {"open", "pending", "on_hold", "solved", "closed"}


def load_country_holidays(calendar: BusinessCalendar, country: str, year: int) -> int:
    """Public holidays of `country` (ISO code) for `year`, from the `holidays` package."""
    import holidays  # heavy (~0.15 s: every country's calendar), for this one admin action: not at every start

    created = 0
    for day, name in holidays.country_holidays(country, years=year).items():
        _, new = Holiday.objects.get_or_create(calendar=calendar, date=day, defaults={"name": name[:100]})
        created += new
    return Holiday.objects.filter(calendar=calendar, date__year=year).count()


class HolidayInline(admin.TabularInline):
    model = Holiday
    extra = 1


class CalendarForm(forms.ModelForm):
    load_holidays_for = forms.CharField(required=False, max_length=2,
                                        help_text="ISO country code (FR, US, DE…): add that country's public "
                                                  "holidays for this year and next.")

    class Meta:
        model = BusinessCalendar
        fields = ["name", "timezone", "intervals"]

    def clean(self):
        data = super().clean()
        try:
            Calendar.build(data.get("timezone") or "UTC", data.get("intervals") or {})
        except Exception as exc:  # bad zone name, bad interval
            raise forms.ValidationError(f"Invalid calendar: {exc}")
        return data


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(admin.ModelAdmin):
    form = CalendarForm
    inlines = [HolidayInline]
    list_display = ["name", "timezone"]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        country = (form.cleaned_data.get("load_holidays_for") or "").upper()
        if country:
            try:
                for year in (date.today().year, date.today().year + 1):
                    load_country_holidays(form.instance, country, year)
            except (KeyError, NotImplementedError):
                self.message_user(request, f"No holiday calendar for {country!r}", messages.ERROR)


class PolicyForm(forms.ModelForm):
    class Meta:
        model = SlaPolicy
        fields = ["name", "position", "is_active", "match", "conditions", "targets", "calendar",
                  "business_time_metrics", "pause_statuses", "warn_at_percent", "escalations"]
        help_texts = {"conditions": help_text(CONVERSATION)}

    def clean_conditions(self):
        return clean_conditions(self.cleaned_data.get("conditions"), subject=CONVERSATION)

    def clean_targets(self):
        targets = self.cleaned_data.get("targets") or {}
        if not isinstance(targets, dict) or not set(targets) <= METRICS:
            raise forms.ValidationError(f"Keys must be among {', '.join(sorted(METRICS))}")
        for metric, per_priority in targets.items():
            if not isinstance(per_priority, dict) or not set(per_priority) <= PRIORITIES:
                raise forms.ValidationError(f"{metric}: use {{\"normal\": minutes, …}} with low/normal/high/urgent")
            for value in per_priority.values():
                if not isinstance(value, int) or value <= 0:
                    raise forms.ValidationError(f"{metric}: targets are positive whole minutes")
        return targets

    def clean_pause_statuses(self):
        value = self.cleaned_data.get("pause_statuses") or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not set(value) <= STATUSES:
            raise forms.ValidationError(f"A list among {', '.join(sorted(STATUSES))}")
        return value

    def clean_business_time_metrics(self):
        value = self.cleaned_data.get("business_time_metrics") or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not set(value) <= METRICS:
            raise forms.ValidationError(f"A list among {', '.join(sorted(METRICS))}")
        return value


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin):
    form = PolicyForm
    list_display = ["position", "name", "is_active", "calendar", "warn_at_percent"]
    list_display_links = ["name"]


@admin.register(SlaClock)
class SlaClockAdmin(admin.ModelAdmin):
    list_display = ["conversation", "metric", "state", "due_at", "warned_at", "breached_at", "fulfilled_at"]
    list_filter = ["metric", "state"]
    readonly_fields = [f.name for f in SlaClock._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(SlaEvent)
class SlaEventAdmin(admin.ModelAdmin):
    list_display = ["at", "conversation", "kind", "clock"]
    list_filter = ["kind"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SlaNotification)
class SlaNotificationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "user", "conversation", "text"]
