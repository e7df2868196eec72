"""The console's two repeated fragments, inbox rows and history messages, rendered in Python.

A page shows 50 rows and up to 100 messages. As Django templates (cached loader, no include per row, URLs
computed once) they made the page's CPU 4-6 times as much and missed the console benchmark's target by far
more than a quarter (figures of 2026-12-08 in docs/performance.md); everything else on the page is a template.
These functions build the same markup with ``escape()`` on every value that comes from the database or the
request (customer names, subjects, previews, message bodies, tag and segment names, colours, filenames), so
the escaping rules hold as in an autoescaped template. The templates include the result as a safe string.
"""

from __future__ import annotations

import datetime
import html
import re
from functools import lru_cache
from urllib.parse import quote

from django.template.defaultfilters import filesizeformat
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone
from django.utils.dates import MONTHS_3
from django.utils.html import avoid_wrapping
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import MONTHS_DAYS, TIME_CHUNKS, TIME_STRINGS, TIME_STRINGS_KEYS
from django.utils.translation import get_language, gettext

from . import channels
from .models import Conversation, Message

STATUS_LABELS = dict(Conversation.Status.choices)
PRIORITY_LABELS = dict(Conversation.Priority.choices)
SENDER_LABELS = dict(Message.SenderType.choices)
DELIVERY_LABELS = dict(Message.DeliveryStatus.choices)


def escape(value) -> str:
    """django.utils.html.escape (which is html.escape) without its lazy-string wrapper: called thousands of
    times per page. Every value from the database or the request goes through it."""
    return html.escape(value if isinstance(value, str) else str(value))


_NEWLINES = re.compile(r"\r\n|\r")


def _iso(value, tz=None) -> str:
    """The template filter ``date:'c'``: ISO 8601 in the current time zone (`tz`, when the caller has read it:
    timezone.get_current_timezone()), '' for None."""
    if value is None:
        return ""
    if value.utcoffset() is not None:  # timezone.is_aware / timezone.localtime
        value = value.astimezone(tz or timezone.get_current_timezone())
    return value.isoformat()


_ESCAPED: dict[str, str] = {}


def _escape_repeated(value: str) -> str:
    """escape() of a value that repeats from row to row (inbox and assignee names, tags, segment colours and
    labels, SLA metrics), remembered (at most a few thousand values; then forgotten all at once)."""
    out = _ESCAPED.get(value)
    if out is None:
        if len(_ESCAPED) >= 4096:
            _ESCAPED.clear()
        out = _ESCAPED[value] = escape(value)
    return out


_LABELS: dict[tuple, str] = {}


def _label(labels: dict, value, language: str | None) -> str:
    """escape(labels.get(value, value)) (a choice's label, translated lazily) per language."""
    key = (id(labels), value, language)
    out = _LABELS.get(key)
    if out is None:
        out = _LABELS[key] = escape(labels.get(value, value))
    return out


_WAIT_TEXT: dict[tuple, str] = {}


