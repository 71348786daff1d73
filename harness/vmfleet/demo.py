"""`locksmith-demo --vms N`: N virtual machines from our image roll V1 → V2 with real reboots.

The run, in order: V1 and V2 from the image cache (built on the first run); a private network namespace
with a bridge; the dev update server on the bridge; N VMs, each with its own copy-on-write disk and a
config-2 drive (hostname, SSH key, the first three hosts a TLS etcd cluster, update channel and server,
locksmithd on etcd-lock with a client certificate). Once every VM is up and etcd answers, V2 is published
and each host is asked to check (as an admin would; the engine's own schedule takes minutes). Everything
reported is measured from outside the VMs. The namespace, its bridge and every VM go at the end, also on
Ctrl-C, unless --keep.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from harness.demo.semwatch import SemaphoreWatch
from harness.devtools import pki
from harness.devtools.guest_ssh import GuestSsh, new_guest_ssh
from harness.devtools.omaha_server import DevServer
from harness.vmfleet import hostconfig, netns, releases
from harness.vmfleet.machines import launch
from harness.vmfleet.observer import HostView, Observer
from harness.vmfleet.timeline import picture
from locksmith.image.qemu import choose_accel
from locksmith.kv import KVOptions, open_store, parse_endpoints
from locksmith.lockstore import LockStore

UPDATE_PORT = 8080
UP_SECONDS = 1800.0  # every VM at its login prompt and etcd answering (TCG on two shared cores is slow)
ROLLOUT_SECONDS = 3600.0  # from publishing V2 until every host runs it and the lock is free
POLL_SECONDS = 1.0
STOPPED_WATCH_SECONDS = 120.0  # after the rollout stopped: long enough for a wrongly freed lock to be taken


@dataclass
class VmDemoOptions:
    vms: int = 3
    max: int = 1
    group: str | None = None
    out: Path = Path("demo-vms")
    memory_mib: int = 1024
    keep: bool = False
    accel: str = "auto"
    namespace_prefix: str = netns.DEFAULT_PREFIX
    broken_update: bool = False  # V2 fails its health gate: the first host rolls back and keeps the lock


class DemoFailed(RuntimeError):
    """The rollout did not end as it should; str() says what was seen."""


def run(opts: VmDemoOptions, built: releases.Releases | None = None) -> int:
    """The whole demo; 0 if the rollout went as it should. `built`: other images (tests of the set-up)."""
    if opts.vms < 1:
        raise DemoFailed("--vms: give at least 1")
    out = opts.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    built = built or releases.ensure()
    accel, why = choose_accel(opts.accel)
    print(f"VMs under {why}")
    ssh = new_guest_ssh(out, "core")
    swept = netns.sweep(opts.namespace_prefix)
    if swept:
        print(f"removed namespaces left by an earlier run: {', '.join(swept)}")
    with netns.FleetNetwork(opts.namespace_prefix) as net, netns.inside(net.name):
        print(f"network namespace {net.name}: bridge {net.bridge} {net.host_address}")
        updates = out / "updates"
        (updates / releases.CHANNEL).mkdir(parents=True)
        server_address = str(net.host_address.ip)
        with (
            (out / "update-server.log").open("w") as server_log,
            DevServer(updates, host=server_address, port=UPDATE_PORT, log=server_log) as server,
        ):
            fleet = hostconfig.plan(
                opts.vms,
                ssh_public_key=ssh.public_key,
                update_server=f"http://{server_address}:{UPDATE_PORT}/v1/update/",
                members=min(3, opts.vms),
                update_group=releases.CHANNEL,
                locksmith_group=opts.group,
                broken_version=built.v2_version if opts.broken_update else None,
            )
            files = pki.write(fleet.pki, out / "pki")
            machines = launch(net, fleet, built.image, out, accel, opts.memory_mib)
            print(f"{len(machines)} VMs started; serial consoles in {out}/<host>/serial.log", flush=True)
            observer = Observer(machines, server)
            kv = KVOptions(
                parse_endpoints(fleet.endpoints.split(",")),
                ca_file=str(files.ca),
                cert_file=str(files.client.cert),
                key_file=str(files.client.key),
            )
            guests = {h.hostname: GuestSsh(ssh.key, 22, "core", str(h.address.ip)) for h in fleet.hosts}
            summary = asyncio.run(_rollout(opts, observer, kv, guests, built, updates, out))
            picture(observer, summary, out / "timeline.png")
            print(f"timeline picture: {out / 'timeline.png'}")
            if opts.keep:
                _keep(net.name, ssh.key, fleet)
    return 0 if summary["ok"] else 1


def _keep(namespace: str, key: Path, fleet: hostconfig.Fleet) -> None:
    print("--keep: the VMs keep running until Ctrl-C. SSH into each:")
    for host in fleet.hosts:
        print(f"  {host.hostname}: ip netns exec {namespace} ssh -i {key} core@{host.address.ip}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the VMs and removing the namespace")


async def _deadline(what: str, seconds: float, check, observer: Observer) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + seconds
    while not check():
        observer.poll()
        for host in observer.hosts:
            if not host.machine.running:
                raise DemoFailed(f"{host.name}: qemu exited; see {host.machine.directory}/qemu.log")
        if time.monotonic() > end:
            raise DemoFailed(f"{what} within {seconds:.0f} s; see the serial logs")
        await asyncio.sleep(POLL_SECONDS)


async def _ssh(guest: GuestSsh, command: str, seconds: float = 300) -> str:
    done = await asyncio.to_thread(guest.run, command, seconds)
    if done.returncode != 0:
        raise DemoFailed(f"{guest.host}: {command!r} exited {done.returncode}: {done.stderr.strip()[:300]}")
    return done.stdout


async def _ssh_everywhere(guests: dict[str, GuestSsh], command: str, seconds: float = 300) -> dict[str, str]:
    """Each host's output of `command`, run on all of them at once, as an admin's parallel ssh would
    (under TCG one login takes tens of seconds)."""
    outputs = await asyncio.gather(*(_ssh(guest, command, seconds) for guest in guests.values()))
    return dict(zip(guests, outputs, strict=True))


async def _rollout(
    opts: VmDemoOptions,
    observer: Observer,
    kv: KVOptions,
    guests: dict[str, GuestSsh],
    built: releases.Releases,
    updates: Path,
    out: Path,
) -> dict[str, object]:
    started = time.time()
    await _deadline(
        "not every VM reached its login prompt",
        UP_SECONDS,
        lambda: all(h.console.state == "up" for h in observer.hosts),
        observer,
    )
    print(f"every VM at its login prompt after {time.time() - started:.0f} s")
    ids = await _ssh_everywhere(guests, "cat /etc/machine-id")
    for host in observer.hosts:
        host.machine_id = ids[host.name].strip()
    store = LockStore(open_store(kv), opts.group)
    end = time.monotonic() + UP_SECONDS
    while True:
        try:
            old, new = await store.set_max(opts.max)
            break
        except Exception as exc:  # the cluster may still be electing its first leader
            if time.monotonic() > end:
                raise DemoFailed(f"the fleet's etcd did not answer: {exc}") from None
            await asyncio.sleep(2)
    print(f"etcd: semaphore {store.key} max {old} -> {new}")
    observer.watch = SemaphoreWatch(store, observer.on_holders)
    await observer.watch.start()

    staging = updates / releases.CHANNEL / f".{built.v2_version}"
    shutil.copytree(built.v2, staging)
    staging.rename(updates / releases.CHANNEL / built.v2_version)
    published = time.time()
    print(f"published V2 {built.v2_version}; asking each host's update engine to check")
    # Right after a boot under TCG the engine may not be on the bus yet: a check asked of nobody is lost.
    # Its unit is Type=dbus, active once the name is taken; asked of systemctl, not of a Python client
    # started every two seconds (seconds of a TCG guest's CPU each).
    on_bus = "sudo timeout 600 sh -c 'until systemctl is-active -q update-engine.service; do sleep 2; done'"
    await _ssh_everywhere(guests, f"{on_bus} && sudo update_engine_client -check_for_update", 660)

    shown: dict[str, str] = {}

    def done() -> bool:
        for host in observer.hosts:
            line = observer.line(host)
            if shown.get(host.name) != line:
                shown[host.name] = line
                print(f"{time.time() - published:7.1f}s  {line}", flush=True)
        if opts.broken_update:
            return _stopped_at(observer) is not None
        updated = all(_on_new(h, built.v2_version) for h in observer.hosts)
        return updated and observer.watch is not None and not observer.watch.holders

    await _deadline("the rollout did not finish", ROLLOUT_SECONDS, done, observer)
    if opts.broken_update:
        # Stopped: the first host is back on V1 holding the lock. Nobody else may go in the meantime.
        print(f"the rollout stopped; watching {STOPPED_WATCH_SECONDS:.0f} s more that no other host reboots")
        end = time.monotonic() + STOPPED_WATCH_SECONDS
        await _deadline(
            "the watch after the stop did not end",
            STOPPED_WATCH_SECONDS + 60,
            lambda: time.monotonic() > end or not done(),
            observer,
        )
        await _show_status(guests, observer)
    finished = time.time()
    tables = await _ssh_everywhere(guests, "sudo locksmith-bootloader status")
    slots = {name: table.strip() for name, table in tables.items()}
    await observer.watch.stop()
    summary = _summary(opts, observer, slots, (started, published, finished), built.v2_version)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary)
    return summary


def _stopped_at(observer: Observer) -> HostView | None:
    """The host that tried V2, rolled back to V1 on USR-A and holds the lock alone, if there is one."""
    holders = observer.watch.holders if observer.watch is not None else ()
    for host in observer.hosts:
        boot = host.console.current
        back = boot is not None and boot.slot == "USR-A" and boot.up is not None and host.console.reboots == 2
        if back and holders == (host.machine_id,):
            return host
    return None


async def _show_status(guests: dict[str, GuestSsh], observer: Observer) -> None:
    """`locksmithctl status` as an admin would run it on another host: who holds the lock, and why."""
    stopped = _stopped_at(observer)
    other = next((h for h in observer.hosts if h is not stopped), stopped)
    assert other is not None
    tls = f"-etcd-cafile {hostconfig.CA_FILE} -etcd-certfile {hostconfig.CLIENT_CERT}"
    tls += f" -etcd-keyfile {hostconfig.CLIENT_KEY}"
    endpoints = ",".join(f"https://{h.machine.host.address.ip}:{hostconfig.CLIENT_PORT}" for h in observer.hosts[:3])
    status = await _ssh(guests[other.name], f"sudo locksmithctl -endpoint {endpoints} {tls} status --hosts")
    print(f"locksmithctl status on {other.name}:")
    print("  " + status.strip().replace("\n", "\n  "))


def _on_new(host: HostView, version: str) -> bool:
    boot = host.console.current
    return boot is not None and boot.version == version and boot.slot == "USR-B" and boot.up is not None


def _summary(
    opts: VmDemoOptions,
    observer: Observer,
    slots: dict[str, str],
    times: tuple[float, float, float],
    new_version: str,
) -> dict[str, object]:
    started, published, finished = times
    hosts = {}
    for host in observer.hosts:
        boots = host.console.boots
        booted_b = next((line for line in slots[host.name].splitlines() if line.startswith("USR-B ")), "")
        hosts[host.name] = {
            "reboots": host.console.reboots,
            "lock_holds": len(host.locks),
            "turn_seconds": [round(s.end - s.start, 1) for s in host.locks if s.end is not None],
            "boot_seconds": [round(b.up - b.started, 1) for b in boots if b.up is not None],
            "final": f"{boots[-1].version} from {boots[-1].slot}" if boots else None,
            "usr_b": booted_b,
            "marked_successful": "successful=1 (booted)" in booted_b,
        }
    downloads = [t for h in observer.hosts if (t := observer.download_started(h)) is not None]
    spans = [span for h in observer.hosts for span in h.locks if span.end is not None]
    # With max=1 the ideal rollout is the hosts' turns back to back: each one's lock from taken to given
    # back after its healthy boot. The makespan runs from the first turn's start to the last one's end.
    turns = round(sum(span.end - span.start for span in spans if span.end is not None), 1)
    makespan = round(max(s.end for s in spans if s.end is not None) - min(s.start for s in spans), 1) if spans else None
    stopped = _stopped_at(observer) if opts.broken_update else None
    if opts.broken_update:
        ok = (
            observer.max_holders <= opts.max
            and stopped is not None
            and all(h["reboots"] == 0 for name, h in hosts.items() if name != stopped.name)
        )
    else:
        ok = (
            observer.max_holders <= opts.max
            and all(h["reboots"] == 1 and h["marked_successful"] for h in hosts.values())
            and all(h["lock_holds"] == 1 for h in hosts.values())
        )
    return {
        "ok": ok,
        "broken_update": opts.broken_update,
        "stopped_at": stopped.name if stopped is not None else None,
        "vms": opts.vms,
        "new_version": new_version,
        "published": published,
        "finished": finished,
        "max": opts.max,
        "max_holders_seen": observer.max_holders,
        "seconds_to_all_up": round(published - started, 1),
        "makespan_seconds": round(finished - published, 1),
        "publish_to_first_download_seconds": round(min(downloads) - published, 1) if downloads else None,
        "first_lock_to_last_release_seconds": makespan,
        "sum_of_turns_seconds": turns,
        "makespan_to_turns_ratio": round(makespan / turns, 3) if makespan and turns else None,
        "makespan_to_turns_goal": 1.2,
        "hosts": hosts,
    }


def _print_summary(summary: dict[str, object]) -> None:
    print("\nsummary (from the etcd watch, the serial consoles and the update server's log):")
    print(f"  most holders at once: {summary['max_holders_seen']} (max {summary['max']})")
    if summary["broken_update"]:
        print(f"  V2 published -> the rollout stopped at {summary['stopped_at']} and was watched: ", end="")
        print(f"{summary['makespan_seconds']} s")
    else:
        print(f"  V2 published -> every host on V2 and the lock free: {summary['makespan_seconds']} s")
    print(f"  V2 published -> first download: {summary['publish_to_first_download_seconds']} s")
    if summary["makespan_to_turns_ratio"] is not None:
        print(
            f"  first lock -> last release: {summary['first_lock_to_last_release_seconds']} s against the hosts'"
            f" turns back to back {summary['sum_of_turns_seconds']} s: ratio {summary['makespan_to_turns_ratio']}"
            f" (goal <= {summary['makespan_to_turns_goal']})"
        )
    hosts = summary["hosts"]
    assert isinstance(hosts, dict)
    for name, h in hosts.items():
        print(
            f"  {name}: {h['reboots']} reboot(s), lock held {h['lock_holds']} time(s), now {h['final']},"
            f" boots {h['boot_seconds']} s, {h['usr_b'] or 'USR-B ?'}"
        )
    print("  result: " + ("OK" if summary["ok"] else "NOT AS EXPECTED (see above)"))
