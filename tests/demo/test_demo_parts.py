"""The demo's pure parts: spans and their overlap, a host's progress steps, the live view in a pipe,
and the timeline picture. (The agent's state comes from its coordinator file: tests/chaos/test_simhost.py.)"""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from harness.demo.hoststate import HostState
from harness.demo.picture import render
from harness.demo.tracks import LOCK, REBOOTING, HostTrack, Span, max_overlap
from harness.demo.view import LiveView, progress_bar


def test_track_opens_and_closes_spans() -> None:
    t = HostTrack("h")
    t.set(LOCK, True, 1.0)
    t.set(LOCK, True, 2.0)  # still held: no second span
    t.set(LOCK, False, 3.0)
    t.set(REBOOTING, True, 4.0)
    t.close_all(6.0)
    assert [(s.kind, s.start, s.end) for s in t.spans] == [(LOCK, 1.0, 3.0), (REBOOTING, 4.0, 6.0)]


def test_overlap_counts_a_handover_at_one_instant_as_one_holder() -> None:
    assert max_overlap([Span(LOCK, 0, 2), Span(LOCK, 2, 4)], 10) == 1
    assert max_overlap([Span(LOCK, 0, 3), Span(LOCK, 2, 4)], 10) == 2
    assert max_overlap([Span(LOCK, 0, None), Span(LOCK, 5, 6)], 10) == 2  # still open: ends at now


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 50)), max_size=30))
def test_overlap_matches_a_brute_force_count(raw: list[tuple[float, float]]) -> None:
    spans = [Span(LOCK, s, s + d) for s, d in raw if d > 0]
    # An end at t closes before a start at t opens: count spans with start <= t < end.
    instants = {s.start for s in spans}
    brute = max((sum(1 for s in spans if s.start <= t < (s.end or 0)) for t in instants), default=0)
    assert max_overlap(spans, 1000) == brute


def test_steps_never_go_back_while_a_host_reboots_into_the_update() -> None:
    h = HostState("h", "id", version="1.0.0", engine="updated-need-reboot", state="acquiring")
    assert h.steps("2.0.0") == 1
    h.state, h.engine = "rebooting", "-"
    assert h.steps("2.0.0") == 1
    h.state, h.engine, h.version, h.lock = "releasing-after-boot", "idle", "2.0.0", True
    assert h.steps("2.0.0") == 2
    h.state, h.committed, h.lock = "idle", True, False
    assert h.steps("2.0.0") == 3


def test_view_in_a_pipe_appends_only_changes() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=False)
    hosts = [HostState("host-1", "a", state="idle", version="1.0.0"), HostState("host-2", "b")]
    view.frame(hosts, "2.0.0", 1.0, 0, 1)
    first = out.getvalue()
    view.frame(hosts, "2.0.0", 1.5, 0, 1)
    assert out.getvalue() == first  # nothing changed, nothing written
    hosts[0].lock = True
    view.frame(hosts, "2.0.0", 2.0, 1, 1)
    added = out.getvalue()[len(first) :].splitlines()
    assert len(added) == 1 and added[0].startswith("[   2.0s] host-1") and "lock HELD" in added[0]
    assert "\x1b[" not in out.getvalue()


def test_progress_bar() -> None:
    assert progress_bar(0, 10, width=10) == "[..........] 0/10"
    assert progress_bar(5, 10, width=10) == "[#####.....] 5/10"
    assert progress_bar(0, 0, width=4) == "[....] 0/0"


def test_picture_is_written_as_png_and_svg(tmp_path: Path) -> None:
    t = HostTrack("host-1")
    t.set(LOCK, True, 1.0)
    t.set(REBOOTING, True, 1.5)
    t.close_all(3.0)
    png = render([t, HostTrack("host-2")], 4.0, tmp_path / "t.png", "title", [(0.5, "published")])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = render([t], 4.0, tmp_path / "t.svg", "title")
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
