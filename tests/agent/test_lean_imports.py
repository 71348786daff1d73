"""What an idle locksmithd keeps loaded: every module costs resident memory for the agent's whole life,
so the heavy ones stay out of the processes that do not use them (figures: bench/footprint.py).
Each check runs in a fresh interpreter, as the console script starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from locksmith.protocol.omaha import COREOS_APPID
from locksmith.settings import keys

# Load the configuration and the strategy as locksmithd's main does, then list the loaded modules.
_PROBE = """
import json, os, sys
from locksmith.agent import main
args = main.build_parser().parse_args(["--config", "/dev/null"])
config = main.load_config("locksmithd", main.flags_from_args(args, "locksmithd"), os.environ, ("/dev/null",))
strategy = main.load_strategy(config.strategy)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_modules(env: dict[str, str], tmp_path: Path) -> set[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**base, **env}, capture_output=True, text=True, timeout=60, check=True
    )
    return {m.split(".")[0] for m in json.loads(out.stdout)}


def test_the_settings_spell_the_omaha_app_id_as_the_protocol_does() -> None:
    assert keys.COREOS_APPID == COREOS_APPID


@pytest.mark.parametrize("strategy", ["reboot", "etcd-lock", "best-effort"])
def test_an_agent_on_the_embedded_store_loads_no_http_stack_and_no_cryptography(strategy: str, tmp_path: Path) -> None:
    env = {"REBOOT_STRATEGY": strategy, "LOCKSMITHD_ENDPOINT": f"file://{tmp_path / 'kv.db'}"}
    loaded = loaded_modules(env, tmp_path)
    assert not loaded & {"httpx", "httpcore", "anyio", "cryptography", "defusedxml"}
