"""A simulated host's reboot command: ask the host's supervisor (harness.devtools.simhost) to reboot it.

Run as `python -S -I simhost_reboot.py SOCKET`: the standard library only, no site-packages, so the
"reboot" costs one bare interpreter start (~35 ms here) instead of one that imports the harness and
asyncio (~200 ms), which the rolling-reboot benchmark would otherwise count against the agent.
Exits 0 once the supervisor accepted; the agent generation it names comes from the agent's environment.
"""

from __future__ import annotations

import os
import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -S -I simhost_reboot.py SOCKET", file=sys.stderr)
        return 2
    socket_path = argv[0]
    generation = os.environ.get("LOCKSMITH_SIMHOST_AGENT", "")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(socket_path)
            s.sendall(f"reboot {generation}".strip().encode() + b"\n")
            answer = s.makefile().readline().strip()
    except OSError as exc:
        print(f"simhost reboot: cannot reach the host supervisor at {socket_path}: {exc}", file=sys.stderr)
        return 1
    if answer != "ok":
        print(f"simhost reboot: the supervisor answered {answer!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