def waiting_for(d, now, language: str | None = None) -> str:
    """``{{ d|timesince }}`` (Django's timesince, depth 2) with the wording cached per language and parts.

    Same algorithm as django.utils.timesince.timesince; translating and joining the parts was most of its
    cost (50 of them per page). tests/conversations/test_console_html.py compares the two.
    """
    if timezone.is_aware(now) and timezone.is_aware(d):
        now = now.astimezone(d.tzinfo)
    delta = now - d
    if delta.days * 86400 + delta.seconds <= 0:
        parts = ()
    elif delta.days < 27:
        # Less than 27 days (a calendar month is at least 28 days, less an hour across a DST change): no
        # years or months, the pivot is d itself; integer arithmetic on the whole seconds gives the same
        # floors as the loop below.
        weeks, rest = divmod(int(delta.total_seconds()), 604800)
        days, rest = divmod(rest, 86400)
        hours, rest = divmod(rest, 3600)
        minutes = rest // 60
        if weeks:
            parts = (("week", weeks), ("day", days)) if days else (("week", weeks),)
        elif days:
            parts = (("day", days), ("hour", hours)) if hours else (("day", days),)
        elif hours:
            parts = (("hour", hours), ("minute", minutes)) if minutes else (("hour", hours),)
        else:
            parts = (("minute", minutes),) if minutes else ()
    else:
        total_months = (now.year - d.year) * 12 + (now.month - d.month)
        if d.day > now.day or (d.day == now.day and d.time() > now.time()):
            total_months -= 1
        years, months = divmod(total_months, 12)
        if years or months:
            pivot_year, pivot_month = d.year + years, d.month + months
            if pivot_month > 12:
                pivot_month -= 12
                pivot_year += 1
            pivot = datetime.datetime(pivot_year, pivot_month, min(MONTHS_DAYS[pivot_month - 1], d.day),
                                      d.hour, d.minute, d.second, tzinfo=d.tzinfo)
        else:
            pivot = d
        remaining = (now - pivot).total_seconds()
        partials = [years, months]
        for chunk in TIME_CHUNKS:
            count = int(remaining // chunk)
            partials.append(count)
            remaining -= chunk * count
        parts = ()
        for i, value in enumerate(partials):
            if value:
                parts = tuple((TIME_STRINGS_KEYS[j], partials[j]) for j in range(i, min(i + 2, len(partials))))
                if len(parts) == 2 and not parts[1][1]:
                    parts = parts[:1]
                break
    key = (language or get_language(), parts)
    text = _WAIT_TEXT.get(key)
    if text is None:
        if not parts:
            text = avoid_wrapping(TIME_STRINGS["minute"] % {"num": 0})
        else:
            text = gettext(", ").join(avoid_wrapping(TIME_STRINGS[name] % {"num": n}) for name, n in parts)
        _WAIT_TEXT[key] = text = str(text)
    return text


def _url_pattern(name: str) -> tuple[str, str]:
    """reverse() once with a marker id; rows then fill the id in by concatenation (reverse per row is slow).
    Remembered per script prefix and URLconf (the project's URLs do not depend on the language)."""
    return _url_pattern_for(name, get_script_prefix(), get_urlconf())


@lru_cache(maxsize=256)
def _url_pattern_for(name: str, _prefix: str, _urlconf) -> tuple[str, str]:
    marker = "987654321"
    url = reverse(name, args=[int(marker)])
    head, _, tail = url.partition(marker)
    return head, tail


# The conversation's forms and controls (console.html, _panel.html): {{ urls.<name> }} in place of
# {% url 'console:<name>' conversation.id %} (about 20 reverse() calls per page otherwise).
CONVERSATION_URLS = ("reply", "status", "priority", "assign", "assignees", "tags", "subject", "contact",
                     "merge_contact", "merge", "end_chat", "follow_up", "wrap_up", "accept_offer")


def conversation_urls(conversation_id: int) -> dict[str, str]:
    out = {}
    for name in CONVERSATION_URLS:
        head, tail = _url_pattern(f"console:{name}")
        out[name] = f"{head}{int(conversation_id)}{tail}"
    return out


def page_urls() -> dict[str, str]:
    """The console page's fixed links ({{ page_urls.<name> }})."""
    return _page_urls_for(get_script_prefix(), get_urlconf())


@lru_cache(maxsize=16)
def _page_urls_for(_prefix: str, _urlconf) -> dict[str, str]:
    return {"inbox": reverse("console:inbox"), "presence": reverse("console:presence"),
            "new_sms": reverse("console:new_sms"), "sla_report": reverse("sla-report"),
            "admin": reverse("admin:index"), "logout": reverse("logout"),
            "canned_mine": reverse("console:canned_mine"), "profile": reverse("console:profile")}


def filter_query_string(filter_query: dict[str, str]) -> str:
    """``{% for k, v in filter_query.items %}{{ k }}={{ v|urlencode }}&amp;{% endfor %}``"""
    return "".join(f"{escape(k)}={escape(quote(str(v), safe='/'))}&amp;" for k, v in filter_query.items())


def kind_label(kind: str) -> str:
    return channels.channel(kind).label


@lru_cache(maxsize=256)
def channel_icon(kind: str, label: str) -> SafeString:
    return mark_safe(f'<span class="channel channel-{escape(kind)}" title="{escape(label)}"><span aria-hidden="true">'
            f'{escape(channels.channel(kind).short)}</span><span class="sr-only">{escape(label)}</span></span>')


# --- inbox rows ---------------------------------------------------------------------


def render_rows(rows, filter_query: dict[str, str], current_id) -> SafeString:
    """The inbox list's <li> rows (the markup of the former console/_row.html)."""
    head, tail = _url_pattern("console:conversation")
    row = _RowRenderer(filter_query_string(filter_query), head, tail, str(current_id))
    return mark_safe("".join([row(c) for c in rows]))


def render_row(c, filter_query: dict[str, str], current_id) -> SafeString:
    head, tail = _url_pattern("console:conversation")
    return mark_safe(_RowRenderer(filter_query_string(filter_query), head, tail, str(current_id))(c))


class _RowRenderer:
    """Renders ConversationRow (selectors.list_conversations_for_agent) as <li>, with what every row of a page
    shares read once: the link's parts, the time, the time zone and the language."""

    def __init__(self, query: str, head: str, tail: str, current: str):
        self.query, self.head, self.tail, self.current = query, head, tail, current
        self.now = timezone.now()
        self.tz = timezone.get_current_timezone()
        self.language = get_language()

    def __call__(self, c) -> str:
        seg = c.segment
        tz, language = self.tz, self.language
        waiting = _iso(c.waiting_since, tz)
        kind = c.inbox_kind
        out = [
            f'<li class="row{" current" if str(c.id) == self.current else ""}" data-id="{c.id}" '
            f'data-waiting="{waiting}">',
            f'<a href="{self.head}{c.id}{self.tail}?{self.query}" class="row-link">',
            f'<span class="seg-bar" style="background: {_escape_repeated(seg[0]) if seg and seg[0] else "transparent"}" '
            'aria-hidden="true"></span>',
            channel_icon(kind, kind_label(kind)),
            '<span class="row-main"><span class="row-top">',
            f'<strong class="row-name">{escape(c.contact_display_name)}</strong>',
        ]
        if seg:
            color = _escape_repeated(seg[0])
            out.append(f'<span class="seg-badge" style="border-color: {color}; color: {color}">'
                       f'{_escape_repeated(seg[1])}</span>')
        out.append(f'<span class="row-id">#{c.id}</span></span><span class="row-preview">')
        if c.subject:
            out.append(f"<em>{escape(c.subject)}</em> · ")
        out.append(f'{escape(c.last_message_preview)}</span><span class="row-meta">'
                   f'<span class="status status-{_escape_repeated(c.status)}">'
                   f'{_label(STATUS_LABELS, c.status, language)}</span>')
        if c.priority >= 2:
            out.append(f'<span class="prio prio-{c.priority}">{_label(PRIORITY_LABELS, c.priority, language)}</span>')
        out.append(f"<span>{_escape_repeated(c.inbox_name)}</span>")
        out.append(f"<span>→ {_escape_repeated(c.assignee_name)}</span>" if c.assignee_id else "<span>Unassigned</span>")
        out.extend(f'<span class="tag">{_escape_repeated(name)}</span>' for name in c.tag_names)
        if c.sla_due_at or c.sla_paused:
            out.append(f'<span class="sla" data-due="{_iso(c.sla_due_at, tz)}" data-warn="{_iso(c.sla_warn_at, tz)}" '
                       f'data-paused="{"1" if c.sla_paused else ""}" title="SLA: {_escape_repeated(c.sla_metric)}">SLA</span>')
        if c.waiting_since:
            out.append(f'<span class="waiting" title="Waiting since {waiting}">waiting '
                       f"{_escape_repeated(waiting_for(c.waiting_since, self.now, language))}</span>")
        out.append("</span></span></a></li>")
        return "".join(out)


# --- history messages ---------------------------------------------------------------


def _linebreaksbr(value: str) -> str:
    """``{{ body|linebreaksbr }}`` with autoescape: escaped, newlines as <br>."""
    return escape(_NEWLINES.sub("\n", value)).replace("\n", "<br>")


_MONTH_ABBR: dict[tuple[str, int], str] = {}


def _short_time(value, language: str | None = None) -> str:
    """``{{ value|date:"M j, H:i" }}`` (value already in the current time zone; `language`: get_language())."""
    key = (language or get_language(), value.month)
    month = _MONTH_ABBR.get(key)
    if month is None:
        month = _MONTH_ABBR[key] = str(MONTHS_3[value.month]).title()
    return f"{month} {value.day}, {value.hour:02d}:{value.minute:02d}"


def _filesize(size: int) -> str:
    return filesizeformat(size)


def render_messages(history, conversation) -> SafeString:
    """The history's <li> messages (the markup of the former console/_messages.html)."""
    att_head, att_tail = _url_pattern("console:attachment")
    conv_head, conv_tail = _url_pattern("console:conversation")
    contact_name = escape(conversation.contact.display_name)
    tz = timezone.get_current_timezone()  # timezone.localtime's, read once
    language = get_language()
    out = []
    for m in history:
        note = m.kind == Message.Kind.NOTE
        other = m.conversation_id != conversation.id
        classes = f"msg msg-{escape(m.direction)}"
        if note:
            classes += " msg-note"
        if m.sender_type == "system":
            classes += " msg-system"
        if other:
            classes += " msg-other"
        if m.sender_type == "contact":
            who = contact_name
        elif m.sender_user_id:
            user = m.sender_user
            who = escape(user.get_full_name() or user.username)
        else:
            who = escape(SENDER_LABELS.get(m.sender_type, m.sender_type))
        created = m.created_at
        if created.utcoffset() is not None:  # timezone.localtime() of an aware value
            created = created.astimezone(tz)
        out.append(
            f'<li class="{classes}" data-id="{m.id}" id="m{m.id}"><div class="msg-head">'
            f"{channel_icon(m.inbox.kind, m.inbox.name)}"
            f'<span class="msg-who">{"Internal note by " if note else ""}{who}</span>'
            f'<time datetime="{created.isoformat()}">{_short_time(created, language)}</time>'
        )
        if other:
            out.append(f'<a class="msg-conv" href="{conv_head}{m.conversation_id}{conv_tail}">'
                       f"#{m.conversation_id}</a>")
        if m.direction == "out" and not note and m.sender_type != "system":
            status = m.delivery_status
            label = escape(DELIVERY_LABELS.get(status, status))
            reason = escape(m.failure_reason)
            title = f"{label}: {reason}" if m.failure_reason else label
            text = {"failed": f"⚠ failed: {reason}", "read": "✓✓ read", "delivered": "✓✓", "sent": "✓"}.get(
                status, "…")
            out.append(f'<span class="delivery delivery-{escape(status)}" title="{title}">{text}</span>')
        out.append(f'</div><div class="msg-body">{_linebreaksbr(m.body)}</div>')
        for a in (m.attachments.all() if getattr(m, "has_attachments", True) else ()):
            url = f"{att_head}{a.id}{att_tail}"
            name = escape(a.filename)
            if a.is_image:
                out.append(f'<a href="{url}" target="_blank" rel="noopener"><img class="att-img" src="{url}" '
                           f'alt="{name}"></a>')
            else:
                out.append(f'<a class="att" href="{url}">📎 {name} ({escape(_filesize(a.size))})</a>')
        out.append("</li>")
    return mark_safe("".join(out))
