"""load_config: precedence, sources, validation, secrets, and the shared command-line options."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.agent.health import HealthGate
from locksmith.agent.settings import AgentSettings, agent_settings
from locksmith.kv.base import BACKEND_EMBEDDED, BACKEND_ETCD2, BACKEND_ETCD3
from locksmith.settings.config import (
    COREOS_PATHS,
    DEFAULT_ENDPOINT,
    FLATCAR_PATHS,
    Config,
    ConfigError,
    MetricsAddress,
    Source,
    add_config_arguments,
    flags_from_args,
    known_keys,
    load_config,
)

from .conftest import error_of

# --- Defaults and precedence ------------------------------------------------------------------


def test_defaults(conf: Callable[..., Config]) -> None:
    c = conf()
    assert c.strategy == "best-effort"
    assert c.update_group == "stable"
    assert c.server == "https://public.update.core-os.net/v1/update/"  # one default, the update engine's
    assert [e.original for e in c.kv.endpoints] == [DEFAULT_ENDPOINT]
    assert c.kv.backend == BACKEND_ETCD3
    assert c.lock_group is None
    assert c.windows is None
    assert c.machine_id_file == Path("/etc/machine-id")
    a = agent_settings(c)
    assert a.reboot_command is None
    assert a.health is None  # no check configured: no gate
    assert HealthGate().timeout == 600 and HealthGate().interval == 5  # the schema's 10m and 5s
    assert a.pre_reboot_timeout == a.post_boot_timeout == 300
    assert a.login_check is True
    assert a.login_delay == 300
    assert (a.retry_interval, a.unavailable_backoff_max, a.reboot_grace, a.clock_check) == (60, 60, 900, 30)
    assert a.metrics is None
    assert a.coordinator_file == Path("/run/update-engine/coordinator.conf")
    assert (a.log_format, a.log_level) == ("logfmt", "info")
    assert a == AgentSettings()  # the section's own defaults are the schema's
    assert c.warnings == ()
    assert c.source_of("REBOOT_STRATEGY") == Source("default")


def test_the_cli_has_no_agent_section(conf: Callable[..., Config]) -> None:
    c = conf("locksmithctl")
    assert not [key for key in c.values if key.startswith("LOCKSMITHD_")]
    with pytest.raises(ValueError, match="no agent section"):
        agent_settings(c)


def test_precedence_defaults_usr_etc_env_flags(conf: Callable[..., Config]) -> None:
    usr = "REBOOT_STRATEGY=reboot\nLOCKSMITHD_GROUP=usr\nLOCKSMITHD_LOG_LEVEL=debug\nGROUP=beta\n"
    etc = "# admin\nREBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_GROUP=etc\n"
    c = conf(usr_text=usr, etc_text=etc)
    assert (c.strategy, c.lock_group, c.update_group) == ("etcd-lock", "etc", "beta")
    assert agent_settings(c).log_level == "debug"
    assert c.source_of("REBOOT_STRATEGY") == Source("file", str(conf.etc), 2)  # type: ignore[attr-defined]
    assert str(c.source_of("GROUP")) == f"{conf.usr} line 4"  # type: ignore[attr-defined]

    c = conf(env={"REBOOT_STRATEGY": "off", "LOCKSMITHD_GROUP": "env"})
    assert (c.strategy, c.lock_group) == ("off", "env")
    assert str(c.source_of("LOCKSMITHD_GROUP")) == "the environment"

    c = conf(env={"REBOOT_STRATEGY": "off"}, flags={"REBOOT_STRATEGY": "Reboot", "LOCKSMITHD_GROUP": "flag"})
    assert (c.strategy, c.lock_group) == ("reboot", "flag")  # case normalised
    assert str(c.source_of("REBOOT_STRATEGY")) == "the command line"
    assert any(line.startswith('REBOOT_STRATEGY="Reboot" (from the command line)') for line in c.describe())


def test_environment_copy_of_a_file_value_keeps_the_file_as_source(conf: Callable[..., Config]) -> None:
    # Under systemd, EnvironmentFile= puts the file's values into our environment too.
    c = conf(etc_text="LOCKSMITHD_GROUP=prod\n", env={"LOCKSMITHD_GROUP": "prod"})
    assert c.source_of("LOCKSMITHD_GROUP").kind == "file"


def test_empty_value_means_default(conf: Callable[..., Config]) -> None:
    c = conf(usr_text="LOCKSMITHD_ENDPOINT=http://10.0.0.1:2379\n", etc_text="LOCKSMITHD_ENDPOINT=\n")
    assert [e.original for e in c.kv.endpoints] == [DEFAULT_ENDPOINT]


def test_endpoints_replace_the_default(conf: Callable[..., Config]) -> None:
    c = conf(env={"LOCKSMITHD_ENDPOINT": "http://10.0.0.1:2379, http://10.0.0.2:2379,"})
    assert [e.address for e in c.kv.endpoints] == ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    c = conf(flags={"LOCKSMITHD_ENDPOINT": ["etcd2+http://10.0.0.3:2379", "etcd2+http://10.0.0.4:2379"]})
    assert [e.address for e in c.kv.endpoints] == ["http://10.0.0.3:2379", "http://10.0.0.4:2379"]
    assert c.kv.backend == BACKEND_ETCD2
    c = conf(etc_text="LOCKSMITHD_ENDPOINT=file:///var/lib/locksmith/kv.db\n")
    assert c.kv.backend == BACKEND_EMBEDDED
    assert c.kv.endpoints[0].address == "/var/lib/locksmith/kv.db"


def test_roles_read_their_own_prefix(conf: Callable[..., Config]) -> None:
    env = {"LOCKSMITHD_GROUP": "agents", "LOCKSMITHCTL_GROUP": "admins", "LOCKSMITHD_METRICS": "0.0.0.0:1"}
    assert conf("locksmithctl", env=env).lock_group == "admins"  # and the agent's bad METRICS is not the CLI's business
    assert conf("locksmithctl", env=env).warnings == ()
    assert "LOCKSMITHCTL_GROUP" not in known_keys("locksmithd")


# --- Reboot windows ---------------------------------------------------------------------------


def test_window_pair_with_old_name_fallback(conf: Callable[..., Config]) -> None:
    c = conf(usr_text="REBOOT_WINDOW_START=thu 04:00\nREBOOT_WINDOW_LENGTH=1h30m\n", env={"LOCKSMITHD_TIMEZONE": "UTC"})
    assert c.windows is not None
    (w,) = c.windows.windows
    assert (w.days, w.start, w.length) == (frozenset({3}), time(4), timedelta(hours=1, minutes=30))
    assert c.windows.is_open(datetime(2024, 1, 11, 5, 0, tzinfo=UTC))
    # The prefixed name wins key by key, from any source.
    c = conf(
        usr_text="REBOOT_WINDOW_START=Thu 04:00\nREBOOT_WINDOW_LENGTH=1h\n",
        env={"LOCKSMITHD_REBOOT_WINDOW_START": "05:00"},
    )
    assert c.windows is not None
    assert (c.windows.windows[0].days, c.windows.windows[0].start) == (None, time(5))
    assert c.windows.windows[0].length == timedelta(hours=1)  # still from the old name in usr
    assert c.source_of("REBOOT_WINDOW_LENGTH").kind == "file"


def test_several_windows_and_time_zone(conf: Callable[..., Config]) -> None:
    c = conf(
        etc_text='LOCKSMITHD_REBOOT_WINDOWS="Mon-Fri 02:00 1h; Sat,Sun 04:00 3h"\nLOCKSMITHD_TIMEZONE=Europe/Berlin\n'
    )
    assert c.windows is not None
    assert c.timezone == ZoneInfo("Europe/Berlin") == c.windows.tz
    assert len(c.windows.windows) == 2
    assert c.windows.is_open(datetime(2024, 1, 13, 4, 30, tzinfo=ZoneInfo("Europe/Berlin")))  # Saturday


def test_window_errors_name_key_value_source_and_fix(conf: Callable[..., Config]) -> None:
    message = error_of(lambda: conf(etc_text='\n\n\nLOCKSMITHD_REBOOT_WINDOW_START="Thu 04:00"\n'))
    assert message == (
        'LOCKSMITHD_REBOOT_WINDOW_START="Thu 04:00" is set but LOCKSMITHD_REBOOT_WINDOW_LENGTH is not '
        f"(from {conf.etc} line 4): set both or neither"  # type: ignore[attr-defined]
    )
    message = error_of(lambda: conf(env={"REBOOT_WINDOW_LENGTH": "1h"}))
    assert message.startswith('REBOOT_WINDOW_LENGTH="1h" is set but REBOOT_WINDOW_START is not (from the environment)')
    message = error_of(lambda: conf(env={"LOCKSMITHD_REBOOT_WINDOW_START": "04:00", "REBOOT_WINDOW_LENGTH": "25h"}))
    assert message.startswith('REBOOT_WINDOW_LENGTH="25h" (from the environment): ')
    assert "under 24h for a daily window" in message
    message = error_of(
        lambda: conf(env={"LOCKSMITHD_REBOOT_WINDOWS": "04:00 1h", "LOCKSMITHD_REBOOT_WINDOW_START": "Thu 04:00"})
    )
    assert "are both set: use one way to give windows" in message


# --- Files --------------------------------------------------------------------------------------


def test_flatcar_paths(tmp_path: Path) -> None:
    assert [str(p) for p in FLATCAR_PATHS] == ["/usr/share/flatcar/update.conf", "/etc/flatcar/update.conf"]
    assert [str(p) for p in COREOS_PATHS] == ["/usr/share/coreos/update.conf", "/etc/coreos/update.conf"]
    rooted = [tmp_path / str(p).lstrip("/") for p in FLATCAR_PATHS]
    texts = ["GROUP=stable\nREBOOT_STRATEGY=reboot\n", "REBOOT_STRATEGY=etcd-lock\n"]
    for path, text in zip(rooted, texts, strict=True):
        path.parent.mkdir(parents=True)
        path.write_text(text)
    c = load_config("locksmithd", {}, {}, paths=rooted)
    assert c.strategy == "etcd-lock"
    assert c.source_of("REBOOT_STRATEGY").path == str(rooted[1])
    assert c.paths == tuple(rooted)


def test_missing_files_are_fine_bad_ones_are_not(conf: Callable[..., Config], tmp_path: Path) -> None:
    assert load_config("locksmithd", {}, {}, paths=(tmp_path / "absent", tmp_path / "also-absent")).strategy
    message = error_of(lambda: conf(etc_text="REBOOT_STRATEGY=off\nthis is not valid\n"))
    assert message.startswith(f"{conf.etc} line 2: 'this is not valid' is not KEY=VALUE")  # type: ignore[attr-defined]
    (tmp_path / "dir.conf").mkdir()
    message = error_of(lambda: load_config("locksmithd", {}, {}, paths=(tmp_path / "dir.conf",)))
    assert "is a directory" in message


def test_unknown_locksmith_keys_warn(conf: Callable[..., Config]) -> None:
    c = conf(etc_text="LOCKSMITHD_FUTURE_THING=1\nUNRELATED_UPDATE_ENGINE_KEY=1\nLOCKSMITHCTL_ENDPOINT=http://a:1\n")
    assert len(c.warnings) == 1
    assert c.warnings[0].startswith(f"LOCKSMITHD_FUTURE_THING (from {conf.etc} line 1) is not a setting")  # type: ignore[attr-defined]
    message = error_of(lambda: conf(flags={"LOCKSMITHD_NOPE": "1"}))
    assert "unknown configuration key 'LOCKSMITHD_NOPE'" in message


def test_example_file_is_valid_and_all_commented_settings_are_known() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "update.conf"
    c = load_config("locksmithd", {}, {}, paths=(example,))
    assert c.warnings == ()
    uncommented = "".join(
        line.lstrip("#") + "\n" for line in example.read_text().splitlines() if line.startswith("#LOCKSMITH")
    )
    from locksmith.settings.envfile import parse_env

    keys = {e.key for e in parse_env(uncommented)}
    assert keys <= known_keys("locksmithd") | known_keys("locksmithctl")
    assert {f"LOCKSMITHD_{k}" for k in ("ENDPOINT", "REBOOT_WINDOWS", "HEALTH_URL", "METRICS")} <= keys


# --- Agent options ------------------------------------------------------------------------------


def test_agent_options(conf: Callable[..., Config]) -> None:
    c = conf(
        env={
            "REBOOT_STRATEGY": "fleetlock",
            "LOCKSMITHD_FLEETLOCK_URL": "http://127.0.0.1:8080",
            "LOCKSMITHD_REBOOT_COMMAND": "/bin/sh -c 'echo rebooting > /tmp/x'",
            "LOCKSMITHD_HEALTH_COMMAND": "true",
            "LOCKSMITHD_HEALTH_UNIT": "kubelet",
            "LOCKSMITHD_HEALTH_URL": "http://127.0.0.1:10248/healthz",
            "LOCKSMITHD_HEALTH_TIMEOUT": "1m",
            "LOCKSMITHD_HEALTH_INTERVAL": "250ms",
            "LOCKSMITHD_PRE_REBOOT_HOOK": "drain now",
            "LOCKSMITHD_POST_BOOT_HOOK": "uncordon",
            "LOCKSMITHD_HOOK_TIMEOUT": "30s",
            "LOCKSMITHD_LOGIN_CHECK": "no",
            "LOCKSMITHD_LOGIN_DELAY": "0",
            "LOCKSMITHD_METRICS": "localhost:9721",
            "LOCKSMITHD_COORDINATOR_FILE": "/tmp/coordinator.conf",
            "LOCKSMITHD_LOG_FORMAT": "JSON",
            "LOCKSMITHD_LOG_LEVEL": "warn",
        }
    )
    a = agent_settings(c)
    assert a.reboot_command == ("/bin/sh", "-c", "echo rebooting > /tmp/x")
    assert a.health is not None
    assert a.health.command == ("true",) and a.health.unit == "kubelet.service" and a.health.enabled
    assert (a.health.timeout, a.health.interval) == (60, 0.25)
    assert a.pre_reboot_hook == ("drain", "now") and a.post_boot_hook == ("uncordon",)
    assert a.pre_reboot_timeout == a.post_boot_timeout == 30
    assert (a.login_check, a.login_delay) == (False, 0)
    assert a.metrics == MetricsAddress(host="127.0.0.1", port=9721)
    assert str(a.metrics) == "127.0.0.1:9721"
    assert a.coordinator_file == Path("/tmp/coordinator.conf")
    assert (a.log_format, a.log_level) == ("json", "warning")

    def metrics(value: str) -> MetricsAddress | None:
        return agent_settings(conf(env={"LOCKSMITHD_METRICS": value})).metrics

    assert (address := metrics("unix:/run/l.sock")) is not None and address.kind == "unix"
    assert metrics("[::1]:9") == MetricsAddress(host="::1", port=9)
    assert metrics("off") is None


@pytest.mark.parametrize(
    ("env", "start", "fragment"),
    [
        ({"REBOOT_STRATEGY": "etcd lock"}, 'REBOOT_STRATEGY="etcd lock"', "not a strategy name"),
        ({"REBOOT_STRATEGY": "fleetlock"}, 'REBOOT_STRATEGY="fleetlock"', "needs LOCKSMITHD_FLEETLOCK_URL"),
        ({"SERVER": "ftp://x"}, 'SERVER="ftp://x"', "not an http(s) URL"),
        ({"LOCKSMITHD_ENDPOINT": "10.0.0.1:2379"}, 'LOCKSMITHD_ENDPOINT="10.0.0.1:2379"', "no supported scheme"),
        ({"LOCKSMITHD_ENDPOINT": "http://a:1,file:///x"}, "LOCKSMITHD_ENDPOINT=", "mix backends"),
        ({"LOCKSMITHD_ENDPOINT": "http://a:99999"}, "LOCKSMITHD_ENDPOINT=", "bad port"),
        ({"LOCKSMITHD_TIMEZONE": "Mars/Base"}, 'LOCKSMITHD_TIMEZONE="Mars/Base"', "unknown time zone"),
        ({"LOCKSMITHD_REBOOT_WINDOWS": "Mon-Fri 02:00"}, "LOCKSMITHD_REBOOT_WINDOWS=", "needs a start and a length"),
        ({"LOCKSMITHD_GROUP": "a\tb"}, 'LOCKSMITHD_GROUP="a\\tb"', "control characters"),
        ({"LOCKSMITHD_MACHINE_ID_FILE": "machine-id"}, "LOCKSMITHD_MACHINE_ID_FILE=", "absolute path"),
        ({"LOCKSMITHD_REBOOT_COMMAND": "echo 'x"}, "LOCKSMITHD_REBOOT_COMMAND=", "fix the quoting"),
        ({"LOCKSMITHD_HEALTH_UNIT": "a b"}, "LOCKSMITHD_HEALTH_UNIT=", "not a systemd unit name"),
        ({"LOCKSMITHD_HEALTH_URL": "localhost:80"}, "LOCKSMITHD_HEALTH_URL=", "not an http(s) URL"),
        ({"LOCKSMITHD_HEALTH_TIMEOUT": "0"}, 'LOCKSMITHD_HEALTH_TIMEOUT="0"', "must be longer than 0"),
        ({"LOCKSMITHD_HEALTH_INTERVAL": "5"}, "LOCKSMITHD_HEALTH_INTERVAL=", "missing unit"),
        ({"LOCKSMITHD_HOOK_TIMEOUT": "-1s"}, "LOCKSMITHD_HOOK_TIMEOUT=", "must be longer than 0"),
        ({"LOCKSMITHD_LOGIN_CHECK": "maybe"}, "LOCKSMITHD_LOGIN_CHECK=", "not a boolean"),
        ({"LOCKSMITHD_LOGIN_DELAY": "-5m"}, "LOCKSMITHD_LOGIN_DELAY=", "must not be negative"),
        ({"LOCKSMITHD_FLEETLOCK_URL": "fleetlock"}, "LOCKSMITHD_FLEETLOCK_URL=", "not an http(s) URL"),
        ({"LOCKSMITHD_METRICS": "0.0.0.0:9100"}, "LOCKSMITHD_METRICS=", "not a loopback address"),
        ({"LOCKSMITHD_METRICS": "9100"}, "LOCKSMITHD_METRICS=", "use 127.0.0.1:PORT"),
        ({"LOCKSMITHD_METRICS": "unix:rel.sock"}, "LOCKSMITHD_METRICS=", "must be absolute"),
        ({"LOCKSMITHD_COORDINATOR_FILE": "x"}, "LOCKSMITHD_COORDINATOR_FILE=", "absolute path"),
        ({"LOCKSMITHD_LOG_FORMAT": "xml"}, "LOCKSMITHD_LOG_FORMAT=", "use logfmt or json"),
        ({"LOCKSMITHD_LOG_LEVEL": "loud"}, "LOCKSMITHD_LOG_LEVEL=", "use debug, info, warning or error"),
    ],
)
def test_every_invalid_value_is_one_clear_line(
    conf: Callable[..., Config], env: dict[str, str], start: str, fragment: str
) -> None:
    message = error_of(lambda: conf(env=env))
    assert message.startswith(start)
    assert "(from the environment)" in message
    assert fragment in message


def test_config_is_immutable(conf: Callable[..., Config]) -> None:
    c = conf()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.strategy = "reboot"  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.sources["X"] = Source("default")  # type: ignore[index]


# --- Command-line options -----------------------------------------------------------------------


def test_shared_argparse_options(conf: Callable[..., Config]) -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, "locksmithctl")
    argv = ["--endpoint", "http://a:1", "--endpoint", "http://b:2,http://c:3", "--group", "prod/db"]
    args = parser.parse_args([*argv, "--etcd-username", "u"])
    flags = flags_from_args(args, "locksmithctl")
    assert flags == {
        "LOCKSMITHCTL_ENDPOINT": ["http://a:1", "http://b:2,http://c:3"],
        "LOCKSMITHCTL_GROUP": "prod/db",
        "LOCKSMITHCTL_ETCD_USERNAME": "u",
    }
    c = conf("locksmithctl", env={"LOCKSMITHCTL_GROUP": "env"}, flags=flags)
    assert [e.address for e in c.kv.endpoints] == ["http://a:1", "http://b:2", "http://c:3"]
    assert c.lock_group == "prod/db"
    with pytest.raises(SystemExit):
        parser.parse_args(["--reboot-command", "x"])  # agent-only

    agent = argparse.ArgumentParser()
    add_config_arguments(agent, "locksmithd")
    help_text = agent.format_help()
    for key in known_keys("locksmithd") - {"GROUP", "SERVER", "REBOOT_WINDOW_START", "REBOOT_WINDOW_LENGTH"}:
        assert f"[{key}]" in help_text, key
    flags = flags_from_args(agent.parse_args(["--no-login-check", "--reboot-strategy", "off"]), "locksmithd")
    c = conf(flags=flags)
    assert agent_settings(c).login_check is False and c.strategy == "off"


# --- Fuzz ---------------------------------------------------------------------------------------

_AGENT_KEYS = sorted(known_keys("locksmithd"))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(_AGENT_KEYS), st.text(max_size=30), max_size=6))
def test_fuzz_any_values_give_a_config_or_one_config_error(env: dict[str, str]) -> None:
    try:
        c = load_config("locksmithd", {}, env, paths=())
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message
        assert " (from " in message or message.startswith("config file")
    else:
        assert agent_settings(c).coordinator_file.is_absolute()
