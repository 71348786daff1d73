"""The invariant checker: pure functions over a recorded History, no I/O, no clocks.

What it proves about a run (etcd's revisions give one total order for everything):

1. Every value the semaphore ever had is valid CoreOS semaphore JSON, self-consistent
   (semaphore == max - len(holders), holders unique), with the run's max and only the run's hosts.
   The key is never deleted.
2. No holder lost or duplicated: each write changes the holder set by at most one host that the keys
   beside the semaphore do not account for (a lock adds the locker, an unlock removes the unlocker;
   protocol/waiting_line.py's writes also remove hosts whose request to leave, or whose untaken line
   key, they delete, and add hosts that are in line). Any other jump is a lost update. A write that
   removes its writer and adds a host in line is what a lost update by that host would look like too:
   rules 3 and 4 are what prove that one safe.
3. Each host's reboot happens while it holds a slot: at the store revision read right after its
   reboot command ran, it is a holder — and it stays a holder, at every revision, until the
   revision read when it booted again ("released after boot", never before).
4. The headline: at no revision are more than `max` hosts inside a critical section, a critical
   section of a host being [the revision its slot was taken, the revision it was given back]
   around a reboot. (1-3 imply it; it is counted directly so a bug in that argument shows.)
5. Liveness: after the faults stopped, every host rebooted into the update and gave its slot back
   within `bound` seconds, and the final value has no holders. A host that died for good holding a slot
   (fault "holder-dies-for-good", with LOCKSMITHD_LOCK_TTL) owes no reboot: the others must free its slot
   (its lease expired), and once freed it never holds again.

6. The history is complete: the observer saw the key up to its last modification (read at the
   end), and every reboot and boot the hosts' supervisors counted has its event.

Events whose revision stamp is missing (etcd unreadable for its whole retry budget) cannot be
placed in revision order: the proof has a hole there, so each one fails the run ("unverified").
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from harness.chaos.history import History
from locksmith.protocol.semaphore import SemaphoreCorrupt, decode
from locksmith.protocol.waiting_line import leaving_key, line_key


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.detail}"


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    revisions: int = 0
    reboots: int = 0
    max_in_critical: int = 0
    max_holders: int = 0
    unverified_events: int = 0
    finished_hosts: int = 0
    slowest_finish_after_faults: float | None = None
    dead_hosts: int = 0
    #: Seconds from each dead-for-good host's death to the first value without it.
    expiries: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, rule: str, detail: str) -> None:
        self.violations.append(Violation(rule, detail))


@dataclass(frozen=True)
class _Value:
    rev: int
    t: float
    holders: frozenset[str]


def check(history: History) -> Report:
    meta = history.meta()
    k = int(meta["max"])
    hosts = set(meta["hosts"])
    key = str(meta.get("key", "semaphore"))
    report = Report()

    values = _check_values(history.of_kind("sem"), history.of_kind("aux"), key, k, hosts, report)
    revs = [v.rev for v in values]

    def holders_at(rev: int) -> frozenset[str]:
        i = bisect.bisect_right(revs, rev) - 1
        return values[i].holders if i >= 0 else frozenset()

    sections = _check_reboots(history.of_kind("event"), values, revs, holders_at, report)
    _count_critical(sections, k, report)
    _check_liveness(history, meta, values, hosts, report)
    _check_complete(history, values, report)
    if report.unverified_events:
        report.add("unverified", f"{report.unverified_events} event(s) could not be placed in revision order")
    return report


def _check_values(
    sems: list[dict[str, Any]], aux: list[dict[str, Any]], key: str, k: int, hosts: set[str], report: Report
) -> list[_Value]:
    beside = _Beside(aux)
    values: list[_Value] = []
    previous: frozenset[str] | None = None
    last_rev = 0
    for rec in sems:
        rev = int(rec["rev"])
        if rev <= last_rev:
            report.add("order", f"revision {rev} observed after revision {last_rev}")
            continue
        last_rev = rev
        raw = rec.get("value")
        if raw is None:
            report.add("deleted", f"the semaphore key was deleted at revision {rev}; every holder was lost")
            holders: frozenset[str] = frozenset()
        else:
            try:
                sem = decode(raw.encode(), key)
            except SemaphoreCorrupt as exc:
                report.add("json", f"revision {rev}: {exc.reason}: {raw!r}")
                continue
            holders = frozenset(sem.holders)
            if sem.max != k:
                report.add("max", f"revision {rev}: max is {sem.max}, the run set {k}")
            if len(holders) > k:
                report.add("over-max", f"revision {rev}: {len(holders)} holders {sorted(holders)} > max {k}")
            strangers = holders - hosts
            if strangers:
                report.add("stranger", f"revision {rev}: holder(s) {sorted(strangers)} are not hosts of this run")
        if previous is not None and beside.unexplained(key, rev, previous, holders) > 1:
            report.add(
                "lost-update",
                f"revision {rev}: holders jumped from {sorted(previous)} to {sorted(holders)} in one write",
            )
        previous = holders
        report.max_holders = max(report.max_holders, len(holders))
        values.append(_Value(rev, float(rec.get("t", 0.0)), holders))
    report.revisions = len(values)
    return values


class _Beside:
    """The keys beside the semaphore (``aux`` records), replayed in revision order as `unexplained` walks
    the semaphore's revisions forward."""

    def __init__(self, aux: list[dict[str, Any]]) -> None:
        self._changes = sorted(((int(r["rev"]), str(r["key"]), bool(r["present"])) for r in aux), key=lambda c: c[0])
        self._next = 0
        self._present: set[str] = set()

    def unexplained(self, key: str, rev: int, before: frozenset[str], after: frozenset[str]) -> int:
        """How many of the holders a write at `rev` removed or added are not accounted for by the keys
        it deleted (a request to leave, or an untaken line key) or by a line key standing before it."""
        while self._next < len(self._changes) and self._changes[self._next][0] < rev:
            _, changed, present = self._changes[self._next]
            (self._present.add if present else self._present.discard)(changed)
            self._next += 1
        deleted = {c for r, c, present in self._changes[self._next :] if r == rev and not present}
        left = [h for h in before - after if not {leaving_key(key, h), line_key(key, h)} & deleted]
        came = [h for h in after - before if line_key(key, h) not in self._present]
        return len(left) + len(came)


