"""What happened to each host, as spans of time: the data behind the live view, the summary and the
timeline picture. Times are seconds since the fleet started (monotonic clock)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Span kinds, in the order the picture stacks and the legend lists them.
UPDATING = "updating"  # the engine downloads/installs the new release
WAITING = "waiting"  # the agent wants to reboot and waits for its window or a lock slot
LOCK = "lock held"  # seen in the semaphore's holders in the KV store (not the agent's word)
REBOOTING = "rebooting"  # services down: from the reboot command until the next boot's agent runs
TRIAL = "on trial"  # booted a new slot that is not yet marked successful
HEALTHY_OLD = "healthy (old)"
HEALTHY_NEW = "healthy (new)"
KINDS = (HEALTHY_OLD, HEALTHY_NEW, TRIAL, UPDATING, WAITING, LOCK, REBOOTING)


@dataclass
class Span:
    kind: str
    start: float
    end: float | None = None  # None: still going

    def length(self, now: float) -> float:
        return (self.end if self.end is not None else now) - self.start


@dataclass
class HostTrack:
    name: str
    spans: list[Span] = field(default_factory=list)
    _open: dict[str, Span] = field(default_factory=dict)

    def set(self, kind: str, active: bool, now: float) -> None:
        """Open a span of `kind` when it becomes active, close it when it stops."""
        span = self._open.get(kind)
        if active and span is None:
            self._open[kind] = Span(kind, now)
            self.spans.append(self._open[kind])
        elif not active and span is not None:
            span.end = now
            del self._open[kind]

    def active(self, kind: str) -> bool:
        return kind in self._open

    def close_all(self, now: float) -> None:
        for kind in list(self._open):
            self.set(kind, False, now)

    def of(self, kind: str) -> list[Span]:
        return [s for s in self.spans if s.kind == kind]


def max_overlap(spans: list[Span], now: float) -> int:
    """The most spans open at one instant (an end at t closes before a start at t opens)."""
    points = sorted(
        [(s.start, 1) for s in spans] + [(s.end if s.end is not None else now, -1) for s in spans],
        key=lambda p: (p[0], p[1]),
    )
    best = current = 0
    for _, step in points:
        current += step
        best = max(best, current)
    return best
