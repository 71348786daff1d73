"""The goals of issue 14 ("Scale and footprint") and the Go figures it quotes as anchors.

The Go figures were measured outside this project (Go locksmithd 0.6.2 side by side, as the issue says);
a benchmark writes them into its result file as a labelled reference, never as its own measurement,
and prints each of its own figures beside its goal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REFERENCE_KEY = "reference_go_locksmithd_0_6_2"
REFERENCE_SOURCE = "measured outside this project, side by side, as quoted in issue 14"


@dataclass(frozen=True)
class Goal:
    key: str
    label: str
    unit: str
    limit: float  # the figure must be at most this
    go: float | None = None  # the Go anchor, when the issue quotes one
    go_note: str = ""

    def verdict(self, measured: float) -> dict[str, Any]:
        return {
            "measured": round(measured, 3),
            "goal_at_most": self.limit,
            "unit": self.unit,
            "met": measured <= self.limit,
        }

    def row(self, measured: float) -> str:
        met = "met" if measured <= self.limit else "NOT met"
        go = f"   (Go 0.6.2: {self.go:g} {self.unit}{self.go_note}, not measured here)" if self.go is not None else ""
        return f"{self.label:<44}{measured:>9.2f} {self.unit:<4} goal ≤ {self.limit:g} {self.unit}: {met}{go}"


IDLE_RSS = Goal("idle_rss_mib", "idle RSS (etcd-lock, bus + etcd connected)", "MiB", 24.0, go=8.6)
IDLE_ANON = Goal("idle_anonymous_mib", "idle anonymous memory (same agent)", "MiB", 12.0)
SIGNAL_TO_REBOOT = Goal(
    "signal_to_logind_reboot_median_ms", "NEED_REBOOT signal → logind Reboot, median", "ms", 2.0, go=1.7
)
MAKESPAN_RATIO = Goal(
    "makespan_ratio_to_ideal",
    "rolling reboot makespan / ideal",
    "x",
    1.15,
    go=11.0,
    go_note=": at least 20 x (1 s + 10 s back-off) = 220 s",
)


def reference(**figures: Any) -> dict[str, Any]:
    """The Go anchor as the result files carry it: labelled, with where it comes from."""
    return {REFERENCE_KEY: {**figures, "source": REFERENCE_SOURCE}}
