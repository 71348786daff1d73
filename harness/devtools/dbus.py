"""A private dbus-daemon with its own config file, for tests and the demo.

Code under test is pointed at it through DBUS_SYSTEM_BUS_ADDRESS, so it talks to a real bus
without touching the machine's system bus.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

# System-bus semantics (type "system", EXTERNAL auth) but permissive: any peer may own names
# and send anything. Tests that need our real policy pass extra <includedir>s. It listens on an abstract
# socket: no file, so no path-length limit under deep test folders (a path socket is at most 107 bytes),
# and no file permissions, so a peer running as another user (unprivileged.py) can reach it too.
_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:abstract={abstract}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"/>
  </policy>
{includes}
</busconfig>
"""


class PrivateBus:
    """A dbus-daemon on an abstract unix socket, its config and log in `directory`."""

    def __init__(self, directory: Path, include_dirs: list[Path] | None = None) -> None:
        self.directory = Path(directory)
        self.config_path = self.directory / "bus.conf"
        self.include_dirs = include_dirs or []
        self.abstract_name = f"locksmith-test-bus-{secrets.token_hex(8)}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"unix:abstract={self.abstract_name}"

    def start(self, timeout: float = 10.0) -> PrivateBus:
        binary = shutil.which("dbus-daemon")
        if binary is None:
            raise RuntimeError("dbus-daemon is not installed: run scripts/bootstrap (apt-get install dbus-daemon)")
        self.directory.mkdir(parents=True, exist_ok=True)
        includes = "\n".join(f"  <includedir>{d}</includedir>" for d in self.include_dirs)
        self.config_path.write_text(_CONFIG.format(abstract=self.abstract_name, includes=includes))
        log = (self.directory / "dbus.log").open("ab")
        self.process = subprocess.Popen(
            [binary, f"--config-file={self.config_path}", "--nofork", "--nopidfile"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        # dbus-daemon binds a moment before it listens: ready means a connect works.
        while not accepts_connections("\0" + self.abstract_name):
            if self.process.poll() is not None:
                raise RuntimeError(f"dbus-daemon exited early; see {self.directory / 'dbus.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError("dbus-daemon did not create its socket in time")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def env(self) -> dict[str, str]:
        """The environment a child process needs to use this bus as its system bus."""
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}

    def __enter__(self) -> PrivateBus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def accepts_connections(path: Path | str) -> bool:
    """A bus (or any unix stream server) listens at `path` (a leading NUL names an abstract socket)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:  # not there yet, or bound but not yet listening
            return False
    return True
