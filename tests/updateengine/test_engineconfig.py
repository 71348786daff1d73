"""The update engine's settings: the shared loader with CoreOS's precedence, Go durations, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from locksmith.settings import check
from locksmith.settings.sources import ConfigError
from locksmith.updateengine import engineconfig
from locksmith.updateengine.daemon import _parser


def files(tmp_path: Path, etc: str, usr: str = "", release: str = "") -> tuple[Path, Path, Path]:
    """(release, usr, etc): lowest precedence first."""
    paths = (tmp_path / "release", tmp_path / "usr.conf", tmp_path / "etc.conf")
    for path, text in zip(paths, (release, usr, etc), strict=True):
        path.write_text(text)
    return paths


def test_etc_wins_over_usr_wins_over_release(tmp_path: Path) -> None:
    paths = files(
        tmp_path,
        "GROUP=beta\n# comment\nREBOOT_STRATEGY=off\n",
        'GROUP=alpha\nSERVER="http://127.0.0.1:8000/v1/update/"\n',
        "COREOS_RELEASE_VERSION=1068.9.0\nCOREOS_RELEASE_BOARD=arm64-usr\nGROUP=stable\n",
    )
    config = engineconfig.load(paths)
    assert config.group == "beta"
    assert config.server == "http://127.0.0.1:8000/v1/update/"
    assert (config.version, config.board) == ("1068.9.0", "arm64-usr")
    assert config.public_key == Path("/usr/share/update_engine/update-payload-key.pub.pem")


def test_defaults_when_no_files(tmp_path: Path) -> None:
    config = engineconfig.load((tmp_path / "a", tmp_path / "b", tmp_path / "c"))
    assert config.group == "stable" and config.server == engineconfig.DEFAULT_SERVER
    assert config.check_interval == 45 * 60 and config.disk is None
    assert (config.initial_delay, config.check_fuzz, config.max_backoff) == (420.0, 600.0, 4 * 3600.0)


def test_go_durations_and_plain_seconds(tmp_path: Path) -> None:
    paths = files(tmp_path, "UPDATE_ENGINE_CHECK_INTERVAL=1h30m\nUPDATE_ENGINE_INITIAL_DELAY=0.5\n")
    config = engineconfig.load(paths)
    assert (config.check_interval, config.initial_delay) == (5400.0, 0.5)


def test_flags_win(tmp_path: Path) -> None:
    paths = files(tmp_path, "GROUP=beta\nUPDATE_ENGINE_DISK=/dev/vda\n")
    args = _parser().parse_args(["--group", "alpha", "--disk", "/tmp/disk.img", "--check-interval", "2m"])
    from locksmith.settings.flags import flags_from_args

    config = engineconfig.load(paths, flags_from_args(args, "update_engine"))
    assert config.group == "alpha" and config.disk == Path("/tmp/disk.img") and config.check_interval == 120.0


def test_the_engine_reads_no_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUP", "beta")
    assert engineconfig.load(files(tmp_path, "")).group == "stable"


@pytest.mark.parametrize(
    ("text", "start", "needle"),
    [
        ("GROUP=bad group!\n", 'GROUP="bad group!"', "not a channel name"),
        ("SERVER=ftp://x/\n", 'SERVER="ftp://x/"', "not an http(s) URL"),
        ("UPDATE_ENGINE_CHECK_INTERVAL=soon\n", 'UPDATE_ENGINE_CHECK_INTERVAL="soon"', "use a Go duration"),
        ("UPDATE_ENGINE_CHECK_FUZZ=-5\n", 'UPDATE_ENGINE_CHECK_FUZZ="-5"', "must be 0 or more"),
        ("UPDATE_ENGINE_DISK=disk.img\n", 'UPDATE_ENGINE_DISK="disk.img"', "absolute path"),
        ("this is not a line\n", "", "line 1"),
    ],
)
def test_invalid_values_name_key_file_and_fix(tmp_path: Path, text: str, start: str, needle: str) -> None:
    paths = files(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        engineconfig.load(paths)
    message = str(err.value)
    assert message.startswith(start) and needle in message and str(paths[2]) in message and "\n" not in message


def test_check_for_the_engine() -> None:
    assert check("update_engine", "UPDATE_ENGINE_CHECK_INTERVAL", "45m") is None
    assert "not a channel name" in (check("update_engine", "GROUP", "a b") or "")
    assert check("update_engine", "LOCKSMITHD_ENDPOINT", "http://a:1") is not None
