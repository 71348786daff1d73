"""The Go locksmithd's retry schedule, as a model: the reference the handoff benchmark compares our
watch-driven wait with. It is computed from the Go source's constants, not measured here."""

from __future__ import annotations

# Go locksmithd: initialInterval = 5 s, interval = expBackoff(interval) before each sleep, cap 5 min.
GO_INITIAL_INTERVAL = 5.0
GO_MAX_INTERVAL = 300.0


def go_attempt_offsets(horizon: float) -> list[float]:
    """Offsets (s) from the Go waiter's first failed attempt at which it tries again, up to `horizon`."""
    offsets, t, interval = [0.0], 0.0, GO_INITIAL_INTERVAL
    while t <= horizon:
        interval = min(interval * 2, GO_MAX_INTERVAL)
        t += interval
        offsets.append(t)
    return offsets


def go_latency(waited: float, attempt_cost: float, offsets: list[float]) -> float:
    """Seconds from the release to the Go waiter holding, when it started waiting `waited` s before it."""
    for a in offsets:
        if a >= waited:
            return a - waited + attempt_cost
    raise ValueError(f"offsets end before {waited} s")
