"""The figures of bench/contention.py from its agents' results, and the table it prints beside the goals."""

from __future__ import annotations

import argparse
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from bench._common import percentile, summary_ms

if TYPE_CHECKING:
    from bench.contention import HolderObserver

# Issue 14's goals for the two sizes it names (other sizes are printed without one).
_GOAL_SECONDS = {1000: 15.0, 250: 4.0}


def jain(values: list[float]) -> float:
    total, squares = sum(values), sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares > 0 else 1.0


def analyse(
    args: argparse.Namespace,
    agents: list[dict[str, Any]],
    errors: list[str],
    logs: Counter[str],
    observer: HolderObserver,
    t0: int,
    t_end: int,
    load_at_go: list[float],
) -> dict[str, Any]:
    waits = [w for a in agents for w in a["waits"]]
    acquisitions = len(waits)
    per_agent = [len(a["waits"]) for a in agents]
    totals = [sum(a["waits"]) for a in agents]
    acq_conflicts = sum(a["acquire_conflicts"] for a in agents)
    rel_conflicts = sum(a["release_conflicts"] for a in agents)
    mean_hold = (args.hold_min + args.hold_max) / 2
    ideal = math.ceil(args.agents * args.rounds / args.max) * mean_hold
    elapsed = (t_end - t0) / 1e9
    # A fair FIFO queue from a common start serves the i-th waiter after ceil(i / max) holds.
    fifo_p99 = math.ceil(0.99 * args.agents * args.rounds / args.max) * mean_hold
    return {
        "goals": {
            "time_to_complete_seconds": _GOAL_SECONDS.get(args.agents),
            "cas_conflicts_per_acquisition": 2,
            "p99_wait_seconds": round(1.5 * fifo_p99, 3),
            "source": "issue 14; p99 goal = 1.5 x a fair FIFO queue's p99 from a common start",
        },
        "fair_fifo_p99_wait_seconds": round(fifo_p99, 3),
        "time_to_complete_seconds": round(elapsed, 2),
        "ideal_seconds": round(ideal, 3),
        "ratio_to_ideal": round(elapsed / ideal, 1),
        "acquisitions": acquisitions,
        "acquisitions_per_second": round(acquisitions / elapsed, 1) if elapsed > 0 else None,
        "cas_conflicts_per_acquisition": round(acq_conflicts / acquisitions, 3) if acquisitions else None,
        "cas_conflicts_acquire": acq_conflicts,
        "cas_conflicts_release": rel_conflicts,
        "cas_conflicts_per_release": round(rel_conflicts / acquisitions, 3) if acquisitions else None,
        "holder_ages_conflicts": sum(a["ages_conflicts"] for a in agents),
        "holder_ages_gave_up": logs.get("holder ages not updated: too many concurrent writers", 0),
        "acquire_gave_up_contention": sum(a["acquire_unavailable"] for a in agents),
        "release_gave_up_contention": sum(a["release_unavailable"] for a in agents),
        "line_waits_per_acquisition": round(logs.get("lock.line.wait", 0) / acquisitions, 2) if acquisitions else None,
        "line_jumps": logs.get("lock.line.jump", 0),
        "watch_waits_per_acquisition": round(logs.get("lock.wait", 0) / acquisitions, 2) if acquisitions else None,
        "watch_wakeups_per_acquisition": round(logs.get("lock.wait.woken", 0) / acquisitions, 2)
        if acquisitions
        else None,
        "wait": summary_ms(waits),
        "held_acquired_to_released": summary_ms(h for a in agents for h in a["holds"]),
        "fairness": {
            "agents": args.agents,
            "agents_finished_all_rounds": sum(1 for n in per_agent if n == args.rounds),
            "acquisitions_per_agent_min": min(per_agent, default=0),
            "acquisitions_per_agent_max": max(per_agent, default=0),
            "jain_index_total_wait": round(jain(totals), 3) if totals else None,
            "jain_index_fair_fifo_reference": 0.75,
            "max_wait_over_time_to_complete": round(max(waits) / elapsed, 3) if waits and elapsed else None,
            "p99_wait_over_median_wait": round(percentile(waits, 99) / percentile(waits, 50), 2) if waits else None,
        },
        "max_holders_seen": observer.max_holders,
        "mean_holders_while_running": round(observer.mean_holders(t0, t_end), 1),
        "revisions_observed": observer.revisions,
        "acquisitions_observed": observer.acquisitions,
        "errors": errors[:20],
        "error_count": len(errors),
        "log_events": dict(logs.most_common(12)),
        "load_average_at_go": load_at_go,
    }


