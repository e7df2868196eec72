"""Business-time arithmetic: nights, weekends, holidays, time zones and daylight-saving changes."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sla.calendar import Calendar, CalendarTime

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
NY = ZoneInfo("America/New_York")
WEEKDAYS = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


def cal(tz="Europe/Paris", intervals=None, holidays=()):
    return Calendar.build(tz, intervals or WEEKDAYS, holidays)


def test_within_the_day():
    start = datetime(2026, 11, 23, 10, 0, tzinfo=PARIS)  # Monday
    assert cal().add(start, 3600) == datetime(2026, 11, 23, 11, 0, tzinfo=PARIS)


def test_across_the_night():
    start = datetime(2026, 11, 23, 16, 30, tzinfo=PARIS)
    assert cal().add(start, 3600) == datetime(2026, 11, 24, 9, 30, tzinfo=PARIS)


def test_before_opening_starts_at_opening():
    start = datetime(2026, 11, 23, 6, 0, tzinfo=PARIS)
    assert cal().add(start, 60) == datetime(2026, 11, 23, 9, 1, tzinfo=PARIS)


def test_across_the_weekend():
    friday = datetime(2026, 11, 27, 16, 0, tzinfo=PARIS)
    assert cal().add(friday, 2 * 3600) == datetime(2026, 11, 30, 10, 0, tzinfo=PARIS)


def test_holiday_is_skipped():
    start = datetime(2026, 12, 24, 16, 0, tzinfo=PARIS)  # Thursday; Friday 25 is a holiday
    c = cal(holidays=[date(2026, 12, 25)])
    assert c.add(start, 2 * 3600) == datetime(2026, 12, 28, 10, 0, tzinfo=PARIS)


def test_several_intervals_a_day():
    c = cal(intervals={"mon": [["09:00", "12:00"], ["13:00", "17:00"]]})
    start = datetime(2026, 11, 23, 11, 30, tzinfo=PARIS)
    assert c.add(start, 3600) == datetime(2026, 11, 23, 13, 30, tzinfo=PARIS)


def test_time_zones_give_different_instants():
    start = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 16:00 Paris, 10:00 New York
    assert cal("Europe/Paris").add(start, 2 * 3600) == datetime(2026, 11, 24, 10, 0, tzinfo=PARIS)
    assert cal("America/New_York").add(start, 2 * 3600) == datetime(2026, 11, 23, 12, 0, tzinfo=NY)


def test_spring_forward_day_is_one_hour_shorter_in_real_time():
    # Paris moves from 02:00 to 03:00 on Sunday 29 March 2026; a 24/7 calendar counts real seconds.
    c = cal(intervals={d: [["00:00", "24:00"]] for d in ("sat", "sun", "mon")})
    start = datetime(2026, 3, 29, 0, 0, tzinfo=PARIS)
    end = datetime(2026, 3, 30, 0, 0, tzinfo=PARIS)
    assert c.between(start, end) == 23 * 3600
    assert c.add(start, 23 * 3600) == end


def test_fall_back_business_hours_keep_wall_clock_times():
    # New York leaves DST on Sunday 1 November 2026; Monday opens at 09:00 local either way.
    friday = datetime(2026, 10, 30, 16, 0, tzinfo=NY)
    assert cal("America/New_York").add(friday, 2 * 3600) == datetime(2026, 11, 2, 10, 0, tzinfo=NY)
    assert cal("America/New_York").between(friday, datetime(2026, 11, 2, 10, 0, tzinfo=NY)) == 2 * 3600


def test_between_matches_add():
    c = cal()
    start = datetime(2026, 11, 20, 15, 17, tzinfo=PARIS)
    for seconds in (60, 3600, 8 * 3600, 30 * 3600, 100 * 3600):
        assert c.between(start, c.add(start, seconds)) == pytest.approx(seconds)


def test_calendar_time():
    start = datetime(2026, 11, 21, 23, 0, tzinfo=UTC)
    assert CalendarTime().add(start, 7200) == start + timedelta(hours=2)


def test_bad_interval_is_refused():
    with pytest.raises(ValueError):
        cal(intervals={"mon": [["17:00", "09:00"]]})
