"""locksmith-demo: a local fleet rolling an update, all real parts.

N simulated hosts, each with its own private dbus-daemon, the real `update_engine` on its own GPT
disk image, and the real `locksmithd`; an update server publishes a new release; the hosts download
it into their inactive USR slot, take a slot of the reboot semaphore (embedded KV store by default),
"reboot" (services stopped, the bootloader picks the new slot, services started again), pass the
health gate (which commits the slot) and give the lock back. A live view shows every host; at the end
a summary and a timeline picture.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.demo.fleet import Fleet, FleetOptions
from harness.demo.picture import render
from harness.demo.tracks import LOCK, REBOOTING, max_overlap
from harness.demo.view import LiveView
from locksmith.cli import fail
from locksmith.kv import parse_endpoint
from locksmith.logging import configure_logging
from locksmith.settings.duration import parse_duration
from locksmith.settings.windows import parse_windows

SAMPLE_INTERVAL = 0.25
STRATEGIES = ("etcd-lock", "best-effort", "reboot", "fleetlock")


@dataclass
class Outcome:
    updated: int
    makespan: float | None
    reboots: int
    max_holders: int
    max_rebooting: int
    halted: str | None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="locksmith-demo",
        description=__doc__.splitlines()[0],
        epilog="Everything runs on this machine and listens on loopback only; Ctrl-C stops it all.",
    )
    p.add_argument("--hosts", type=int, default=5, help="simulated hosts (default 5)")
    p.add_argument("--max", type=int, default=1, help="hosts that may reboot at once: the semaphore's max (default 1)")
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="etcd-lock",
        help="REBOOT_STRATEGY of every host (default etcd-lock; `reboot` shows what happens without a lock)",
    )
    p.add_argument(
        "--kv",
        default="",
        metavar="URL",
        help="KV store: default the embedded store in the output folder; `etcd` starts a private etcd on "
        "loopback; or an endpoint URL (http://127.0.0.1:2379 for etcd v3, etcd2+http://… for v2)",
    )
    p.add_argument("--group", default=None, help="lock group (LOCKSMITHD_GROUP); default the global semaphore")
    p.add_argument(
        "--window",
        default=None,
        metavar="WINDOWS",
        help='reboot windows, e.g. "Mon-Fri 02:00 1h; Sat 04:00 3h" (LOCKSMITHD_REBOOT_WINDOWS); hosts wait for it',
    )
    p.add_argument("--reboot-time", type=float, default=1.0, help="seconds a simulated reboot takes (default 1)")
    p.add_argument(
        "--broken-update",
        action="store_true",
        help="the new release fails the health gate: the first host keeps its lock and the rollout stops there",
    )
    p.add_argument(
        "--health-timeout",
        default=None,
        metavar="DURATION",
        help="how long a rebooted host's health gate may take before it keeps its lock (default 2m; 20s with "
        "--broken-update)",
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, help="give up on the rollout after this many seconds (default 300)"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default ./demo-out, ./demo-vms with --vms)")
    vms = p.add_argument_group("virtual machines (root, qemu; see harness/vmfleet)")
    vms.add_argument(
        "--vms", type=int, default=0, metavar="N", help="N VMs booted from our image instead of simulated hosts"
    )
    vms.add_argument("--memory", type=int, default=1024, metavar="MIB", help="memory per VM (default 1024)")
    vms.add_argument("--keep", action="store_true", help="leave the VMs running at the end and print how to SSH in")
    vms.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto", help="default: KVM if a probe boots")
    args = p.parse_args(argv)
    args.out = args.out or Path("demo-vms" if args.vms else "demo-out")
    if args.vms:
        if not 1 <= args.vms <= 20:
            p.error(f"--vms {args.vms}: give 1 to 20")
        if args.memory < 512:
            p.error(f"--memory {args.memory}: give at least 512 (MiB)")
        unsupported = [f"--{n.replace('_', '-')}" for n in ("window", "kv") if getattr(args, n)]
        if args.strategy != "etcd-lock":
            unsupported.append("--strategy")
        if unsupported:
            p.error(f"{', '.join(unsupported)}: not available with --vms yet")
    if not 1 <= args.hosts <= 50:
        p.error(f"--hosts {args.hosts}: give 1 to 50")
    if args.max < 1:
        p.error(f"--max {args.max}: give at least 1")
    if args.reboot_time < 0 or args.timeout <= 0:
        p.error("--reboot-time must be >= 0 and --timeout > 0")
    if args.kv and args.kv != "etcd":
        try:
            parse_endpoint(args.kv)
        except ValueError as exc:
            p.error(f"--kv {args.kv!r}: {exc}")
    if args.health_timeout is not None:
        try:
            parse_duration(args.health_timeout)
        except ValueError as exc:
            p.error(f"--health-timeout {args.health_timeout!r}: {exc}")
    if args.window:
        try:
            parse_windows(args.window)
        except ValueError as exc:
            p.error(f"--window {args.window!r}: {exc}")
    return args


async def run(args: argparse.Namespace, view: LiveView) -> Outcome:
    options = FleetOptions(
        hosts=args.hosts,
        max=args.max,
        strategy=args.strategy,
        kv=args.kv,
        group=args.group,
        windows=args.window,
        reboot_time=args.reboot_time,
        health_timeout=args.health_timeout or ("20s" if args.broken_update else "2m"),
        broken_version=args.broken_update,
    )
    fleet = Fleet(options, args.out.resolve())
    t0 = time.monotonic()

    def elapsed() -> float:
        return time.monotonic() - t0

    def say(text: str) -> None:
        view.message(text, elapsed())

    published_at: float | None = None
    finished_at: float | None = None
    halted: str | None = None
    try:
        await fleet.prepare(say)
        say(f"booting {args.hosts} hosts (dbus-daemon, update_engine, locksmithd each)…")
        await fleet.boot()
        say(f"all hosts up on v{fleet.old_version}; strategy {args.strategy}, max {args.max}")
        # From here on the clock (view, timeline, makespan) counts from the fleet being up.
        t0 = time.monotonic()
        deadline = t0 + args.timeout
        await fleet.sample(elapsed())
        published_at = elapsed()
        fleet.publish()
        say(f"published v{fleet.new_version} on channel stable")
        last_halt_check = 0.0
        while time.monotonic() < deadline:
            await fleet.sample(elapsed())
            holders = len(fleet.semwatch.holders) if fleet.semwatch else 0
            view.frame(fleet.states, fleet.new_version, elapsed(), holders, args.max)
            if fleet.done():
                finished_at = elapsed()
                await asyncio.sleep(1.0)  # a moment of the finished fleet on the timeline
                await fleet.sample(elapsed())
                break
            if elapsed() - last_halt_check > 1.0:
                last_halt_check = elapsed()
                halted = fleet.halted()
                if halted:
                    break
            await asyncio.sleep(SAMPLE_INTERVAL)
        view.close()
        if finished_at is None and halted is None:
            say(f"timed out after {args.timeout:.0f}s; host logs are in {fleet.workdir / 'hosts'}")
    finally:
        end = elapsed()
        for track in fleet.tracks:
            track.close_all(end)
        freed = await fleet.stop()
        if freed:
            say(f"demo over: gave back the lock slot(s) of {', '.join(freed)} so the store is left clean")

    # The picture and the summary are built from what was sampled, not from the agents' claims.
    spans_lock = [s for t in fleet.tracks for s in t.of(LOCK)]
    spans_reboot = [s for t in fleet.tracks for s in t.of(REBOOTING) if s.start >= (published_at or 0)]
    picture = args.out.resolve() / "timeline.png"
    marks = [(published_at, f"v{fleet.new_version} published")] if published_at is not None else []
    title = (
        f"locksmith-demo: {args.hosts} hosts, strategy {args.strategy}, max {args.max}, "
        f"v{fleet.old_version} -> v{fleet.new_version}"
    )
    render(fleet.tracks, end, picture, title, marks, xlabel="seconds since every host was up")
    updated = sum(1 for s in fleet.states if s.version == fleet.new_version and s.committed)
    outcome = Outcome(
        updated=updated,
        makespan=None if finished_at is None or published_at is None else finished_at - published_at,
        reboots=len(spans_reboot),
        max_holders=max(fleet.semwatch.max_holders if fleet.semwatch else 0, max_overlap(spans_lock, end)),
        max_rebooting=max_overlap(spans_reboot, end),
        halted=halted,
    )
    print_summary(args, fleet, outcome, picture)
    return outcome


def print_summary(args: argparse.Namespace, fleet: Fleet, o: Outcome, picture: Path) -> None:
    lines = [
        "",
        "summary",
        f"  hosts updated          {o.updated}/{args.hosts} (v{fleet.old_version} -> v{fleet.new_version}, committed)",
        "  makespan               "
        + (f"{o.makespan:.1f}s from publish to the last lock released" if o.makespan is not None else "- (unfinished)"),
        f"  reboots                {o.reboots}",
        f"  most lock holders      {o.max_holders} (max {args.max})"
        + ("" if args.strategy != "reboot" else "  — strategy reboot takes no lock"),
        f"  most rebooting at once {o.max_rebooting}",
        f"  timeline picture       {picture}",
        f"  host logs              {fleet.workdir / 'hosts'}",
    ]
    if o.halted:
        lines.append(f"  halted                 {o.halted}")
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.vms:
        return _main_vms(args)
    # Library warnings only: the live view owns the terminal, and each host's programs log to files.
    configure_logging(level="warning")
    view = LiveView()
    try:
        outcome = asyncio.run(run(args, view))
    except KeyboardInterrupt:
        print("\nlocksmith-demo: interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # a set-up failure: one line, the logs say more
        return fail("locksmith-demo", f"{type(exc).__name__}: {exc}", 1)
    if succeeded(args, outcome):
        return 0
    return 1


def _main_vms(args: argparse.Namespace) -> int:
    from harness.vmfleet.demo import VmDemoOptions
    from harness.vmfleet.demo import run as run_vms

    configure_logging(level="warning")
    opts = VmDemoOptions(args.vms, args.max, args.group, args.out, args.memory, args.keep, args.accel)
    opts.broken_update = args.broken_update
    try:
        return run_vms(opts)
    except KeyboardInterrupt:
        print("\nlocksmith-demo: interrupted; the VMs, the namespace and its bridge were removed", file=sys.stderr)
        return 130
    except Exception as exc:  # one line; the serial logs in the output folder say more
        return fail("locksmith-demo", f"{type(exc).__name__}: {exc}", 1)


def succeeded(args: argparse.Namespace, o: Outcome) -> bool:
    """The demo succeeded: every host updated and the lock was never over-subscribed (or, with a
    broken update, the rollout stopped at the first host)."""
    if args.strategy != "reboot" and o.max_holders > args.max:
        return False
    if args.broken_update:
        return o.halted is not None and o.updated == 0
    return o.updated == args.hosts


if __name__ == "__main__":
    sys.exit(main())
