"""The systemd EnvironmentFile parser: systemd's rules, plus clear errors where systemd stays silent."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.settings.envfile import EnvFileError, load_env_file, parse_env


def pairs(text: str) -> list[tuple[str, str]]:
    return [(e.key, e.value) for e in parse_env(text, "test.conf")]


def test_systemd_continuations_and_trailing_whitespace() -> None:
    # The cases of systemd's own test-env-file.c (env_file_1 and env_file_2).
    text = "a=a\nb=b\\\nc\nd= d\\\ne  \\\nf  \ng=g\\ \nh= ąęół\\ śćńźżμ \ni=i\\"
    assert pairs(text) == [
        ("a", "a"),
        ("b", "bc"),
        ("d", "de  f"),
        ("g", "g "),
        ("h", "ąęół śćńźżμ"),
        ("i", "i"),
    ]
    assert pairs("a=a\\\n") == [("a", "a")]


def test_quotes() -> None:
    text = (
        'A="x y"z  \n'  # quoted and unquoted parts concatenate; trailing blanks of unquoted part dropped
        "B='a\nb'\n"  # single quotes keep newlines and backslashes literally
        "C='\\n'\n"
        'D="q\\"\\n\\\\w\\$"\n'  # in double quotes only " \\ ` $ are escapes; \\n stays two characters
        'E="one\\\ntwo"\n'  # backslash-newline inside double quotes joins lines
        'F="  padded  "\n'
    )
    assert pairs(text) == [
        ("A", "x yz"),
        ("B", "a\nb"),
        ("C", "\\n"),
        ("D", 'q"\\n\\w$'),
        ("E", "onetwo"),
        ("F", "  padded  "),
    ]


def test_comments_blank_lines_and_spacing() -> None:
    text = "# comment\n\n   ; another \\\nKEY=v # not a comment\n  SPACED   =   value  \nEMPTY=\nLAST=1"
    assert pairs(text) == [("KEY", "v # not a comment"), ("SPACED", "value"), ("EMPTY", ""), ("LAST", "1")]


def test_comment_does_not_continue_since_systemd_254() -> None:
    assert pairs("#A=1 \\\nB=2\n") == [("B", "2")]


def test_export_prefix_is_tolerated() -> None:
    assert pairs("export REBOOT_STRATEGY=off\nexport\tX=1\n") == [("REBOOT_STRATEGY", "off"), ("X", "1")]


def test_repeated_keys_are_all_returned_in_order() -> None:
    assert pairs("A=1\nA=2\n") == [("A", "1"), ("A", "2")]


def test_line_numbers_point_at_the_start_of_the_assignment() -> None:
    entries = parse_env("# c\nA='x\ny'\n\nB=1\\\n2\nC=3\n", "f")
    assert [(e.key, e.line) for e in entries] == [("A", 2), ("B", 5), ("C", 7)]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("A=1\nGARBAGE\n", 2, "'GARBAGE' is not KEY=VALUE: add '='"),
        ("A=1\nB=2\nTAIL", 3, "'TAIL' is not KEY=VALUE"),
        ('A=1\nB="open\nmore\n', 2, 'the " opened here is never closed'),
        ("A='open", 1, "the ' opened here is never closed"),
        ("1A=2", 1, "'1A' is not a valid variable name"),
        ("A B=1", 1, "'A B' is not a valid variable name"),
        ("A=1\nB=\0\n", 2, "NUL byte"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(EnvFileError) as info:
        parse_env(text, "/etc/coreos/update.conf")
    message = str(info.value)
    assert message.startswith(f"/etc/coreos/update.conf line {line}: ")
    assert fragment in message
    assert "\n" not in message
    assert info.value.line == line


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "update.conf"
    path.write_bytes(b"A=1\nB=\xff\n")
    with pytest.raises(EnvFileError, match=rf"^{path} line 2: invalid UTF-8"):
        load_env_file(path)


def test_missing_file_is_left_to_the_caller(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_env_file(tmp_path / "absent.conf")


_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40)


def _double_quoted(value: str) -> str:
    return '"' + "".join("\\" + c if c in '"\\`$' else c for c in value) + '"'


@given(st.lists(st.tuples(_keys, _values), max_size=8))
def test_double_quoted_values_round_trip(items: list[tuple[str, str]]) -> None:
    text = "".join(f"{k}={_double_quoted(v)}\n" for k, v in items)
    assert pairs(text) == items


@given(st.lists(st.tuples(_keys, _values.filter(lambda v: "'" not in v)), max_size=8))
def test_single_quoted_values_round_trip(items: list[tuple[str, str]]) -> None:
    text = "".join(f"{k}='{v}'\n" for k, v in items)
    assert pairs(text) == items


@given(st.text(alphabet="AB_=#; \t\n\r\\'\"x$`", max_size=60) | st.text(max_size=60))
def test_fuzz_only_envfile_errors(text: str) -> None:
    try:
        entries = parse_env(text, "fuzz.conf")
    except EnvFileError as exc:
        assert str(exc).startswith("fuzz.conf line ")
        assert "\n" not in str(exc)
    else:
        for e in entries:
            assert e.key.isidentifier() and e.key.isascii()
            assert 1 <= e.line <= text.count("\n") + 1
