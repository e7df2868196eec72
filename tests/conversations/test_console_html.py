"""The console's rows and messages rendered in Python (conversations/console_html.py) and the panel's partials
(templates/console/_events.html, _options.html)."""

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


def test_activity_lines_are_escaped():
    """templates/console/_events.html: the kind's label, the actor's full name (or username), old → new (None
    printed as such) and the reason, each escaped; data that is not a dict shows nothing of it."""
    from django.contrib.auth.models import User
    from django.template.loader import render_to_string

    from conversations.models import ConversationEvent

    when = datetime.datetime(2026, 3, 9, 7, 5, tzinfo=datetime.UTC)
    events = [
        ConversationEvent(kind="status_changed", data={"old": None, "new": "<b>x</b>", "reason": "r & <r>"},
                          created_at=when, actor=User(username="u<1>")),
        ConversationEvent(kind="unknown-kind", data=["not", "a", "dict"], created_at=when,
                          actor=User(username="u2", first_name="Ann <b>", last_name="O'Neil")),
        ConversationEvent(kind="assigned", data={"new": ""}, created_at=when, actor=None),
    ]
    with translation.override("en"), timezone.override("Europe/Paris"):
        html = render_to_string("console/_events.html", {"events": events})
    assert html == (
        '<li><time datetime="2026-03-09T08:05:00+01:00">Mar 9 08:05</time> Status changed by u&lt;1&gt;: None → '
        "&lt;b&gt;x&lt;/b&gt; (r &amp; &lt;r&gt;)</li>"
        '<li><time datetime="2026-03-09T08:05:00+01:00">Mar 9 08:05</time> unknown-kind by Ann &lt;b&gt; '
        "O&#x27;Neil</li>"
        '<li><time datetime="2026-03-09T08:05:00+01:00">Mar 9 08:05</time> Assigned</li>')


def test_pick_list_options_are_escaped_and_selected():
    from django.template.loader import render_to_string

    from conversations.models import Conversation

    def options(choices, selected):
        return render_to_string("console/_options.html", {"choices": choices, "selected": selected})

    assert options([(1, "A <b>"), (2, "B & c")], 2) == \
        '<option value="1">A &lt;b&gt;</option><option value="2" selected>B &amp; c</option>'
    assert options([('x"y', "q")], 'x"y') == '<option value="x&quot;y" selected>q</option>'
    assert options(Conversation.Priority.choices, None).count(" selected") == 0
    assert '<option value="open" selected>Open</option>' in options(Conversation.Status.choices, "open")
