"""Reboot windows: when a host may reboot, as pure functions of "now".

Formats
- CoreOS: a start `HH:MM` (every day) or `<day> HH:MM` (one day a week), days `sun`..`sat`
  case-insensitive, plus a length as a Go duration (`1h30m`); under 24h for a daily window,
  under 7 days for a weekly one.
- Our extensions: day lists and ranges (`Mon-Fri 02:00`, `Sat,Sun 04:00`, a range may wrap the
  week: `Fri-Mon`; full day names are accepted too), several windows in one setting
  (`"Mon-Fri 02:00 1h; Sat,Sun 04:00 3h"`), and a time zone (IANA name; default: the machine's).

Semantics (decided here, relied on by the agent)
- A window *opens* at a wall-clock time in the schedule's zone and then stays open for its
  length of *elapsed* time. So a 1h window is one real hour even on a DST change day.
- Spring forward: if the start falls in the skipped hour (02:30 on a day that jumps from 02:00 to
  03:00), the window opens at the first valid instant after the gap (03:00 there) and still lasts
  its full length.
- Fall back: if the start is ambiguous (01:30 happens twice), the window opens at the *first*
  occurrence and lasts its length; it does not open again at the repeated 01:30 and does not get
  an extra hour.
- Several windows (or a long one overlapping the next day's) form a union: overlapping or
  touching openings merge, and `current_window_end` returns the end of the merged stretch.
- Every datetime returned is in UTC. On purpose: Python subtracts and compares two datetimes that
  share a tzinfo by *wall clock* (ignoring DST), so `next_open(now) - now` computed in the local
  zone would be an hour off across a transition. Convert with `.astimezone(schedule.tz)` to show.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from locksmith.settings.duration import format_duration, parse_duration

__all__ = [
    "DAY_NAMES",
    "RebootWindow",
    "WindowSchedule",
    "load_timezone",
    "local_timezone",
    "parse_start",
    "parse_window",
    "parse_windows",
]

# Index = Python's weekday() (Monday = 0).
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_LOOKUP = {name: i for i, name in enumerate(DAY_NAMES)} | {name: i for i, name in enumerate(_FULL_NAMES)}

_START_HELP = "use HH:MM (daily), 'Thu 04:00' (weekly), or days like 'Mon-Fri 02:00' / 'Sat,Sun 04:00'"
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class RebootWindow:
    """One window: opens at `start` (wall clock) on `days` (None = every day), for `length`."""

    days: frozenset[int] | None  # weekday numbers, Monday = 0
    start: time
    length: timedelta

    def __post_init__(self) -> None:
        if self.length <= timedelta(0):
            raise ValueError(f"reboot window length {format_duration(self.length)} must be positive")
        if self.days is not None:
            if not self.days or not all(0 <= d <= 6 for d in self.days):
                raise ValueError("reboot window days must be a non-empty set of weekdays 0 (Mon) .. 6 (Sun)")
            if self.length >= _WEEK:
                raise ValueError(
                    f"reboot window length {format_duration(self.length)} must be under 7 days (168h) "
                    "for a weekly window"
                )
        elif self.length >= _DAY:
            raise ValueError(
                f"reboot window length {format_duration(self.length)} must be under 24h for a daily window"
            )
        if self.start.tzinfo is not None or self.start.second or self.start.microsecond:
            raise ValueError("reboot window start must be a naive HH:MM time")

    @property
    def daily(self) -> bool:
        return self.days is None

    def opens_on(self, day: date) -> bool:
        return self.days is None or day.weekday() in self.days

    def __str__(self) -> str:
        start = f"{self.start.hour:02d}:{self.start.minute:02d}"
        if self.days is None:
            return f"{start} {format_duration(self.length)}"
        return f"{_format_days(self.days)} {start} {format_duration(self.length)}"


def _format_days(days: frozenset[int]) -> str:
    if len(days) == 7:
        return "Mon-Sun"
    # Render as comma-separated runs, starting after a gap so wrapping runs stay whole (Fri-Mon).
    first = next(d for d in range(7) if d in days and (d - 1) % 7 not in days)
    parts: list[str] = []
    d = first
    seen = 0
    while seen < 7:
        if d in days:
            run_start = d
            while (d + 1) % 7 in days and (d + 1) % 7 != first:
                d = (d + 1) % 7
                seen += 1
            a, b = DAY_NAMES[run_start].capitalize(), DAY_NAMES[d].capitalize()
            parts.append(a if run_start == d else f"{a}-{b}")
        d = (d + 1) % 7
        seen += 1
    return ",".join(parts)


def _parse_days(spec: str, whole: str) -> frozenset[int]:
    days: set[int] = set()
    for item in spec.split(","):
        item = item.strip().lower()
        first, dash, last = item.partition("-")
        try:
            a = _DAY_LOOKUP[first.strip()]
            b = _DAY_LOOKUP[last.strip()] if dash else a
        except KeyError:
            raise ValueError(
                f"unknown day {item!r} in reboot window {whole!r}: use sun, mon, tue, wed, thu, fri, sat"
            ) from None
        d = a
        days.add(d)
        while d != b:  # ranges wrap the week: Fri-Mon is Fri, Sat, Sun, Mon
            d = (d + 1) % 7
            days.add(d)
    return frozenset(days)


def parse_start(text: str) -> tuple[frozenset[int] | None, time]:
    """Parse a window start: `HH:MM`, `<days> HH:MM`. Returns (days or None, time)."""
    s = text.strip()
    if not s:
        raise ValueError(f"empty reboot window start: {_START_HELP}")
    day_spec, _, clock = s.rpartition(" ")
    m = _TIME.fullmatch(clock)
    if not m:
        raise ValueError(f"reboot window start {text!r} has no valid HH:MM time: {_START_HELP}")
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour > 23 or minute > 59:
        raise ValueError(f"reboot window start {text!r}: time must be 00:00 to 23:59")
    days = _parse_days(day_spec, text) if day_spec.strip() else None
    return days, time(hour, minute)


def parse_window(start: str, length: str) -> RebootWindow:
    """The CoreOS pair (`REBOOT_WINDOW_START`, `REBOOT_WINDOW_LENGTH`) → a window."""
    days, at = parse_start(start)
    try:
        span = parse_duration(length.strip())
    except ValueError as exc:
        raise ValueError(f"reboot window length: {exc}") from None
    return RebootWindow(days, at, span)


def parse_windows(text: str) -> tuple[RebootWindow, ...]:
    """Several windows, `;`-separated, each `[days] HH:MM LENGTH` (`Mon-Fri 02:00 1h; 04:00 30m`)."""
    windows: list[RebootWindow] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        start, sep, length = part.rpartition(" ")
        if not sep or not start.strip() or _TIME.fullmatch(length):
            raise ValueError(
                f"reboot window {part!r} needs a start and a length, e.g. 'Mon-Fri 02:00 1h' or '04:00 30m'"
            )
        windows.append(parse_window(start, length))
    if not windows:
        raise ValueError("no reboot window given: use e.g. 'Mon-Fri 02:00 1h; Sat,Sun 04:00 3h'")
    return tuple(windows)


# --- Time zones ---------------------------------------------------------------------------


def load_timezone(name: str) -> ZoneInfo:
    """An IANA zone by name (`Europe/Berlin`, `UTC`); ValueError naming the fix otherwise."""
    key = name.strip()
    if not key or key.startswith("/") or ".." in key:
        raise ValueError(f"time zone {name!r} is not an IANA zone name: use e.g. Europe/Berlin or UTC")
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC (see /usr/share/zoneinfo)"
        ) from None


def local_timezone() -> tzinfo:
    """The machine's zone with its DST rules: $TZ if it names one, else /etc/localtime, else UTC."""
    tz_env = os.environ.get("TZ", "").lstrip(":")
    if tz_env:
        try:
            return load_timezone(tz_env)
        except ValueError:
            pass  # a POSIX TZ rule string or a bad name: fall back to the system zone
    localtime = Path("/etc/localtime")
    try:
        target = str(localtime.resolve())
        if "/zoneinfo/" in target:
            return ZoneInfo(target.split("/zoneinfo/", 1)[1])
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    try:
        with localtime.open("rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC


def _resolve(day: date, at: time, tz: tzinfo) -> datetime:
    """The instant a wall-clock time happens in `tz`: the first occurrence when it happens twice,
    the first valid instant after the gap when it does not happen at all."""
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        later = wall.replace(tzinfo=tz, fold=1)
        # Ambiguous (fall back): fold=0 is normally the earlier instant, but pick explicitly.
        if later.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
            return min(first, later, key=lambda d: d.astimezone(UTC))
        return first
    # In a gap: search the instant where the local clock passes `wall`. The gap is bounded by the
    # two readings of the wall time with the offsets before and after the transition.
    a = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    b = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(a, b), max(a, b)
    # Invariant: local(lo) < wall <= local(hi). Transitions fall on whole seconds.
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            mid = lo + timedelta(seconds=1)
        if mid.astimezone(tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi.astimezone(tz)


# --- The schedule ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowSchedule:
    """Several windows in one zone. Every method takes an aware `now` and is pure."""

    windows: tuple[RebootWindow, ...]
    tz: tzinfo

    def __post_init__(self) -> None:
        if not self.windows:
            raise ValueError("a window schedule needs at least one window")

    def __str__(self) -> str:
        return "; ".join(str(w) for w in self.windows) + f" ({_tz_name(self.tz)})"

    # Python compares two datetimes that share a tzinfo by wall clock, ignoring `fold`; so all
    # arithmetic and comparison below happens in UTC, and results are converted at the end.

    def openings(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Every (open, close) interval (UTC) of any window that overlaps [start, end), by open time."""
        yield from self._openings_utc(_utc(start), _utc(end))

    def _openings_utc(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        # A window opened up to 7 days (its maximum length) before `start` may still be open;
        # pad a day either side for zone offsets.
        first_day = start.astimezone(self.tz).date() - timedelta(days=8)
        last_day = end.astimezone(self.tz).date() + timedelta(days=1)
        found: list[tuple[datetime, datetime]] = []
        day = first_day
        while day <= last_day:
            for w in self.windows:
                if w.opens_on(day):
                    opened = _resolve(day, w.start, self.tz).astimezone(UTC)
                    closed = opened + w.length
                    if closed > start and opened < end:
                        found.append((opened, closed))
            day += _DAY
        found.sort()
        return found

    def _stretch_utc(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The merged run of overlapping/touching openings containing `now` (UTC), capped a week on."""
        horizon = now + _WEEK
        current: tuple[datetime, datetime] | None = None
        for o, c in self._openings_utc(now, horizon + timedelta(seconds=1)):
            if current is not None and o <= current[1]:
                current = (current[0], max(current[1], c))
            elif current is not None and current[0] <= now < current[1]:
                break
            else:
                current = (o, c)
        if current is not None and current[0] <= now < current[1]:
            return current[0], min(current[1], horizon)
        return None

    def is_open(self, now: datetime) -> bool:
        """Whether a reboot may start at `now`."""
        return self._stretch_utc(_utc(now)) is not None

    def current_window_end(self, now: datetime) -> datetime | None:
        """When the (merged) window open at `now` closes, or None if none is open. If windows
        chain without a gap for more than a week, the end is capped one week ahead."""
        stretch = self._stretch_utc(_utc(now))
        return None if stretch is None else stretch[1]

    def next_open(self, now: datetime) -> datetime:
        """`now` (in UTC) if a window is open, else the instant (UTC) the next one opens."""
        at = _utc(now)
        for o, c in self._openings_utc(at, at + _WEEK + _DAY):
            if o <= at < c:
                return at
            if o > at:
                return o
        raise AssertionError("every schedule opens at least once a week")  # pragma: no cover


def _utc(dt: datetime) -> datetime:
    _require_aware(dt)
    return dt.astimezone(UTC)


def _require_aware(dt: datetime) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{dt!r} must be an aware datetime (with a time zone)")


def _tz_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)