def print_table(r: dict[str, Any], args: argparse.Namespace) -> None:
    f, w = r["fairness"], r["wait"]
    print(
        f"\ncontention: {args.agents} agents x {args.rounds} round(s), max={args.max}, "
        f"hold {args.hold_min * 1000:g}-{args.hold_max * 1000:g} ms, etcd v3, {args.processes} processes"
    )
    goals = r["goals"]

    def goal(value: float, limit: float | None, unit: str = "") -> str:
        if limit is None:
            return ""
        return f"   goal ≤ {limit:g}{unit}: {'met' if value <= limit else 'NOT met'}"

    rows = [
        (
            "time to complete",
            f"{r['time_to_complete_seconds']:.1f} s"
            + goal(r["time_to_complete_seconds"], goals["time_to_complete_seconds"], " s"),
        ),
        ("  ideal (ceil(n/max) x mean hold)", f"{r['ideal_seconds']:.2f} s  (ratio {r['ratio_to_ideal']:g})"),
        ("acquisitions", f"{r['acquisitions']}  ({r['acquisitions_per_second']}/s)"),
        (
            "CAS conflicts per acquisition",
            f"{r['cas_conflicts_per_acquisition']}"
            + goal(r["cas_conflicts_per_acquisition"], goals["cas_conflicts_per_acquisition"]),
        ),
        ("  per release", f"{r['cas_conflicts_per_release']}"),
        ("watch wake-ups per acquisition", f"{r['watch_wakeups_per_acquisition']}"),
        ("wait median / p99 / max", " / ".join(f"{w[k] / 1000:.2f}" for k in ("median_ms", "p99_ms", "max_ms")) + " s"),
        (
            "  p99 wait",
            f"{w['p99_ms'] / 1000:.2f} s (fair FIFO {r['fair_fifo_p99_wait_seconds']:.2f} s)"
            + goal(w["p99_ms"] / 1000, goals["p99_wait_seconds"], " s"),
        ),
        ("line waits per acquisition / jumps", f"{r['line_waits_per_acquisition']} / {r['line_jumps']}"),
        ("agents finished all rounds", f"{f['agents_finished_all_rounds']}/{f['agents']}"),
        ("acquisitions per agent min/max", f"{f['acquisitions_per_agent_min']}/{f['acquisitions_per_agent_max']}"),
        ("Jain's index, total wait", f"{f['jain_index_total_wait']}  (fair FIFO from a common start: 0.75)"),
        ("max holders seen (observer)", f"{r['max_holders_seen']}  (max {args.max})"),
        ("mean holders while running", f"{r['mean_holders_while_running']}"),
        ("holder-ages record gave up", f"{r['holder_ages_gave_up']}  (best effort; lock unaffected)"),
        (
            "acquire / release backed off",
            f"{r['acquire_gave_up_contention']} / {r['release_gave_up_contention']}  (store unavailable or 100 CAS"
            " conflicts; retried with back-off as the agent does; reasons in the JSON)",
        ),
        ("slot held, acquired → released", f"median {r['held_acquired_to_released']['median_ms'] / 1000:.2f} s"),
        ("errors", f"{r['error_count']}"),
        (
            "CPU: etcd / agent processes",
            f"{r['cpu_seconds']['etcd_during_run']} s / {r['cpu_seconds']['workers_total_including_setup']} s",
        ),
    ]
    for label, value in rows:
        print(f"{label:<36}{value}")
