"""`update_engine` for a simulated host: the real daemon, with this host's own boot id.

The daemon reads the kernel's boot id to tell a daemon restart (keep a pending need-reboot) from a
reboot (forget it). Simulated hosts share the machine's kernel, so each host's "boot" writes a new id
to a file and this wrapper points the daemon at it; everything else is `update_engine` unchanged.

    python -m harness.demo.engine_main BOOT_ID_FILE [update_engine options…]
"""

from __future__ import annotations

import sys
from pathlib import Path

from locksmith.updateengine import daemon


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m harness.demo.engine_main BOOT_ID_FILE [update_engine options]", file=sys.stderr)
        return 2
    daemon.BOOT_ID_PATH = Path(args[0])
    return daemon.main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
