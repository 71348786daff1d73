"""Go-style durations (`time.ParseDuration` / `Duration.String`) as `datetime.timedelta`.

CoreOS configs write lengths and timeouts the way Go parses them (`1h30m`, `90s`, `1.5h`), so we
accept exactly that grammar: an optional sign, then one or more `<number><unit>` pairs, where the
number may carry a fraction and the unit is one of ns, us, µs (U+00B5 or U+03BC), ms, s, m, h.
The bare string `0` (optionally signed) is also a duration, as in Go. Like Go we refuse values
that do not fit a signed 64-bit count of nanoseconds (about 2562047h).

`timedelta` resolves microseconds, Go nanoseconds: sub-microsecond parts are rounded to the
nearest microsecond (half to even). Every value we format parses back to itself.
"""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction

__all__ = ["format_duration", "parse_duration"]

_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX_NS = 2**63 - 1
_MIN_NS = -(2**63)

# One `<number><unit>` pair; the unit is any run of non-digit, non-dot characters so we can name
# an unknown unit in the error rather than just saying "invalid".
_PAIR = re.compile(r"(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?(?P<unit>[^0-9.]*)")

_HELP = "use a Go duration such as 90s, 1h30m or 1.5h (units: ns, us, ms, s, m, h)"


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string; raise ValueError with a one-line message otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string, not {type(text).__name__}")
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return timedelta(0)
    if not s:
        raise ValueError(f"invalid duration {text!r}: {_HELP}")
    total = Fraction(0)
    pos = 0
    while pos < len(s):
        m = _PAIR.match(s, pos)
        assert m is not None  # the pattern can match the empty string, so it always matches
        whole, frac, unit = m.group("int"), m.group("frac"), m.group("unit")
        if not whole and not frac:
            # "", ".", ".s", "h" — Go requires at least one digit before the unit.
            raise ValueError(f"invalid duration {text!r}: {_HELP}")
        if not unit:
            raise ValueError(f"missing unit in duration {text!r}: {_HELP}")
        if unit not in _NS_PER_UNIT:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}: {_HELP}")
        if len(whole.lstrip("0")) > 20:
            raise ValueError(f"duration {text!r} is out of range (at most 2562047h47m16.854775807s)")
        # Digits past 1e-30 cannot change the nanosecond count (Go drops them too).
        frac = (frac or "")[:30]
        number = Fraction(int(whole or "0"))
        if frac:
            number += Fraction(int(frac), 10 ** len(frac))
        total += number * _NS_PER_UNIT[unit]
        if total > -_MIN_NS:  # cheap early exit so huge inputs never build huge numbers
            raise ValueError(f"duration {text!r} is out of range (at most 2562047h47m16.854775807s)")
        pos = m.end()
    # Go truncates the fractional nanoseconds; then we round to timedelta's microseconds.
    ns = int(total)
    if negative:
        ns = -ns
    if ns > _MAX_NS or ns < _MIN_NS:
        raise ValueError(f"duration {text!r} is out of range (at most 2562047h47m16.854775807s)")
    return timedelta(microseconds=round(Fraction(ns, 1000)))


def format_duration(td: timedelta) -> str:
    """Format like Go's `Duration.String`: `1h30m0s`, `1.5s`, `300ms`, `0s`."""
    us = (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds
    if us == 0:
        return "0s"
    sign = "-" if us < 0 else ""
    us = abs(us)
    if us < 1_000_000:
        if us < 1_000:
            return f"{sign}{us}\u00b5s"
        return f"{sign}{_decimal(us, 1_000)}ms"
    hours, rest = divmod(us, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    out = f"{_decimal(rest, 1_000_000)}s"
    if hours or minutes:
        out = f"{minutes}m{out}"
    if hours:
        out = f"{hours}h{out}"
    return sign + out


def _decimal(value: int, scale: int) -> str:
    """`value/scale` in decimal without trailing zeros (`1500, 1000` → `1.5`)."""
    whole, frac = divmod(value, scale)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(scale)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"
