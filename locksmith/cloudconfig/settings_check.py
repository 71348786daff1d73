"""The one bridge to the programs' own parsers: a value locksmithd or update_engine would reject is
rejected by `--validate` too, with their words.

Today's settings API validates a whole configuration (`load_config` raises the first `ConfigError`);
we feed it only the cloud-config's values and, after each error, drop the key it named and try again,
so one pass reports every bad key. When `locksmith.settings.check(program, key, value)` lands, this
module is the only one to change.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from locksmith.cloudconfig.envtext import quote_value
from locksmith.settings.config import ConfigError, load_config
from locksmith.updateengine import engineconfig

# Files named in the config may be written later (write_files, a mounted secret), so their existence is
# the agent's to check when it starts, not ours.
_NOT_CHECKED = ("LOCKSMITHD_ETCD_CAFILE", "LOCKSMITHD_ETCD_CERTFILE", "LOCKSMITHD_ETCD_KEYFILE")
# Settings the agent needs alongside a value but cloud-config has no key for (they come from update.conf):
# given a stand-in, so `reboot_strategy: fleetlock` is judged on its own.
_STAND_INS = {"LOCKSMITHD_FLEETLOCK_URL": "https://fleetlock.invalid"}


def problems(program: str, values: dict[str, str]) -> dict[str, str]:
    """variable -> the owning program's one-line complaint, for each value it rejects."""
    if program == "engine":
        return _engine(values)
    return _agent({k: v for k, v in values.items() if k not in _NOT_CHECKED})


def _agent(values: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    environ = {k: v for k, v in values.items() if v != ""}
    stand_ins = {k: v for k, v in _STAND_INS.items() if k not in environ}
    for _ in range(len(values) + 1):
        try:
            load_config("agent", flags={}, environ={**stand_ins, **environ}, paths=())
            break
        except ConfigError as exc:
            key = exc.key if exc.key in environ else next(iter(environ), None)
            if key is None:
                break
            message = str(exc).replace(" (from the environment)", "")
            # Dropping a bad key can make its partner complain ("START is set but LENGTH is not"):
            # that is the same mistake, already reported.
            if not any(bad in message for bad in found):
                found[key] = message
            environ.pop(key)
    return found


def _engine(values: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in values.items():
        with tempfile.TemporaryDirectory(prefix="cloudinit-check-") as tmp:
            conf = Path(tmp) / "update.conf"
            conf.write_text(f"{key}={quote_value(value)}\n")
            try:
                engineconfig.load((conf,))
            except engineconfig.ConfigError as exc:
                found[key] = str(exc).replace(f" in {conf}", "")
    return found
