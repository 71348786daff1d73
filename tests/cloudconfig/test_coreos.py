"""The coreos section: units (networkd first), update.conf in place, the locksmithd and etcd drop-ins, oem.

Commands that would act on this machine are recorded by the test runner; `systemctl --root` and
`useradd --root` run for real (they only edit the tree).
"""

from __future__ import annotations

import os
import re
import stat
from datetime import timedelta
from pathlib import Path

from locksmith.settings.config import load_config
from locksmith.settings.envfile import parse_env

from .conftest import Cli

UNITS = """#cloud-config
coreos:
  units:
    - name: web.service
      command: start
      enable: true
      content: |
        [Service]
        ExecStart=/bin/sleep infinity
        [Install]
        WantedBy=multi-user.target
      drop_ins:
        - name: 10-mem.conf
          content: "[Service]\\nMemoryMax=1G\\n"
    - name: 10-eth0.network
      runtime: true
      content: "[Match]\\nName=eth0\\n[Network]\\nDHCP=yes\\n"
    - name: tmp.mount
      runtime: true
      content: "[Mount]\\nWhat=tmpfs\\nWhere=/tmp\\n"
      command: restart
    - name: telnet.socket
      mask: true
"""


def systemctl_calls(calls: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [c[1:] for c in calls if c[0] == "systemctl" and not any(a.startswith("--root") for a in c)]


def test_units_are_placed_as_coreos_placed_them(cli: Cli, target: Path) -> None:
    result = cli(UNITS)
    assert result.code == 0, result.out
    assert "ExecStart=/bin/sleep infinity" in (target / "etc/systemd/system/web.service").read_text()
    assert (target / "etc/systemd/system/web.service.d/10-mem.conf").read_text() == "[Service]\nMemoryMax=1G\n"
    assert (target / "run/systemd/network/10-eth0.network").read_text().startswith("[Match]\nName=eth0")
    assert (target / "run/systemd/system/tmp.mount").exists()
    assert os.readlink(target / "etc/systemd/system/telnet.socket") == "/dev/null"
    # enable: systemctl --root made the [Install] symlink in the tree
    wants = target / "etc/systemd/system/multi-user.target.wants/web.service"
    assert wants.is_symlink() and os.readlink(wants).endswith("/etc/systemd/system/web.service")


def test_networkd_restarts_before_the_other_units_commands(cli: Cli) -> None:
    result = cli(UNITS)
    assert systemctl_calls(result.runner.calls) == [
        ("daemon-reload",),
        ("restart", "systemd-networkd.service"),
        ("start", "web.service"),
        ("restart", "tmp.mount"),
    ]


def test_at_boot_unit_jobs_are_queued_not_waited_for(cli: Cli, target: Path) -> None:
    """At boot, locksmithd, update-engine and etcd are ordered after cloud-config: waiting for their job
    would wait for ourselves. Reloads and networkd (not ordered after us) are still waited for."""
    conf = "#cloud-config\ncoreos:\n  update:\n    group: beta\n    reboot_strategy: etcd-lock\n"
    result = cli(UNITS + conf.removeprefix("#cloud-config\ncoreos:\n"), at_boot=True)
    assert result.code == 0, result.out
    calls = systemctl_calls(result.runner.calls)
    assert ("--no-block", "restart", "update-engine.service") in calls
    assert ("--no-block", "start", "web.service") in calls and ("--no-block", "restart", "tmp.mount") in calls
    assert ("--no-block", "restart", "locksmithd.service") in calls
    waited = {c for c in calls if c[0] != "--no-block"}
    assert waited == {("daemon-reload",), ("restart", "systemd-networkd.service")}, calls


def test_commands_run_every_time_but_reload_and_networkd_only_on_change(cli: Cli) -> None:
    cli(UNITS)
    second = cli(UNITS)
    assert systemctl_calls(second.runner.calls) == [("start", "web.service"), ("restart", "tmp.mount")]


def test_into_a_root_tree_service_commands_are_skipped_and_said(cli: Cli) -> None:
    result = cli(UNITS, live=False)
    assert systemctl_calls(result.runner.calls) == []
    assert "coreos-cloudinit: not the running system, skipped: systemctl start web.service" in result.out


def test_mask_false_unmasks(cli: Cli, target: Path) -> None:
    cli("#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      mask: true\n")
    assert (target / "etc/systemd/system/a.service").is_symlink()
    cli("#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      mask: false\n")
    assert not (target / "etc/systemd/system/a.service").exists()


# --- coreos.update ---------------------------------------------------------------------------

UPDATE_CONF = "# my channel\nGROUP=alpha\nSERVER=https://updates.example/v1/update/\nOTHER=kept\n"


def test_update_conf_is_edited_in_place(cli: Cli, target: Path) -> None:
    conf = target / "etc/coreos/update.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(UPDATE_CONF)
    result = cli("#cloud-config\ncoreos:\n  update:\n    group: beta\n    reboot_strategy: etcd-lock\n")
    assert result.code == 0, result.out
    assert conf.read_text() == (
        "# my channel\nGROUP=beta\nSERVER=https://updates.example/v1/update/\nOTHER=kept\nREBOOT_STRATEGY=etcd-lock\n"
    )
    calls = systemctl_calls(result.runner.calls)
    assert ("restart", "update-engine.service") in calls and calls[-1] == ("restart", "locksmithd.service")
    again = cli("#cloud-config\ncoreos:\n  update:\n    group: beta\n    reboot_strategy: etcd-lock\n")
    assert systemctl_calls(again.runner.calls) == []


def test_same_group_restarts_nothing_but_a_new_strategy_restarts_locksmithd(cli: Cli, target: Path) -> None:
    conf = target / "etc/coreos/update.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(UPDATE_CONF)
    result = cli("#cloud-config\ncoreos:\n  update:\n    group: alpha\n    reboot_strategy: reboot\n")
    assert systemctl_calls(result.runner.calls) == [("daemon-reload",), ("restart", "locksmithd.service")]


def test_strategy_off_stops_and_masks_locksmithd_for_this_boot(cli: Cli, target: Path) -> None:
    result = cli("#cloud-config\ncoreos:\n  update:\n    reboot_strategy: off\n")
    assert result.code == 0, result.out
    mask = target / "run/systemd/system/locksmithd.service"
    assert os.readlink(mask) == "/dev/null"
    assert ("stop", "locksmithd.service") in systemctl_calls(result.runner.calls)
    assert "REBOOT_STRATEGY=off\n" in (target / "etc/coreos/update.conf").read_text()
    back = cli("#cloud-config\ncoreos:\n  update:\n    reboot_strategy: best-effort\n")
    assert not mask.exists() and not mask.is_symlink()
    assert systemctl_calls(back.runner.calls)[-1] == ("restart", "locksmithd.service")


def test_an_update_conf_we_cannot_read_is_left_untouched(cli: Cli, target: Path) -> None:
    conf = target / "etc/coreos/update.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text('GROUP="unterminated\n')
    result = cli("#cloud-config\nhostname: h\ncoreos:\n  update:\n    group: beta\n")
    assert result.code == 1
    assert "coreos.update:" in result.out and "left as it is" in result.out
    assert conf.read_text() == 'GROUP="unterminated\n'
    assert (target / "etc/hostname").exists()


def test_a_server_with_special_characters_reads_back(cli: Cli, target: Path) -> None:
    server = "https://u.example/v1/update/?a=1&b=$x"
    assert cli(f"#cloud-config\ncoreos:\n  update:\n    server: '{server}'\n").code == 0
    entries = parse_env((target / "etc/coreos/update.conf").read_text())
    assert [(e.key, e.value) for e in entries] == [("SERVER", server)]


# --- drop-ins ---------------------------------------------------------------------------------


def _environment(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines()[1:]:
        body = re.fullmatch(r'Environment="(.*)"', line)
        assert body is not None, line
        text = body.group(1).replace("%%", "%").replace('\\"', '"').replace("\\\\", "\\")
        key, _, value = text.partition("=")
        out[key] = value
    return out


LOCKSMITH = """#cloud-config
coreos:
  locksmith:
    endpoint: http://10.0.0.1:2379,http://10.0.0.2:2379
    group: db
    window_start: Sun 03:00
    window_length: 2h
    etcd_username: locksmith
    etcd_password: "p%ss\\"word"
"""


def test_the_locksmithd_drop_in_is_read_by_the_agent_as_configured(cli: Cli, target: Path) -> None:
    result = cli(LOCKSMITH)
    assert result.code == 0, result.out
    drop_in = target / "run/systemd/system/locksmithd.service.d/20-cloudinit.conf"
    assert drop_in.read_text().splitlines()[:2] == [
        "[Service]",
        'Environment="LOCKSMITHD_ENDPOINT=http://10.0.0.1:2379,http://10.0.0.2:2379"',
    ]
    assert stat.S_IMODE(drop_in.stat().st_mode) == 0o600  # it holds the etcd password
    env = _environment(drop_in)
    assert env["LOCKSMITHD_ETCD_PASSWORD"] == 'p%ss"word'
    config = load_config("locksmithd", flags={}, environ=env, paths=())
    assert [e.address for e in config.kv.endpoints] == ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    assert config.lock_group == "db" and config.kv.username == "locksmith"
    assert config.windows is not None and config.windows.windows[0].length == timedelta(hours=2)
    assert systemctl_calls(result.runner.calls) == [("daemon-reload",), ("try-restart", "locksmithd.service")]
    assert systemctl_calls(cli(LOCKSMITH).runner.calls) == []  # unchanged: no restart


def test_the_etcd_drop_in_uses_etcd_variable_names(cli: Cli, target: Path) -> None:
    text = (
        "#cloud-config\ncoreos:\n  etcd2:\n    name: node1\n    initial_cluster: node1=http://10.0.0.1:2380\n"
        "    initial_cluster_state: new\n    listen_client_urls: http://0.0.0.0:2379\n"
        "    advertise_client_urls: http://$private_ipv4:2379\n"
        "    heartbeat_interval: 200\n    client_cert_auth: true\n"
    )
    result = cli(text)
    assert result.code == 0, result.out
    # no metadata and no COREOS_PRIVATE_IPV4 here: said, and the text left for the admin to see
    assert "line 8: warning: $private_ipv4 has no value" in result.out
    env = _environment(target / "run/systemd/system/etcd.service.d/20-cloudinit.conf")
    assert env == {
        "ETCD_ADVERTISE_CLIENT_URLS": "http://$private_ipv4:2379",
        "ETCD_CLIENT_CERT_AUTH": "true",
        "ETCD_HEARTBEAT_INTERVAL": "200",
        "ETCD_INITIAL_CLUSTER": "node1=http://10.0.0.1:2380",
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        "ETCD_LISTEN_CLIENT_URLS": "http://0.0.0.0:2379",
        "ETCD_NAME": "node1",
    }


def test_etcd2s_ca_file_is_written_as_what_etcd_3_4_reads(cli: Cli, target: Path) -> None:
    """etcd 3.4 ignores ETCD_CA_FILE (its cluster would take any client): CoreOS configs keep their meaning."""
    text = (
        "#cloud-config\ncoreos:\n  etcd2:\n    listen_client_urls: https://0.0.0.0:2379\n"
        "    cert_file: /etc/ssl/etcd/server.pem\n    key_file: /etc/ssl/etcd/server-key.pem\n"
        "    ca_file: /etc/ssl/etcd/ca.pem\n    peer_ca_file: /etc/ssl/etcd/peer-ca.pem\n"
        "    peer_trusted_ca_file: /etc/ssl/etcd/newer.pem\n"
    )
    result = cli(text)
    assert result.code == 0, result.out  # said as information, and applied
    assert "line 7: info: coreos.etcd2.ca_file: etcd 3.4 has no ca_file: written as trusted_ca_file" in result.out
    env = _environment(target / "run/systemd/system/etcd.service.d/20-cloudinit.conf")
    assert "ETCD_CA_FILE" not in env and "ETCD_PEER_CA_FILE" not in env
    assert (env["ETCD_TRUSTED_CA_FILE"], env["ETCD_CLIENT_CERT_AUTH"]) == ("/etc/ssl/etcd/ca.pem", "true")
    # an explicit newer key wins over the old one
    assert (env["ETCD_PEER_TRUSTED_CA_FILE"], env["ETCD_PEER_CLIENT_CERT_AUTH"]) == ("/etc/ssl/etcd/newer.pem", "true")


def test_oem_release(cli: Cli, target: Path) -> None:
    text = (
        "#cloud-config\ncoreos:\n  oem:\n    id: rackspace\n    name: Rackspace Cloud Servers\n"
        "    version_id: 168.0.0\n"
    )
    assert cli(text).code == 0
    assert parse_env((target / "etc/oem-release").read_text()) == parse_env(
        'ID=rackspace\nVERSION_ID=168.0.0\nNAME="Rackspace Cloud Servers"\nHOME_URL=""\nBUG_REPORT_URL=""\n'
    )


def test_with_strategy_off_the_locksmith_drop_in_does_not_restart_the_masked_service(cli: Cli, target: Path) -> None:
    text = "#cloud-config\ncoreos:\n  update:\n    reboot_strategy: 'off'\n  locksmith:\n    group: db\n"
    result = cli(text)
    assert result.code == 0, result.out
    calls = systemctl_calls(result.runner.calls)
    assert ("try-restart", "locksmithd.service") not in calls and ("stop", "locksmithd.service") in calls
    assert (target / "run/systemd/system/locksmithd.service.d/20-cloudinit.conf").exists()
