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
