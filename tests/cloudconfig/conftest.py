"""A small target system for `coreos-cloudinit --root`: the account files useradd needs, user core."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from locksmith.cloudconfig.main import run
from locksmith.cloudconfig.runner import RecordingRunner

PASSWD = "root:x:0:0:root:/root:/bin/bash\ncore:x:500:500:CoreOS Admin:/home/core:/bin/bash\n"
GROUP = "root:x:0:\nwheel:x:10:core\ndocker:x:233:\ncore:x:500:\n"
SHADOW = "root:*:19000:0:99999:7:::\ncore:*:19000:0:99999:7:::\n"
GSHADOW = "root:*::\nwheel:*::core\ndocker:!::\ncore:!::\n"


@pytest.fixture
def target(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    etc = root / "etc"
    etc.mkdir(parents=True)
    for name, text, mode in (
        ("passwd", PASSWD, 0o644),
        ("group", GROUP, 0o644),
        ("shadow", SHADOW, 0o600),
        ("gshadow", GSHADOW, 0o600),
    ):
        (etc / name).write_text(text)
        (etc / name).chmod(mode)
    (root / "home" / "core").mkdir(parents=True)
    os.chown(root / "home" / "core", 500, 500)
    return root


@dataclass
class Result:
    code: int
    out: str
    runner: RecordingRunner


Cli = Callable[..., Result]


@pytest.fixture
def cli(target: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Write `text` as user data and run coreos-cloudinit --root target on it; commands are recorded
    (useradd/usermod/systemctl --root run for real, nothing acts on this machine's services)."""

    def call(text: str | bytes | None = None, *args: str, live: bool = True, at_boot: bool = False) -> Result:
        argv = ["--root", str(target), *args]
        if text is not None:
            data = tmp_path / "user_data"
            data.write_bytes(text.encode() if isinstance(text, str) else text)
            argv += ["--from-file", str(data)]
        runner = RecordingRunner(live=live, at_boot=at_boot)
        capsys.readouterr()
        code = run(argv, runner=runner)
        return Result(code, capsys.readouterr().out, runner)

    return call


def snapshot(root: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every file and link under root with its mode and content (to show a second run changes nothing)."""
    out: dict[str, tuple[int, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            out[str(path)] = (info.st_mode, os.readlink(path))
        elif path.is_file():
            out[str(path)] = (info.st_mode, path.read_bytes())
    return out
