"""Every setting of locksmithd, locksmithctl and update_engine, each declared once (see
`locksmith.settings.schema` for what a declaration holds and who reads the list)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from locksmith.settings import values as v
from locksmith.settings.schema import PROGRAMS, Program, Setting

_BOTH: frozenset[Program] = frozenset({"locksmithd", "locksmithctl"})
_AGENT: frozenset[Program] = frozenset({"locksmithd"})
_ALL: frozenset[Program] = frozenset(PROGRAMS)
_ENGINE: frozenset[Program] = frozenset({"update_engine"})
# protocol.omaha.COREOS_APPID, spelt out: importing omaha pulls in the XML parser and cryptography (the
# release signature), ~8 MiB RSS in every program that reads settings, locksmithd included; a test keeps
# the two equal.
COREOS_APPID = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"


def _shared(name: str, help: str, parse: Callable[[str], Any] = v.parse_text, **kw: Any) -> Setting:
    return Setting(name, help, parse, programs=_BOTH, **kw)


SETTINGS: tuple[Setting, ...] = (
    # --- read by both programs, unprefixed (update.conf's own keys) ---
    _shared(
        "REBOOT_STRATEGY",
        "`reboot`, `etcd-lock`, `best-effort`, `off`, `fleetlock`, or a plugin's name",
        parse=v.parse_strategy,
        default="best-effort",
        prefixed=False,
        flag="--reboot-strategy",
        metavar="NAME",
        flag_programs=_AGENT,
    ),
    Setting(
        "GROUP",
        "the update *channel* (the lock group is `…GROUP`)",
        v.parse_channel,
        default="stable",
        programs=_ALL,
        prefixed=False,
        flag="--group",
        metavar="CHANNEL",
        flag_programs=_ENGINE,
    ),
    Setting(
        "SERVER",
        "the Omaha update server URL",
        v.parse_http_url,
        default="https://public.update.core-os.net/v1/update/",
        programs=_ALL,
        prefixed=False,
        flag="--server",
        metavar="URL",
        flag_programs=_ENGINE,
    ),
    # --- read by both programs with their prefix ---
    _shared(
        "ENDPOINT",
        "KV store endpoints, comma-separated; a value **replaces** the default list",
        parse=v.parse_endpoint_list,
        default="http://127.0.0.1:2379",
        flag="--endpoint",
        metavar="URL",
        repeat=True,
    ),
    _shared(
        "ETCD_CAFILE",
        "CA bundle to verify etcd's certificate",
        v.parse_readable_file,
        flag="--etcd-cafile",
        metavar="PATH",
    ),
    _shared(
        "ETCD_CERTFILE",
        "client certificate for etcd (needs the key)",
        v.parse_readable_file,
        flag="--etcd-certfile",
        metavar="PATH",
    ),
    _shared(
        "ETCD_KEYFILE",
        "client key for etcd (needs the certificate)",
        v.parse_readable_file,
        flag="--etcd-keyfile",
        metavar="PATH",
    ),
    _shared("ETCD_USERNAME", "etcd user name", flag="--etcd-username", metavar="NAME"),
    _shared(
        "ETCD_PASSWORD",
        "etcd password (prefer the variable: flags show in ps)",
        flag="--etcd-password",
        metavar="PASSWORD",
        secret=True,
        strip=False,
    ),
    _shared("GROUP", "lock group (unset: the global semaphore)", v.parse_lock_group, flag="--group", metavar="GROUP"),
    _shared(
        "MACHINE_ID_FILE",
        "file holding this host's id",
        v.parse_abs_path,
        default="/etc/machine-id",
        flag="--machine-id-file",
        metavar="PATH",
    ),
    _shared(
        "REBOOT_WINDOW_START",
        "window start: `HH:MM`, `Thu 04:00`, `Mon-Fri 02:00`; both or neither with the length",
        v.parse_window_start,
        flag="--reboot-window-start",
        metavar="START",
    ),
    _shared(
        "REBOOT_WINDOW_LENGTH",
        "window length, a Go duration (`1h30m`)",
        v.positive_duration,
        flag="--reboot-window-length",
        metavar="DURATION",
    ),
    _shared("REBOOT_WINDOW_START", "older name of `…REBOOT_WINDOW_START`", v.parse_window_start, prefixed=False),
    _shared("REBOOT_WINDOW_LENGTH", "older name of `…REBOOT_WINDOW_LENGTH`", v.positive_duration, prefixed=False),
    _shared(
        "REBOOT_WINDOWS",
        "several windows: `Mon-Fri 02:00 1h; Sat,Sun 04:00 3h` (not with the pair)",
        v.parse_windows_text,
        flag="--reboot-windows",
        metavar="WINDOWS",
    ),
    _shared(
        "TIMEZONE",
        "IANA time zone of the windows",
        v.parse_timezone,
        flag="--timezone",
        metavar="ZONE",
        doc_default="the machine's",
    ),
    # --- locksmithd only ---
    Setting(
        "REBOOT_COMMAND",
        "run this to reboot instead of asking logind (`Reboot(false)` over D-Bus)",
        v.parse_command,
        flag="--reboot-command",
        metavar="CMD",
    ),
    Setting(
        "HEALTH_COMMAND",
        "after boot, release the lock only once this exits 0",
        v.parse_command,
        flag="--health-command",
        metavar="CMD",
    ),
    Setting(
        "HEALTH_UNIT",
        "after boot, release the lock only once this unit is active",
        v.parse_unit,
        flag="--health-unit",
        metavar="UNIT",
    ),
    Setting(
        "HEALTH_URL",
        "after boot, release the lock only once this URL answers 2xx",
        v.parse_http_url,
        flag="--health-url",
        metavar="URL",
    ),
    Setting(
        "HEALTH_TIMEOUT",
        "give up the health gate (and keep the lock) after this",
        v.positive_duration,
        default="10m",
        flag="--health-timeout",
        metavar="DURATION",
    ),
    Setting(
        "HEALTH_INTERVAL",
        "time between health checks",
        v.positive_duration,
        default="5s",
        flag="--health-interval",
        metavar="DURATION",
    ),
    Setting(
        "HEALTHY_TARGET",
        "after boot, once the gate passes: start this unit (the image's marks the slot successful)",
        v.parse_unit,
        flag="--healthy-target",
        metavar="UNIT",
    ),
    Setting(
        "PRE_REBOOT_HOOK", "run before rebooting (e.g. drain)", v.parse_command, flag="--pre-reboot-hook", metavar="CMD"
    ),
    Setting(
        "POST_BOOT_HOOK",
        "run after boot before releasing (e.g. uncordon)",
        v.parse_command,
        flag="--post-boot-hook",
        metavar="CMD",
    ),
    Setting(
        "HOOK_TIMEOUT",
        "time limit of each hook",
        v.positive_duration,
        default="5m",
        flag="--hook-timeout",
        metavar="DURATION",
    ),
    Setting(
        "LOGIN_CHECK", "warn logged-in users and delay the reboot", v.parse_bool, default="true", flag="--login-check"
    ),
    Setting(
        "LOGIN_DELAY",
        "delay when users are logged in",
        v.non_negative_duration,
        default="5m",
        flag="--login-delay",
        metavar="DURATION",
    ),
    Setting(
        "METRICS",
        "Prometheus endpoint: `127.0.0.1:PORT` or `unix:/PATH`, or `off`",
        v.parse_metrics,
        default="off",
        flag="--metrics",
        metavar="ADDR",
    ),
    Setting(
        "COORDINATOR_FILE",
        "where to write the coordinator state",
        v.parse_abs_path,
        default="/run/update-engine/coordinator.conf",
        flag="--coordinator-file",
        metavar="PATH",
    ),
    Setting(
        "LOG_FORMAT", "`logfmt` or `json`", v.parse_log_format, default="logfmt", flag="--log-format", metavar="FORMAT"
    ),
    Setting(
        "LOG_LEVEL",
        "`debug`, `info`, `warning`, `error`",
        v.parse_log_level,
        default="info",
        flag="--log-level",
        metavar="LEVEL",
    ),
    Setting(
        "RETRY_INTERVAL",
        "wait before retrying after a failed pre-reboot hook, a refused reboot or a strategy error",
        v.seconds(v.positive_duration),
        default="1m",
        flag="--retry-interval",
        metavar="DURATION",
    ),
    Setting(
        "UNAVAILABLE_BACKOFF_MAX",
        "longest back-off while the KV store or FleetLock server is unreachable",
        v.seconds(v.positive_duration),
        default="1m",
        flag="--unavailable-backoff-max",
        metavar="DURATION",
    ),
    Setting(
        "REBOOT_GRACE",
        "after the reboot was accepted, give the lock back and retry if not stopped within this",
        v.seconds(v.positive_duration),
        default="15m",
        flag="--reboot-grace",
        metavar="DURATION",
    ),
    Setting(
        "CLOCK_CHECK",
        "re-read the wall clock at least this often while waiting for a window",
        v.seconds(v.positive_duration),
        default="30s",
        flag="--clock-check",
        metavar="DURATION",
    ),
)


def _engine(name: str, help: str, parse: Callable[[str], Any], default: str | None, **kw: Any) -> Setting:
    return Setting(name, help, parse, default, programs=_ENGINE, prefixed=False, **kw)


_DURATION = v.duration_or_seconds
SETTINGS += (
    # --- the update engine: release facts (from /usr/share/coreos/release) and our keys ---
    _engine("COREOS_RELEASE_VERSION", "the running OS version", v.parse_version, "0.0.0"),
    _engine("COREOS_RELEASE_BOARD", "the board reported to the update server", v.parse_channel, "amd64-usr"),
    _engine("COREOS_RELEASE_APPID", "the Omaha app id", v.parse_text, COREOS_APPID),
    _engine(
        "UPDATE_ENGINE_DISK",
        "block device or GPT image file holding the USR slots",
        v.parse_abs_path,
        None,
        flag="--disk",
        metavar="PATH",
    ),
    _engine(
        "UPDATE_ENGINE_BOOT_RECORD",
        "boot record of an image file",
        v.parse_abs_path,
        None,
        flag="--boot-record",
        metavar="PATH",
        doc_default="`<disk>.boot`",
    ),
    _engine(
        "UPDATE_ENGINE_PUBLIC_KEY",
        "PEM public key that signs payloads",
        v.parse_abs_path,
        "/usr/share/update_engine/update-payload-key.pub.pem",
        flag="--public-key",
        metavar="PATH",
    ),
    _engine(
        "UPDATE_ENGINE_STATE_DIR",
        "state directory",
        v.parse_abs_path,
        "/var/lib/update_engine",
        flag="--state-dir",
        metavar="PATH",
    ),
    _engine(
        "UPDATE_ENGINE_INITIAL_DELAY",
        "wait before the first check (Go duration; plain seconds accepted)",
        _DURATION,
        "7m",
        flag="--initial-delay",
        metavar="DURATION",
    ),
    _engine(
        "UPDATE_ENGINE_CHECK_INTERVAL",
        "time between periodic checks",
        _DURATION,
        "45m",
        flag="--check-interval",
        metavar="DURATION",
    ),
    _engine(
        "UPDATE_ENGINE_CHECK_FUZZ",
        "random spread of the interval",
        _DURATION,
        "10m",
        flag="--check-fuzz",
        metavar="DURATION",
    ),
    _engine("UPDATE_ENGINE_MAX_BACKOFF", "longest back-off after failed checks", _DURATION, "4h"),
    _engine(
        "UPDATE_ENGINE_ALLOW_DOWNGRADE",
        "install a release offered that is not newer than the booted one (a deliberate rollback; logged)",
        v.parse_bool,
        "false",
        flag="--allow-downgrade",
    ),
)