def _check_reboots(
    events: list[dict[str, Any]],
    values: list[_Value],
    revs: list[int],
    holders_at: Any,
    report: Report,
) -> list[tuple[int, float, str]]:
    """Rules 3 and 4's input: returns critical sections as (start rev, end rev or inf, host)."""
    sections: list[tuple[int, float, str]] = []
    pending: dict[str, int | None] = {}  # host -> revision stamp of its reboot awaiting a boot
    for ev in events:
        host, what, rev = ev["host"], ev["event"], ev.get("rev")
        if what == "rebooting":
            report.reboots += 1
            pending[host] = rev
            if rev is None:
                report.unverified_events += 1
                continue
            if host not in holders_at(rev):
                report.add("unlocked-reboot", f"{host} ran its reboot command at revision {rev} without holding a slot")
        elif what == "booted":
            if host not in pending:
                continue  # a first boot, or an agent restart without a reboot: nothing to check
            reboot_rev = pending.pop(host)
            if rev is None or reboot_rev is None:
                report.unverified_events += 1 if rev is None else 0
                continue
            # The slot must stay with the host at every revision from its reboot to its boot.
            for v in values[bisect.bisect_right(revs, reboot_rev) : bisect.bisect_right(revs, rev)]:
                if host not in v.holders:
                    report.add(
                        "released-before-boot",
                        f"{host} lost its slot at revision {v.rev} while rebooting "
                        f"(reboot at {reboot_rev}, boot at {rev})",
                    )
                    break
            else:
                if host not in holders_at(rev):
                    report.add("released-before-boot", f"{host} booted at revision {rev} without its slot")
            sections.append(_section(host, reboot_rev, values, revs))
    for host, reboot_rev in pending.items():
        if reboot_rev is not None:
            sections.append(_section(host, reboot_rev, values, revs))
    return sections


def _section(host: str, reboot_rev: int, values: list[_Value], revs: list[int]) -> tuple[int, float, str]:
    """The critical section around a reboot: from when the host's slot was taken to when it was
    given back (a host rebooting without a slot counts from its reboot)."""
    i = bisect.bisect_right(revs, reboot_rev) - 1
    start = reboot_rev
    j = i
    while j >= 0 and host in values[j].holders:
        start = values[j].rev
        j -= 1
    end: float = float("inf")
    for v in values[i + 1 :]:
        if host not in v.holders:
            end = v.rev
            break
    return (start, end, host)


def _count_critical(sections: list[tuple[int, float, str]], k: int, report: Report) -> None:
    points: list[tuple[float, int, str]] = []
    for start, end, host in sections:
        points.append((start, 1, host))
        points.append((end, -1, host))
    inside: dict[str, int] = {}
    # Ends sort before starts at the same revision: a release and a take cannot share a revision.
    for rev, delta, host in sorted(points, key=lambda p: (p[0], p[1])):
        inside[host] = inside.get(host, 0) + delta
        if inside[host] == 0:
            del inside[host]
        report.max_in_critical = max(report.max_in_critical, len(inside))
        if delta > 0 and len(inside) > k:  # only a start can push it over (and a start's revision is finite)
            report.add("over-max-critical", f"revision {int(rev)}: hosts {sorted(inside)} are all rebooting (max {k})")


