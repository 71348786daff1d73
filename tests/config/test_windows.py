"""Reboot windows: parsing, and the arithmetic across midnight, week wrap, DST and time zones."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from locksmith.settings.windows import (
    RebootWindow,
    WindowSchedule,
    load_timezone,
    parse_start,
    parse_window,
    parse_windows,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def schedule(text: str, tz: ZoneInfo | type[UTC] = UTC) -> WindowSchedule:
    return WindowSchedule(parse_windows(text), tz)  # type: ignore[arg-type]


# --- Parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "at"),
    [
        ("04:00", None, time(4, 0)),
        ("4:05", None, time(4, 5)),
        ("Thu 04:00", {THU}, time(4, 0)),
        ("thu 23:59", {THU}, time(23, 59)),
        ("SUN 00:00", {SUN}, time(0, 0)),
        ("Mon-Fri 02:00", {MON, TUE, WED, THU, FRI}, time(2, 0)),
        ("Sat,Sun 04:00", {SAT, SUN}, time(4, 0)),
        ("Fri-Mon 01:00", {FRI, SAT, SUN, MON}, time(1, 0)),
        ("mon, wed-thu 03:30", {MON, WED, THU}, time(3, 30)),
        ("Wednesday 03:30", {WED}, time(3, 30)),
    ],
)
def test_parse_start(start: str, days: set[int] | None, at: time) -> None:
    got_days, got_at = parse_start(start)
    assert got_days == (None if days is None else frozenset(days))
    assert got_at == at


@pytest.mark.parametrize(
    ("start", "length", "fragment"),
    [
        ("Thu 4", "1h", "no valid HH:MM"),
        ("24:00", "1h", "00:00 to 23:59"),
        ("12:60", "1h", "00:00 to 23:59"),
        ("Thr 04:00", "1h", "unknown day 'thr'"),
        ("Mon-Fry 04:00", "1h", "unknown day"),
        ("", "1h", "empty reboot window start"),
        ("04:00", "24h", "under 24h for a daily window"),
        ("Thu 04:00", "168h", "under 7 days"),
        ("Mon-Fri 04:00", "168h", "under 7 days"),
        ("04:00", "0s", "must be positive"),
        ("04:00", "-1h", "must be positive"),
        ("04:00", "1 hour", "unknown unit"),
    ],
)
def test_parse_window_errors(start: str, length: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        parse_window(start, length)
    assert "\n" not in str(info.value)


def test_coreos_limits_are_exclusive_upper_bounds() -> None:
    assert parse_window("04:00", "23h59m").length == timedelta(hours=23, minutes=59)
    assert parse_window("Thu 04:00", "167h59m").length == timedelta(hours=167, minutes=59)


def test_several_windows_and_their_text_form() -> None:
    windows = parse_windows(" Mon-Fri 02:00 1h; Sat,Sun 04:00 3h ;; 23:30 45m")
    assert windows == (
        RebootWindow(frozenset({MON, TUE, WED, THU, FRI}), time(2), timedelta(hours=1)),
        RebootWindow(frozenset({SAT, SUN}), time(4), timedelta(hours=3)),
        RebootWindow(None, time(23, 30), timedelta(minutes=45)),
    )
    assert [str(w) for w in windows] == ["Mon-Fri 02:00 1h0m0s", "Sat-Sun 04:00 3h0m0s", "23:30 45m0s"]
    assert str(RebootWindow(frozenset({FRI, SAT, SUN, MON}), time(1), timedelta(hours=2))) == "Fri-Mon 01:00 2h0m0s"
    for w in windows:
        assert parse_windows(str(w)) == (w,)


@pytest.mark.parametrize("text", ["", " ; ", "Mon-Fri 02:00", "1h"])
def test_parse_windows_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_windows(text)


def test_time_zones() -> None:
    assert load_timezone("Europe/Berlin") == BERLIN
    for bad in ["Mars/Olympus", "", "/etc/localtime", "../../etc/passwd", "Europe/"]:
        with pytest.raises(ValueError, match="time zone"):
            load_timezone(bad)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        schedule("04:00 1h").is_open(datetime(2024, 1, 1, 4, 30))


# --- Arithmetic -------------------------------------------------------------------------------


def test_daily_window_across_midnight() -> None:
    s = schedule("23:30 1h", BERLIN)
    before = datetime(2024, 1, 10, 23, 0, tzinfo=BERLIN)
    assert not s.is_open(before)
    assert s.next_open(before) == datetime(2024, 1, 10, 23, 30, tzinfo=BERLIN)
    after_midnight = datetime(2024, 1, 11, 0, 15, tzinfo=BERLIN)
    assert s.is_open(after_midnight)
    assert s.next_open(after_midnight) == after_midnight
    assert s.current_window_end(after_midnight) == datetime(2024, 1, 11, 0, 30, tzinfo=BERLIN)
    closed = datetime(2024, 1, 11, 0, 30, tzinfo=BERLIN)
    assert not s.is_open(closed)  # the end is exclusive
    assert s.current_window_end(closed) is None
    assert s.next_open(closed) == datetime(2024, 1, 11, 23, 30, tzinfo=BERLIN)


def test_weekly_window_and_week_wrap() -> None:
    s = schedule("Sat 23:00 26h")  # Saturday 23:00 to Monday 01:00
    # 2024-01-13 is a Saturday.
    assert s.is_open(datetime(2024, 1, 14, 12, 0, tzinfo=UTC))
    assert s.is_open(datetime(2024, 1, 15, 0, 59, tzinfo=UTC))
    assert not s.is_open(datetime(2024, 1, 15, 1, 0, tzinfo=UTC))
    assert s.current_window_end(datetime(2024, 1, 14, 12, 0, tzinfo=UTC)) == datetime(2024, 1, 15, 1, tzinfo=UTC)
    assert s.next_open(datetime(2024, 1, 15, 1, 0, tzinfo=UTC)) == datetime(2024, 1, 20, 23, 0, tzinfo=UTC)

    thursday = schedule("Thu 04:00 1h")
    # Just after this week's window: the next is six days and 23 hours away.
    assert thursday.next_open(datetime(2024, 1, 11, 5, 0, tzinfo=UTC)) == datetime(2024, 1, 18, 4, 0, tzinfo=UTC)


def test_wrapping_day_range() -> None:
    s = schedule("Fri-Mon 02:00 1h")
    opened = [d for d in range(8, 15) if s.is_open(datetime(2024, 1, d, 2, 30, tzinfo=UTC))]
    assert opened == [8, 12, 13, 14]  # Mon 8th, Fri 12th, Sat 13th, Sun 14th
    # From Tuesday the next opening is Friday.
    assert s.next_open(datetime(2024, 1, 9, 3, 0, tzinfo=UTC)) == datetime(2024, 1, 12, 2, 0, tzinfo=UTC)


def test_overlapping_windows_merge() -> None:
    s = schedule("00:00 1h; 00:30 1h; 03:00 1h")
    now = datetime(2024, 1, 1, 0, 10, tzinfo=UTC)
    assert s.current_window_end(now) == datetime(2024, 1, 1, 1, 30, tzinfo=UTC)
    assert s.next_open(datetime(2024, 1, 1, 1, 30, tzinfo=UTC)) == datetime(2024, 1, 1, 3, 0, tzinfo=UTC)


def test_always_open_schedule_caps_the_end_a_week_ahead() -> None:
    s = schedule("00:00 12h; 12:00 12h")
    now = datetime(2024, 1, 1, 5, tzinfo=UTC)
    assert s.current_window_end(now) == now + timedelta(days=7)


def test_the_zone_decides_the_instant() -> None:
    utc = schedule("04:00 1h", UTC)
    tokyo = schedule("04:00 1h", ZoneInfo("Asia/Tokyo"))
    now = datetime(2024, 1, 1, 19, 30, tzinfo=UTC)  # 04:30 in Tokyo on Jan 2
    assert tokyo.is_open(now)
    assert not utc.is_open(now)
    # Results come back in UTC, whatever zone `now` was given in.
    assert utc.next_open(now.astimezone(BERLIN)) == datetime(2024, 1, 2, 4, 0, tzinfo=UTC)
    assert tokyo.next_open(now.astimezone(BERLIN)).tzinfo is UTC


# --- DST ----------------------------------------------------------------------------------------


def test_berlin_spring_forward_start_in_the_gap_opens_after_it() -> None:
    # 2024-03-31: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    s = schedule("02:30 1h", BERLIN)
    opened = s.next_open(datetime(2024, 3, 30, 12, 0, tzinfo=BERLIN))
    assert opened == datetime(2024, 3, 31, 3, 0, tzinfo=BERLIN)
    assert opened.tzinfo is UTC
    assert opened.astimezone(BERLIN).utcoffset() == timedelta(hours=2)
    assert s.current_window_end(opened) == datetime(2024, 3, 31, 4, 0, tzinfo=BERLIN)  # a full hour
    assert not s.is_open(datetime(2024, 3, 31, 0, 59, tzinfo=UTC))
    assert s.is_open(datetime(2024, 3, 31, 1, 0, tzinfo=UTC))


def test_berlin_fall_back_opens_once_for_its_length() -> None:
    # 2024-10-27: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    s = schedule("02:30 1h", BERLIN)
    opened = s.next_open(datetime(2024, 10, 26, 12, 0, tzinfo=BERLIN))
    assert opened.astimezone(UTC) == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)
    end = s.current_window_end(opened)
    assert end is not None
    assert end - opened == timedelta(hours=1)
    assert end.astimezone(UTC) == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)
    second_0245 = datetime(2024, 10, 27, 2, 45, fold=1, tzinfo=BERLIN)
    assert second_0245.utcoffset() == timedelta(hours=1)
    assert not s.is_open(second_0245)
    assert s.next_open(second_0245) == datetime(2024, 10, 28, 2, 30, tzinfo=BERLIN)


def test_new_york_both_transitions() -> None:
    s = schedule("02:15 30m", NEW_YORK)
    # 2024-03-10: 02:00 EST jumps to 03:00 EDT.
    assert s.next_open(datetime(2024, 3, 9, 12, tzinfo=NEW_YORK)) == datetime(2024, 3, 10, 3, 0, tzinfo=NEW_YORK)
    fall = schedule("01:30 1h", NEW_YORK)
    # 2024-11-03: 02:00 EDT falls back to 01:00 EST.
    opened = fall.next_open(datetime(2024, 11, 2, 12, tzinfo=NEW_YORK))
    assert opened.astimezone(UTC) == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert fall.current_window_end(opened) == opened + timedelta(hours=1)
    assert not fall.is_open(datetime(2024, 11, 3, 1, 45, fold=1, tzinfo=NEW_YORK))


def test_lord_howe_half_hour_dst() -> None:
    # 2024-10-06: 02:00 (+10:30) jumps to 02:30 (+11:00).
    s = schedule("Sun 02:10 1h", LORD_HOWE)
    opened = s.next_open(datetime(2024, 10, 5, tzinfo=LORD_HOWE))
    assert opened == datetime(2024, 10, 6, 2, 30, tzinfo=LORD_HOWE)
    assert opened.astimezone(LORD_HOWE).utcoffset() == timedelta(hours=11)
    # 2024-04-07: 02:00 (+11:00) falls back to 01:30 (+10:30); 01:45 happens twice.
    fall = schedule("01:45 30m", LORD_HOWE)
    opened = fall.next_open(datetime(2024, 4, 6, 12, tzinfo=LORD_HOWE))
    assert opened.astimezone(LORD_HOWE).utcoffset() == timedelta(hours=11)
    assert fall.current_window_end(opened) == opened + timedelta(minutes=30)
    assert not fall.is_open(datetime(2024, 4, 7, 1, 50, fold=1, tzinfo=LORD_HOWE))


def test_fall_back_day_keeps_elapsed_lengths() -> None:
    # Two 12h windows cover a normal day; the 25-hour fall-back day leaves an hour closed.
    s = schedule("00:00 12h; 12:00 12h", BERLIN)
    now = datetime(2024, 10, 27, 5, 0, tzinfo=BERLIN)
    assert s.current_window_end(now) == datetime(2024, 10, 27, 11, 0, tzinfo=BERLIN)
    assert s.next_open(datetime(2024, 10, 27, 11, 30, tzinfo=BERLIN)) == datetime(2024, 10, 27, 12, tzinfo=BERLIN)


@freeze_time("2024-03-31 00:45:00", tz_offset=0)
def test_with_a_frozen_clock_as_the_agent_calls_it() -> None:
    s = schedule("02:30 1h", BERLIN)
    now = datetime.now(UTC)
    assert not s.is_open(now)
    assert s.next_open(now) - now == timedelta(minutes=15)  # 03:00 CEST is 01:00 UTC


# --- Properties ---------------------------------------------------------------------------------

_ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham"]
_zone = st.sampled_from(_ZONES).map(ZoneInfo)
_now = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31), timezones=_zone, allow_imaginary=False
)
_start = st.builds(time, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 45, 59]))
_days = st.none() | st.frozensets(st.integers(0, 6), min_size=1)


@st.composite
def _window(draw: st.DrawFn, max_daily: timedelta = timedelta(hours=23, minutes=59)) -> RebootWindow:
    days = draw(_days)
    limit = max_daily if days is None else timedelta(days=7) - timedelta(minutes=1)
    minutes = draw(st.integers(1, int(limit.total_seconds() // 60)))
    return RebootWindow(days, draw(_start), timedelta(minutes=minutes))


_schedule = st.builds(WindowSchedule, st.lists(_window(), min_size=1, max_size=3).map(tuple), _zone)


@settings(max_examples=150, deadline=None)
@given(_schedule, _now)
def test_next_open_is_never_in_the_past_and_is_open(s: WindowSchedule, now: datetime) -> None:
    opened = s.next_open(now)
    assert opened >= now
    assert s.is_open(opened)
    # Compare in UTC: Python never calls an ambiguous local time equal to an instant in another zone.
    assert (opened == now.astimezone(UTC)) == s.is_open(now)
    end = s.current_window_end(opened)
    assert end is not None and end > opened
    assert s.is_open(opened + (end - opened) / 2)
    if end - opened < timedelta(days=7):
        assert not s.is_open(end)


@settings(max_examples=150, deadline=None)
@given(_window(max_daily=timedelta(hours=20)), _zone, _now)
def test_a_window_stays_open_for_its_length(w: RebootWindow, tz: ZoneInfo, now: datetime) -> None:
    # Daily windows up to 20h cannot touch the next day's even with a DST shift; a weekly one is alone
    # unless it is so long that a shift (30 min on Lord Howe, up to 2 h in history) makes it reach next
    # week's opening — then the two are one open span (test_next_open_is_never_in_the_past_and_is_open).
    if w.days is not None and len(w.days) > 1:
        w = RebootWindow(frozenset({min(w.days)}), w.start, w.length)
    assume(w.days is None or w.length <= timedelta(days=7, hours=-2))
    s = WindowSchedule((w,), tz)
    opened = s.next_open(now)
    if s.is_open(now):  # already inside: look at the next opening instead
        end = s.current_window_end(now)
        assert end is not None
        opened = s.next_open(end)
    assert s.current_window_end(opened) == opened + w.length
    assert s.is_open(opened + w.length - timedelta(microseconds=1))
    assert not s.is_open(opened - timedelta(microseconds=1))
