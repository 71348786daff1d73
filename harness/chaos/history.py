"""The recorded history of one chaos run: what the observer, the hosts and the fault injector saw.

One JSON object per line, appended as things happen, so a run that dies half-way still leaves a
history the checker can read. Record kinds:

- ``meta``   the run's parameters: key, max, hosts, liveness bound (first line).
- ``sem``    one change of the semaphore key seen by the observer's etcd v3 watch:
             ``rev`` (etcd mod revision) and ``value`` (text, or null when deleted).
- ``aux``    one change of a key beside it (`<key>-…`: line, requests to leave, holder ages): ``rev``,
             ``key`` and ``present`` (false when deleted).
- ``event``  a host's own event: ``rebooting`` (its reboot command ran) or ``booted`` (the
             supervisor started its next boot), each stamped with ``rev``: the etcd store
             revision read right after the event (null if etcd could not be read).
- ``fault``  one injected fault (for the report only; the checker does not trust it).
- ``faults_end`` the moment the injector stopped; the liveness bound counts from here.
- ``end``    the run's end (hosts were given until then to finish).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class History:
    records: list[dict[str, Any]] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        for r in self.records:
            if r.get("kind") == "meta":
                return r
        raise ValueError("history has no meta record: it was not written by locksmith-chaos")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == kind]

    @classmethod
    def load(cls, path: Path) -> History:
        records = []
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                raise ValueError(f"{path}:{n}: not a JSON history record; was the file cut short?") from None
        return cls(records)


class Recorder:
    """Appends records to a history file (and keeps them in memory), safe across threads.

    Hosts' reboot commands are separate processes; they append to the same file with O_APPEND
    single writes (see `append_record`), which Linux keeps whole for lines this short."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()

    def add(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"kind": kind, "t": time.time(), **fields}
        with self._lock:
            append_record(self.path, record)
        return record

    def history(self) -> History:
        return History.load(self.path)


def append_record(path: Path, record: dict[str, Any]) -> None:
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    with open(path, "ab", buffering=0) as f:
        f.write(line)
