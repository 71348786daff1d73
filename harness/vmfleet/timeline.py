"""The VM rollout as the process demo's timeline picture: one row per VM, from what the observer saw
(consoles, the etcd watch, the update server's events), in seconds since V2 was published."""

from __future__ import annotations

from pathlib import Path

from harness.demo.picture import render
from harness.demo.tracks import HEALTHY_NEW, HEALTHY_OLD, LOCK, REBOOTING, UPDATING, HostTrack, Span
from harness.vmfleet.observer import HostView, Observer


def track(observer: Observer, host: HostView, origin: float, new_version: str, now: float) -> HostTrack:
    t = HostTrack(host.name)

    def add(kind: str, start: float | None, end: float | None) -> None:
        if start is not None:
            t.spans.append(Span(kind, start - origin, (end if end is not None else now) - origin))

    boots = host.console.boots
    for i, boot in enumerate(boots):
        down = boot.shutdown or boot.reset
        kind = HEALTHY_NEW if boot.version == new_version else HEALTHY_OLD
        add(kind, boot.up, down)
        if down is not None:
            add(REBOOTING, down, boots[i + 1].up if i + 1 < len(boots) else None)
    add(UPDATING, observer.download_started(host), observer.installed(host))
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
    title = (
        f"{summary['vms']} VMs, max {summary['max']}: V2 published at 0, every host on V2 after "
        f"{summary['makespan_seconds']} s; most holders at once (etcd watch): {summary['max_holders_seen']}"
    )
    return render(tracks, now - published, path, title, xlabel="seconds since V2 was published")
