"""The one bridge to the programs' own parsers: a value locksmithd or update_engine would reject is
rejected by `--validate` too, with their words. Each value is judged alone by the schema's parser
(`locksmith.settings.check`); the rules across keys (a window start needs its length, fleetlock needs
its URL) by the agent's own loader.
"""

from __future__ import annotations

import json

from locksmith.settings import check
from locksmith.settings.config import ConfigError, load_config
from locksmith.settings.schema import settings_of

# Files named in the config may be written later (write_files, a mounted secret), so their existence is
# the agent's to check when it starts, not ours.
_NOT_CHECKED = ("LOCKSMITHD_ETCD_CAFILE", "LOCKSMITHD_ETCD_CERTFILE", "LOCKSMITHD_ETCD_KEYFILE")
# Settings the agent needs alongside a value but cloud-config has no key for (they come from update.conf):
# given a stand-in, so `reboot_strategy: fleetlock` is judged on its own.
_STAND_INS = {"LOCKSMITHD_FLEETLOCK_URL": "https://fleetlock.invalid"}


def problems(program: str, values: dict[str, str]) -> dict[str, str]:
    """variable -> the owning program's one-line complaint, for each value it rejects."""
    name = "update_engine" if program == "engine" else "locksmithd"
    known = settings_of(name)
    found: dict[str, str] = {}
    for key, value in values.items():
        if key in _NOT_CHECKED:
            continue
        problem = check(name, key, value)
        if problem is not None:
            shown = '"***"' if key in known and known[key].secret else json.dumps(value, ensure_ascii=False)
            found[key] = f"{key}={shown}: {problem}"
    if name == "locksmithd":
        valid = {k: v for k, v in values.items() if k not in found and k not in _NOT_CHECKED}
        found.update(_across_keys(valid, already=found))
    return found


def _across_keys(values: dict[str, str], already: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    environ = {k: v for k, v in values.items() if v != ""}
    stand_ins = {k: v for k, v in _STAND_INS.items() if k not in environ}
    for _ in range(len(values) + 1):
        try:
            load_config("locksmithd", flags={}, environ={**stand_ins, **environ}, paths=())
            break
        except ConfigError as exc:
            key = exc.key if exc.key in environ else next(iter(environ), None)
            if key is None:
                break
            message = str(exc).replace(" (from the environment)", "")
            # A key whose partner was rejected alone ("START is set but LENGTH is not") is that same
            # mistake, already reported.
            if not any(bad in message for bad in (*already, *found)):
                found[key] = message
            environ.pop(key)
    return found
