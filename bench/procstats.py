"""What a benchmark reads of a process from /proc: CPU seconds, RSS, context switches of all its
threads, and its memory (RSS, PSS, USS from smaps_rollup); and the memory of an interpreter that only
imported some modules, the floor under a program built on them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class ProcSample:
    at: float
    cpu_seconds: float
    rss_kib: int
    switches: int  # voluntary + involuntary, all threads
    voluntary: int
    threads: int


def _status_fields(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition(":")
        out[name] = value.strip()
    return out


def sample(pid: int) -> ProcSample:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = cpu_seconds(pid)
    rss = int(fields[21]) * PAGE_KIB
    switches = voluntary = threads = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread may end while we read
            st = _status_fields(task / "status")
            v, n = int(st["voluntary_ctxt_switches"]), int(st["nonvoluntary_ctxt_switches"])
            voluntary += v
            switches += v + n
            threads += 1
    return ProcSample(time.monotonic(), cpu, rss, switches, voluntary, threads)


def memory(pid: int) -> dict[str, int]:
    """RSS and its high-water mark, PSS, USS (private pages) and anonymous memory (heap, arenas,
    stacks: what the process itself allocated, as opposed to mapped files), in KiB."""
    st = _status_fields(Path(f"/proc/{pid}/status"))
    rollup = _status_fields(Path(f"/proc/{pid}/smaps_rollup"))

    def kib(d: dict[str, str], k: str) -> int:
        return int(d.get(k, "0 kB").split()[0])

    return {
        "rss_kib": kib(st, "VmRSS"),
        "rss_peak_kib": kib(st, "VmHWM"),
        "pss_kib": kib(rollup, "Pss"),
        "uss_kib": kib(rollup, "Private_Clean") + kib(rollup, "Private_Dirty"),
        "anonymous_kib": kib(rollup, "Anonymous"),
    }


def import_floor(modules: str, settle: float = 1.0) -> dict[str, int]:
    """`memory` of this interpreter idle after `import <modules>` ("" for nothing at all), sampled
    `settle` seconds after it said it had imported them."""
    code = f"import {modules}\n" if modules else ""
    code += "import sys, time\nprint('ready', flush=True)\ntime.sleep(120)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the child exits (EOF) if an import fails
        if line.strip() != b"ready":
            raise RuntimeError(f"python -c 'import {modules}' did not start")
        time.sleep(settle)
        return memory(proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=10)
