from __future__ import annotations

from pathlib import Path

import pytest

from locksmith.updateengine import engineconfig
from locksmith.updateengine.engineconfig import ConfigError


def files(tmp_path: Path, etc: str, usr: str = "", release: str = "") -> tuple[Path, Path, Path]:
    paths = (tmp_path / "etc.conf", tmp_path / "usr.conf", tmp_path / "release")
    for path, text in zip(paths, (etc, usr, release), strict=True):
        path.write_text(text)
    return paths


def test_first_file_holding_a_key_wins(tmp_path: Path) -> None:
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


def test_overrides_win(tmp_path: Path) -> None:
    paths = files(tmp_path, "GROUP=beta\nUPDATE_ENGINE_DISK=/dev/vda\n")
    config = engineconfig.load(paths, group="alpha", disk=Path("/tmp/disk.img"), server=None)
    assert config.group == "alpha" and config.disk == Path("/tmp/disk.img")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("GROUP=bad group!\n", "GROUP='bad group!'"),
        ("SERVER=ftp://x/\n", "not an http(s) URL"),
        ("UPDATE_ENGINE_CHECK_INTERVAL=soon\n", "UPDATE_ENGINE_CHECK_INTERVAL=600"),
        ("UPDATE_ENGINE_DISK=disk.img\n", "absolute path"),
        ("this is not a line\n", "line 1"),
    ],
)
def test_invalid_values_name_key_file_and_fix(tmp_path: Path, text: str, needle: str) -> None:
    paths = files(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        engineconfig.load(paths)
    message = str(err.value)
    assert needle in message and str(paths[0]) in message and "\n" not in message
