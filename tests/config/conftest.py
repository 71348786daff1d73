"""The `conf` fixture: load_config over two written files and a clean environment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from locksmith.settings.config import (
    Config,
    ConfigError,
    load_config,
)


@pytest.fixture
def conf(tmp_path: Path) -> Callable[..., Config]:
    """load_config with two files (usr, etc) written from the given text, and a clean environment."""
    usr, etc = tmp_path / "usr" / "update.conf", tmp_path / "etc" / "update.conf"

    def load(
        program: str = "locksmithd",
        usr_text: str | None = None,
        etc_text: str | None = None,
        env: dict[str, str] | None = None,
        flags: dict[str, object] | None = None,
    ) -> Config:
        for path, text in ((usr, usr_text), (etc, etc_text)):
            path.unlink(missing_ok=True)
            if text is not None:
                path.parent.mkdir(exist_ok=True)
                path.write_text(text)
        return load_config(program, flags or {}, env or {}, paths=(usr, etc))  # type: ignore[arg-type]

    load.usr = usr  # type: ignore[attr-defined]
    load.etc = etc  # type: ignore[attr-defined]
    return load


def error_of(fn: Callable[[], object]) -> str:
    with pytest.raises(ConfigError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message
