"""Issue 9, class 6: a config file the admin named must exist and be readable — one line and exit 1,
never a start on defaults; the default CoreOS paths may still be absent."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from locksmith.agent import main as agent_main
from locksmith.settings.load import read_sources
from locksmith.settings.sources import ConfigError, require_file
from locksmith.updateengine import daemon, engineconfig

from .test_config_secrets import _as_unprivileged


def _one_line(err: str, prog: str, path: Path) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: config file {path} ")
    return lines[0]


@pytest.mark.parametrize("kind", ["missing", "directory", "missing-parent"])
def test_locksmithd_config_that_is_not_a_file_exits_1(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = {"missing": tmp_path / "nope.conf", "directory": tmp_path, "missing-parent": tmp_path / "a" / "b"}[kind]
    # REBOOT_STRATEGY=off would otherwise make locksmithd exit 0 at once, as if all was well.
    good = tmp_path / "good.conf" if kind != "directory" else tmp_path / "x" / "good.conf"
    good.parent.mkdir(exist_ok=True)
    good.write_text("REBOOT_STRATEGY=off\n")
    assert agent_main.main(["--config", str(good), "--config", str(path)]) == 1
    line = _one_line(capsys.readouterr().err, "locksmithd", path)
    assert "--config" in line
    assert ("does not exist" in line) if kind != "directory" else ("is a directory" in line)
    assert not (tmp_path / "a").exists()  # nothing created on the way


def test_locksmithd_named_config_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "only.conf"
    conf.write_text("REBOOT_STRATEGY=off\n")
    assert agent_main.main(["--config", str(conf)]) == 0


def test_unreadable_named_file_names_the_fix() -> None:
    base = Path(tempfile.mkdtemp(prefix="locksmith-named-"))
    base.chmod(0o755)
    conf = base / "update.conf"
    conf.write_text("GROUP=beta\n")
    conf.chmod(0o600)
    try:
        message = _as_unprivileged(lambda: require_file(conf, "--update-conf"))
    finally:
        conf.unlink()
        base.rmdir()
    assert message.startswith(f"config file {conf} (given with --update-conf) is not readable by uid ")
    assert "chmod" in message and "\n" not in message


@pytest.mark.parametrize("option", ["--update-conf", "--usr-update-conf", "--release-file"])
def test_update_engine_named_file_missing_exits_1(
    tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"
    assert daemon.main([option, str(missing), "--no-periodic"]) == 1
    line = _one_line(capsys.readouterr().err, "update_engine", missing)
    assert f"(given with {option}) does not exist" in line


def test_update_engine_named_files_are_read_and_defaults_fill_the_rest(tmp_path: Path) -> None:
    conf = tmp_path / "update.conf"
    conf.write_text("GROUP=beta\n")
    release = tmp_path / "release"
    release.write_text("COREOS_RELEASE_VERSION=1745.0.0\n")
    parser = daemon._parser()
    config = daemon._load_config(parser.parse_args(["--update-conf", str(conf), "--release-file", str(release)]))
    assert (config.group, config.version) == ("beta", "1745.0.0")


def test_loader_requires_only_the_named_files(tmp_path: Path) -> None:
    named, default = tmp_path / "named.conf", tmp_path / "default.conf"
    read_sources("locksmithd", {}, {}, (default,))  # an absent default is fine
    with pytest.raises(ConfigError, match=f"config file {named} does not exist"):
        read_sources("locksmithd", {}, {}, (default, named), required={named})
    with pytest.raises(ConfigError, match="does not exist"):
        engineconfig.load((default, named), required={named})
