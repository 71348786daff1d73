"""The VM rollout as the process demo's timeline picture: one row per VM, from what the observer saw
(consoles, the etcd watch, the update server's events), in seconds since V2 was published."""

from __future__ import annotations

from pathlib import Path

from harness.demo.picture import render
from harness.demo.tracks import HEALTHY_NEW, HEALTHY_OLD, LOCK, REBOOTING, TRIAL, UPDATING, WAITING, HostTrack, Span
from harness.vmfleet.observer import HostView, Observer


def track(observer: Observer, host: HostView, origin: float, new_version: str, now: float) -> HostTrack:
    t = HostTrack(host.name)

    def add(kind: str, start: float | None, end: float | None) -> None:
        if start is not None:
            t.spans.append(Span(kind, start - origin, (end if end is not None else now) - origin))

    boots = host.console.boots
    for i, boot in enumerate(boots):
        down = boot.down
        kind = HEALTHY_NEW if boot.version == new_version else HEALTHY_OLD
        add(kind, boot.up, down)
        if down is not None:
            add(REBOOTING, down, boots[i + 1].up if i + 1 < len(boots) else None)
    installed = observer.installed(host)
    add(UPDATING, observer.download_started(host), installed)
    if installed is not None:
        # installed and not yet rebooting: the agent waits for a slot (or its window) until the etcd watch
        # shows it holding the lock, or until it goes down without one (strategy reboot)
        taken = [span.start for span in host.locks if span.start >= installed]
        downs = [b.down for b in boots if b.up is not None and b.up <= installed]
        ends = taken[:1] + [d for d in downs[-1:] if d is not None]
        add(WAITING, installed, min(ends) if ends else None)
    for boot in boots:
        if boot.version != new_version or boot.up is None:
            continue
        # booted the new version under the lock: on trial until the gate lets the lock go (or the host
        # goes down again, a rollback)
        held = [span for span in host.locks if span.start <= boot.up and (span.end is None or span.end > boot.up)]
        if held:
            ends = [e for e in (held[0].end, boot.down) if e is not None]
            add(TRIAL, boot.up, min(ends) if ends else None)
    for span in host.locks:
        add(LOCK, span.start, span.end)
    return t


def picture(observer: Observer, summary: dict[str, object], path: Path) -> Path:
    published = float(str(summary["published"]))
    now = float(str(summary["finished"]))
    version = str(summary["new_version"])
    tracks = [track(observer, h, published, version, now) for h in observer.hosts]
    for t in tracks:
        for span in t.spans:  # before the publication: shown from 0
            span.start = max(span.start, 0.0)
    if summary.get("broken_update"):
        ended = f"the rollout stopped at {summary['stopped_at']} (rolled back, lock kept)"
    else:
        ended = f"every host on V2 after {summary['makespan_seconds']} s"
    title = (
        f"{summary['vms']} VMs, max {summary['max']}: V2 published at 0, {ended}; "
        f"most holders at once (etcd watch): {summary['max_holders_seen']}"
    )
    return render(tracks, now - published, path, title, xlabel="seconds since V2 was published")