def _check_liveness(
    history: History, meta: dict[str, Any], values: list[_Value], hosts: set[str], report: Report
) -> None:
    if not history.of_kind("end"):
        report.add("incomplete", "the run has no end record: it was cut short before hosts could finish")
        return
    faults_end = history.of_kind("faults_end")
    since = float(faults_end[-1]["t"]) if faults_end else float(history.records[0].get("t", 0.0))
    bound = float(meta["bound"])
    dead = _check_dead(history, values, report)
    last_boot: dict[str, dict[str, Any]] = {}
    rebooted: set[str] = set()
    for ev in history.of_kind("event"):
        if ev["event"] == "rebooting":
            rebooted.add(ev["host"])
        elif ev["event"] == "booted" and ev["host"] in rebooted:
            last_boot[ev["host"]] = ev
    slowest = 0.0
    for host in sorted(hosts - dead):
        boot = last_boot.get(host)
        if boot is None:
            report.add("unfinished", f"{host} never rebooted into the update")
            continue
        done = _released_after(host, boot, values)
        if done is None:
            report.add("unfinished", f"{host} still holds its slot after booting (boot at {boot.get('rev')})")
            continue
        late = done - since
        slowest = max(slowest, late)
        if late > bound:
            report.add("slow", f"{host} finished {late:.1f}s after the faults stopped (bound {bound:.0f}s)")
        else:
            report.finished_hosts += 1
    report.slowest_finish_after_faults = slowest
    if values and values[-1].holders:
        report.add("unfinished", f"the final semaphore still has holders {sorted(values[-1].holders)}")


def _check_dead(history: History, values: list[_Value], report: Report) -> set[str]:
    """Hosts that died for good: each must leave the semaphore after its death, and never come back."""
    dead: set[str] = set()
    for rec in history.of_kind("died"):
        host, died_at = str(rec["host"]), float(rec["t"])
        dead.add(host)
        before = [v for v in values if v.t < died_at]
        # It may have given its slot back just before it died (the injector's view of holders lags).
        freed_at: float | None = died_at if before and host not in before[-1].holders else None
        if freed_at is not None:
            report.expiries.append(0.0)
        for v in values[len(before) :]:
            if freed_at is None:
                if host not in v.holders:
                    freed_at = v.t
                    report.expiries.append(max(0.0, freed_at - died_at))
            elif host in v.holders:
                report.add("revived", f"{host} died for good but holds a slot again at revision {v.rev}")
                break
        if freed_at is None:
            report.add("unfinished", f"{host} died for good holding a slot that was never freed (lease expiry)")
    report.dead_hosts = len(dead)
    return dead


def _released_after(host: str, boot: dict[str, Any], values: list[_Value]) -> float | None:
    """When `host` was done after `boot`: the observer time of the first later value in which it
    holds nothing — or the boot itself, if it held no slot then (rule 3 reports that)."""
    rev = boot.get("rev")
    if rev is not None:
        i = bisect.bisect_right([v.rev for v in values], rev) - 1
        if i < 0 or host not in values[i].holders:
            return float(boot["t"])
    for v in values:
        if rev is not None and v.rev <= rev:
            continue
        if rev is None and v.t < float(boot["t"]):
            continue
        if host not in v.holders:
            return v.t
    return None


def _check_complete(history: History, values: list[_Value], report: Report) -> None:
    """Rule 6: nothing the checker relies on is missing from the history."""
    ends = history.of_kind("end")
    if not ends:
        return  # already reported as incomplete
    end = ends[-1]
    key_rev = end.get("key_rev")
    seen = values[-1].rev if values else 0
    if key_rev is not None and seen < int(key_rev):
        report.add("observer-gap", f"the key was last written at revision {key_rev}; the observer saw up to {seen}")
    for what, field_name in (("rebooting", "reboots"), ("booted", "boots")):
        counted: dict[str, int] | None = end.get(field_name)
        if counted is None:
            continue
        recorded: dict[str, int] = {}
        for ev in history.of_kind("event"):
            if ev["event"] == what:
                recorded[ev["host"]] = recorded.get(ev["host"], 0) + 1
        for host in sorted(set(counted) | set(recorded)):
            if counted.get(host, 0) != recorded.get(host, 0):
                report.add(
                    "unrecorded",
                    f"{host}: its supervisor counted {counted.get(host, 0)} {field_name}, "
                    f"the history has {recorded.get(host, 0)} {what!r} event(s)",
                )
