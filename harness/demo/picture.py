"""The timeline picture: one row per host, coloured spans (healthy, updating, waiting for the lock,
lock held, rebooting, on trial) against a time axis. matplotlib with the Agg backend: no display."""

from __future__ import annotations

from pathlib import Path

from harness.demo.tracks import HEALTHY_NEW, HEALTHY_OLD, LOCK, REBOOTING, TRIAL, UPDATING, WAITING, HostTrack

# (colour, lower edge, height) inside a row of height 1: the state of the host fills the row, the
# lock is a bar across its top so it reads at a glance which host held it when.
_STYLE: dict[str, tuple[str, float, float]] = {
    HEALTHY_OLD: ("#c7e9c0", 0.10, 0.55),
    HEALTHY_NEW: ("#31a354", 0.10, 0.55),
    TRIAL: ("#fdd0a2", 0.10, 0.55),
    UPDATING: ("#9ecae1", 0.10, 0.55),
    WAITING: ("#bdbdbd", 0.10, 0.55),
    REBOOTING: ("#de2d26", 0.10, 0.55),
    LOCK: ("#6a51a3", 0.70, 0.20),
}
# Later kinds are drawn over earlier ones.
_ORDER = (HEALTHY_OLD, HEALTHY_NEW, TRIAL, UPDATING, WAITING, REBOOTING, LOCK)


def render(
    tracks: list[HostTrack],
    end: float,
    path: Path,
    title: str,
    marks: list[tuple[float, str]] | None = None,
    xlabel: str = "seconds",
) -> Path:
    """Write the picture to `path` (PNG, or SVG if the name ends in .svg) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = len(tracks)
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.55 * rows), dpi=110)
    try:
        for row, track in enumerate(tracks):
            y = rows - 1 - row  # first host on top
            for kind in _ORDER:
                colour, low, height = _STYLE[kind]
                bars = [(s.start, s.length(end)) for s in track.of(kind) if s.length(end) > 0]
                if bars:
                    ax.broken_barh(bars, (y + low, height), facecolors=colour, edgecolor="none")
        for t, label in marks or []:
            ax.axvline(t, color="#555555", linestyle="--", linewidth=0.8)
            ax.text(t, rows + 0.02, f" {label}", fontsize=8, color="#333333", va="bottom", ha="left")
        ax.set_yticks([rows - 1 - i + 0.4 for i in range(rows)])
        ax.set_yticklabels([t.name for t in tracks])
        ax.set_ylim(0, rows + 0.35)
        ax.set_xlim(0, max(end, 1.0))
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        handles = [Patch(facecolor=_STYLE[k][0], label=k) for k in _ORDER]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.6 / max(rows, 1)),
                  ncol=len(handles), fontsize=8, frameon=False)  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        # "tight" sizes the canvas to what is drawn, the legend below the axes included.
        fig.savefig(path, bbox_inches="tight", pad_inches=0.2)
    finally:
        plt.close(fig)
    return path
