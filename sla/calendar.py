"""Business-time arithmetic over weekly local intervals, holidays and daylight-saving changes.

Intervals are local wall-clock times in the calendar's zone; each is converted to an absolute instant
with zoneinfo, so a DST change shortens or lengthens that day's business time the way a clock on the
office wall would. All inputs and outputs are aware datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MAX_DAYS = 3 * 366  # a target never needs more; protects against calendars with no open time


@dataclass(frozen=True)
class Calendar:
    tz: ZoneInfo
    intervals: dict[str, list[tuple[time, time | None]]]  # end None = midnight
    holidays: frozenset[date]

    @classmethod
    def build(cls, tz: str, intervals: dict, holidays=()) -> Calendar:
        parsed: dict[str, list[tuple[time, time | None]]] = {}
        for day, spans in (intervals or {}).items():
            out = []
            for start, end in spans:
                s = time.fromisoformat(start)
                e = None if end in ("24:00", "24:00:00") else time.fromisoformat(end)
                if e is not None and e <= s:
                    raise ValueError(f"interval {start}-{end} on {day} ends before it starts")
                out.append((s, e))
            parsed[day] = sorted(out)
        return cls(ZoneInfo(tz or "UTC"), parsed, frozenset(holidays))

    def _spans(self, day: date) -> list[tuple[datetime, datetime]]:
        if day in self.holidays:
            return []
        out = []
        for start, end in self.intervals.get(DAYS[day.weekday()], []):
            a = datetime.combine(day, start, tzinfo=self.tz)
            b = (datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.tz) if end is None
                 else datetime.combine(day, end, tzinfo=self.tz))
            # Compare as absolute instants (handles the repeated/skipped hour of a DST change).
            a_utc, b_utc = a.astimezone(ZoneInfo("UTC")), b.astimezone(ZoneInfo("UTC"))
            if b_utc > a_utc:
                out.append((a_utc, b_utc))
        return out

    def add(self, start: datetime, seconds: float) -> datetime:
        """The instant when `seconds` of business time have passed after `start`."""
        remaining = timedelta(seconds=seconds)
        day = start.astimezone(self.tz).date() - timedelta(days=1)  # an interval may run past midnight
        for _ in range(MAX_DAYS):
            for a, b in self._spans(day):
                if b <= start:
                    continue
                a = max(a, start)
                if b - a >= remaining:
                    return a + remaining
                remaining -= b - a
            day += timedelta(days=1)
        raise ValueError("the calendar has no business time within three years")

    def between(self, start: datetime, end: datetime) -> float:
        """Business seconds between two instants (0 if end <= start)."""
        if end <= start:
            return 0.0
        total = timedelta()
        day = start.astimezone(self.tz).date() - timedelta(days=1)
        last = end.astimezone(self.tz).date()
        while day <= last:
            for a, b in self._spans(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total.total_seconds()


class CalendarTime:
    """Plain elapsed time: the same interface for targets counted in calendar time."""

    def add(self, start: datetime, seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    def between(self, start: datetime, end: datetime) -> float:
        return max((end - start).total_seconds(), 0.0)


def for_policy(policy, metric: str):
    """The time scale a policy counts `metric` in."""
    if policy is None or policy.calendar_id is None or metric not in (policy.business_time_metrics or []):
        return CalendarTime()
    cal = policy.calendar
    return Calendar.build(cal.timezone, cal.intervals, cal.holidays.values_list("date", flat=True))
