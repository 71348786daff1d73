"""Private etcd processes on loopback, for tests, the demo, benchmarks and the chaos harness.

Debian's `etcd` binary (etcd-server 3.4) is started with its own data directory and free
loopback ports; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EtcdTLS:
    """Server-side TLS material. With `client_ca` set, clients must present a certificate."""

    cert_file: Path
    key_file: Path
    client_ca: Path | None = None


@dataclass
class EtcdMember:
    name: str
    data_dir: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    enable_v2: bool = False
    tls: EtcdTLS | None = None
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    initial_cluster: str = ""
    cluster_state: str = "new"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def command(self) -> list[str]:
        binary = shutil.which("etcd")
        if binary is None:
            raise RuntimeError("etcd is not installed: run scripts/bootstrap (apt-get install etcd-server)")
        cmd = [
            binary,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            self.client_url,
            "--advertise-client-urls",
            self.client_url,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            self.initial_cluster or f"{self.name}={self.peer_url}",
            "--initial-cluster-state",
            self.cluster_state,
            "--initial-cluster-token",
            "locksmith-test",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--log-level",
            "warn",
            "--logger",
            "zap",
        ]
        if self.enable_v2:
            cmd.append("--enable-v2=true")
        if self.tls:
            cmd += ["--cert-file", str(self.tls.cert_file), "--key-file", str(self.tls.key_file)]
            if self.tls.client_ca:
                cmd += ["--trusted-ca-file", str(self.tls.client_ca), "--client-cert-auth"]
        return cmd

    def start(self) -> None:
        if self.process and self.process.poll() is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_file or self.data_dir.with_suffix(".log")
        log = log_path.open("ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        # A restarted member rejoins the cluster it already belongs to.
        self.cluster_state = "existing"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if not self.process:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def pause(self) -> None:
        if self.process:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process:
            self.process.send_signal(signal.SIGCONT)

    def healthy(self) -> bool:
        try:
            # Only "is it up": verification is the client code's business, not the launcher's.
            r = httpx.get(f"{self.client_url}/health", timeout=1.0, verify=False)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and '"true"' in r.text.replace(" ", "")


class EtcdCluster:
    """One or more etcd members on loopback. Use as a context manager or call start/stop."""

    def __init__(
        self,
        base_dir: Path,
        size: int = 1,
        enable_v2: bool = False,
        tls: EtcdTLS | None = None,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.members = [
            EtcdMember(name=f"m{i}", data_dir=self.base_dir / f"m{i}", enable_v2=enable_v2, tls=tls)
            for i in range(size)
        ]
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.initial_cluster = cluster
        self._tls = tls

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for m in self.members:
            m.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0, members: list[EtcdMember] | None = None) -> None:
        deadline = time.monotonic() + timeout
        wanted = members if members is not None else [m for m in self.members if m.running()]
        while time.monotonic() < deadline:
            for m in wanted:
                if m.process is not None and m.process.poll() is not None:
                    raise RuntimeError(f"etcd member {m.name} exited with {m.process.returncode}")
            if self._tls and self._tls.client_ca:
                # The health endpoint needs a client certificate here; a TCP connect is enough.
                if all(_port_open(m.client_port) for m in wanted):
                    time.sleep(0.3)
                    return
            elif all(m.healthy() for m in wanted):
                return
            time.sleep(0.05)
        raise RuntimeError(f"etcd did not become healthy within {timeout}s (logs under {self.base_dir})")

    def leader(self) -> EtcdMember | None:
        for m in self.members:
            if not m.running():
                continue
            try:
                r = httpx.post(f"{m.client_url}/v3/maintenance/status", json={}, timeout=1.0)
                status = r.json()
            except (httpx.HTTPError, ValueError):
                continue
            leader_id = status.get("leader")
            member_id = status.get("header", {}).get("member_id")
            if leader_id and leader_id == member_id:
                return m
        return None

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
