"""The order of CoreOS versions the downgrade refusal relies on (issue 9, class 7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.updateengine.versions import Version, is_newer, parse


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1688.5.3", "1745.0.0"),
        ("1068.9.0", "1068.10.0"),  # numbers, not text: 10 > 9
        ("1745.0.0", "1745.0.1"),
        ("1745.0.0-rc1", "1745.0.0"),  # a pre-release comes before its release
        ("1745.0.0-alpha", "1745.0.0-alpha.1"),
        ("1745.0.0-alpha.1", "1745.0.0-alpha.beta"),  # numbers before words
        ("1745.0.0-beta.2", "1745.0.0-beta.11"),
        ("0.0.0", "0.0.1"),
        ("1.9", "1.10.0"),
    ],
)
def test_order(older: str, newer: str) -> None:
    assert is_newer(newer, older)
    assert not is_newer(older, newer)


@pytest.mark.parametrize(
    ("a", "b"), [("1688.5", "1688.5.0"), ("2.0.0+build-1", "2.0.0"), ("2.0.0+a", "2.0.0+b"), ("007.1", "7.1.0")]
)
def test_same_version_is_not_newer(a: str, b: str) -> None:
    assert parse(a) == parse(b)
    assert not is_newer(a, b) and not is_newer(b, a)


@pytest.mark.parametrize(
    "text", ["", "latest", "v1.2.3", "1..2", "1.2.", ".1", "1.2.3-", "1.2.3-rc..1", "1.2.3+", "1.x.0", "1 .2", "٣.1"]
)
def test_unorderable_is_a_one_line_value_error(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse(text)
    assert "\n" not in str(info.value) and "1745.0.0" in str(info.value)
    with pytest.raises(ValueError):
        is_newer(text, "1.0.0")
    with pytest.raises(ValueError):
        is_newer("1.0.0", text)


def test_huge_version_is_refused_quickly() -> None:
    with pytest.raises(ValueError) as info:
        parse("1." * 100_000 + "1")
    assert len(str(info.value)) < 300


cores = st.lists(st.integers(0, 10**6), min_size=1, max_size=5)
idents = st.lists(st.one_of(st.integers(0, 99), st.from_regex(r"[a-z][a-z0-9-]{0,5}", fullmatch=True)), max_size=3)


def _text(core: list[int], pre: list[int | str]) -> str:
    return ".".join(map(str, core)) + ("-" + ".".join(map(str, pre)) if pre else "")


@given(cores, cores)
def test_release_order_is_numeric_tuple_order(a: list[int], b: list[int]) -> None:
    def padded(c: list[int]) -> list[int]:
        return c + [0] * (6 - len(c))

    assert is_newer(_text(a, []), _text(b, [])) == (padded(a) > padded(b))


@given(cores, idents, cores, idents)
def test_order_is_total_and_antisymmetric(a: list[int], pa: list[int | str], b: list[int], pb: list[int | str]) -> None:
    x, y = parse(_text(a, pa)), parse(_text(b, pb))
    assert isinstance(x, Version)
    assert sum((x < y, x == y, x > y)) == 1
    assert (x < y) == (y > x)


@given(st.text(max_size=40))
def test_any_text_parses_or_is_a_value_error(text: str) -> None:
    try:
        parse(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
