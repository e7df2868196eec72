"""The console's rows and messages rendered in Python (conversations/console_html.py)."""

from __future__ import annotations

import datetime

from django.utils import timezone, translation
from django.utils.timesince import timesince

from conversations.console_html import waiting_for


def test_waiting_for_matches_djangos_timesince():
    now = timezone.now().replace(microsecond=0)
    deltas = [datetime.timedelta(seconds=s) for s in (-5, 0, 30, 59, 60, 61, 3599, 3600, 3661, 86399, 86400)]
    deltas += [datetime.timedelta(minutes=37 * i + 1) for i in range(0, 3000, 7)]
    deltas += [datetime.timedelta(days=d, hours=h) for d in (6, 7, 8, 13, 14, 29, 30, 31, 59, 364, 365, 366, 800)
               for h in (0, 1, 23)]
    for language in ("en", "fr"):
        with translation.override(language):
            for delta in deltas:
                for ref in (now, now.replace(day=28), now.replace(month=3, day=1), now.replace(month=1, day=31)):
                    d = ref - delta
                    assert waiting_for(d, ref) == timesince(d, ref), (language, delta, ref)


def test_waiting_for_matches_djangos_timesince_with_fractions_and_dst():
    """Fractions of a second and a waiting time given in a zone with DST (a calendar month one hour short)."""
    import random
    import zoneinfo

    rnd = random.Random(7)
    ny = zoneinfo.ZoneInfo("America/New_York")
    refs = [datetime.datetime(2026, 3, 10, 12, 0, 0, 250_000, tzinfo=ny),  # after the March DST change
            datetime.datetime(2026, 11, 2, 9, 30, tzinfo=ny), timezone.now()]
    for ref in refs:
        for _ in range(400):
            delta = datetime.timedelta(seconds=rnd.uniform(0, 40 * 86400))
            for d in (ref - delta, (ref - delta).astimezone(datetime.UTC)):
                assert waiting_for(d, ref) == timesince(d, ref), (delta, ref, d)
        for days in (26, 27, 28):  # around the fast path's bound, to the second
            for seconds in (-3601, -1, 0, 1, 3599, 3600):
                d = ref - datetime.timedelta(days=days, seconds=seconds)
                assert waiting_for(d.astimezone(ny), ref) == timesince(d.astimezone(ny), ref), (days, seconds)


# The template loops these functions replaced, verbatim: the Python output must equal theirs.
EVENTS_TEMPLATE = (
    "{% for e in events %}<li><time datetime=\"{{ e.created_at|date:'c' }}\">{{ e.created_at|date:\"M j H:i\" }}"
    "</time> {{ e.get_kind_display }}{% if e.actor %} by {{ e.actor.get_full_name|default:e.actor.username }}"
    "{% endif %}{% if e.data.new %}: {{ e.data.old }} → {{ e.data.new }}{% endif %}{% if e.data.reason %}"
    " ({{ e.data.reason }}){% endif %}</li>{% endfor %}"
)
OPTIONS_TEMPLATE = ('{% for v, l in choices %}<option value="{{ v }}"{% if v == selected %} selected{% endif %}>'
                    "{{ l }}</option>{% endfor %}")


def test_render_events_matches_the_template():

    from django.contrib.auth.models import User
    from django.template import Context, Template

    from conversations.console_html import render_events
    from conversations.models import ConversationEvent

    when = timezone.now().replace(month=3, day=9, hour=7, minute=5)
    actors = [None, User(username="u<1>"), User(username="u2", first_name="Ann <b>", last_name="O'Neil")]
    datas = [{}, {"old": None, "new": "open"}, {"new": "<b>x</b>"}, {"old": 1, "new": 3, "reason": "r & <r>"},
             {"new": ""}, ["not", "a", "dict"], {"reason": {"k": "<v>"}}, {"old": True, "new": [1, 2]}]
    events = [ConversationEvent(kind=kind, data=data, created_at=when + datetime.timedelta(days=i), actor=actor)
              for i, (kind, data, actor) in enumerate(
                  (k, d, a) for k in ("status_changed", "assigned", "unknown-kind") for d in datas for a in actors)]
    for language in ("en", "fr"):
        with translation.override(language), timezone.override("Europe/Paris"):
            expected = Template(EVENTS_TEMPLATE).render(Context({"events": events}))
            assert render_events(events) == expected


def test_options_match_the_template():
    from django.template import Context, Template

    from conversations.console_html import options
    from conversations.models import Conversation

    for choices, selected in [(Conversation.Status.choices, "open"), (Conversation.Priority.choices, 2),
                              (Conversation.Priority.choices, None), ([(1, "A <b>"), (2, "B & c")], 2),
                              ([("x\"y", "q")], "x\"y")]:
        expected = Template(OPTIONS_TEMPLATE).render(Context({"choices": choices, "selected": selected}))
        assert options(choices, selected) == expected
