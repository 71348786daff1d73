"""`locksmith-image`: build the OS image in CoreOS's formats, or boot one under qemu.

  build --version V [--channel GROUP] [--server URL] [--format F ...] [--out DIR] [--release-key KEY]
  run IMAGE [--user-data FILE] [--ssh-port P] [--serial-log FILE] [--accel auto|kvm|tcg]

Exit codes: 0 done, 1 the build or boot failed (one-line reason on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from locksmith.image.build import DEFAULT_SERVER, BuildOptions, build, check_formats
from locksmith.image.errors import ImageError
from locksmith.image.formats import FORMATS
from locksmith.image.qemu import VmOptions, choose_accel, qemu_command, stop
from locksmith.image.recipe import DEFAULT_CACHE

_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")
_GROUP_RE = re.compile(r"^[A-Za-z0-9._-]+$")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="locksmith-image", description="Build and boot the locksmith OS image.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the image and write the requested formats")
    b.add_argument("--version", required=True, help="the OS version (COREOS_RELEASE_VERSION), e.g. 1.0.0")
    b.add_argument("--channel", default="stable", help="the update channel (GROUP), default stable")
    b.add_argument("--server", default=DEFAULT_SERVER, help="the Omaha update server (SERVER)")
    b.add_argument(
        "--format", action="append", dest="formats", help=f"{', '.join(FORMATS)} or all (repeatable; default qemu)"
    )
    b.add_argument("--out", type=Path, help="output folder (default build/images/<version>); must be new or empty")
    b.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"root-tree cache (default {DEFAULT_CACHE})")
    b.add_argument("--root-size", type=int, default=1024, help="ROOT partition size in MiB (default 1024)")
    b.add_argument("--release-key", type=Path, help="sign a release of the USR image into OUT/release with this key")
    r = sub.add_parser("run", help="boot an image under qemu (serial console on this terminal)")
    r.add_argument("image", type=Path)
    r.add_argument("--user-data", type=Path, help="cloud-config, passed in a config-2 drive")
    r.add_argument("--ssh-port", type=int, help="forward 127.0.0.1:PORT to the guest's SSH")
    r.add_argument("--serial-log", type=Path, help="also write the serial console to this file")
    r.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    r.add_argument("--memory", type=int, default=1024, help="guest memory in MiB (default 1024)")
    return parser


def _build(args: argparse.Namespace) -> None:
    if not _VERSION_RE.fullmatch(args.version):
        raise ImageError(f"version {args.version!r} is not a version; use letters, digits, '.', '+', '_', '-'")
    if not _GROUP_RE.fullmatch(args.channel):
        raise ImageError(f"channel {args.channel!r} is not a channel name; use letters, digits, '.', '_' or '-'")
    if not args.server.startswith(("http://", "https://")):
        raise ImageError(f"server {args.server!r} is not an http(s) URL")
    formats = check_formats([f for item in (args.formats or ["qemu"]) for f in item.split(",") if f])
    out = args.out or Path("build/images") / args.version
    opts = BuildOptions(args.version, out, args.channel, args.server, formats, args.cache, args.root_size)
    opts.release_key = args.release_key
    result = build(opts)
    figures = " ".join(f"{k}={v:.1f}s" for k, v in result.timings.items())
    tree = "built" if result.rootfs_built else "cached"
    print(f"locksmith-image: built {args.version} in {out} ({figures}; root tree {tree})")
    for path in result.files:
        print(path)


def _run(args: argparse.Namespace) -> int:
    if args.ssh_port is not None and not 1024 <= args.ssh_port <= 65535:
        raise ImageError(f"--ssh-port {args.ssh_port} is not a port in 1024..65535")
    accel, why = choose_accel(args.accel)
    print(f"locksmith-image: qemu with {why}", flush=True)
    with tempfile.TemporaryDirectory(prefix="locksmith-run-") as work:
        opts = VmOptions(args.image, args.ssh_port, args.user_data, args.serial_log, args.memory, accel)
        cmd = qemu_command(opts, accel, Path(work))
        chardev = "stdio,id=con0,signal=on" + (f",logfile={args.serial_log}" if args.serial_log else "")
        proc = subprocess.Popen([*cmd, "-chardev", chardev, "-serial", "chardev:con0"])
        try:
            return proc.wait()
        finally:
            stop(proc)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            _build(args)
            return 0
        return _run(args)
    except ImageError as exc:
        print(f"locksmith-image: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("locksmith-image: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
