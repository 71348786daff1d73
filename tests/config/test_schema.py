"""The schema is the one declaration of every setting: the README table, the examples, the flags,
the agent's defaults and `check()` all follow it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from locksmith.agent.main import build_parser
from locksmith.agent.settings import AgentSettings, agent_settings
from locksmith.settings import check
from locksmith.settings.config import ConfigError, load_config
from locksmith.settings.doc import BEGIN, END, settings_table
from locksmith.settings.envfile import parse_env
from locksmith.settings.flags import add_config_arguments, flags_from_args
from locksmith.settings.schema import known_keys

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(BEGIN), readme.index(END) + len(END) + 1
    assert readme[start:end] == settings_table(), "run: python -m locksmith.settings.doc and paste it into README.md"


def test_the_table_names_every_key_and_its_default() -> None:
    table = settings_table()
    for key in known_keys("locksmithd") | known_keys("locksmithctl") | known_keys("update_engine"):
        suffix = key.removeprefix("LOCKSMITHD_").removeprefix("LOCKSMITHCTL_")
        name = f"`…{suffix}`" if suffix != key else f"`{key}`"
        assert f"| {name} |" in table, key
    assert "| `…HEALTH_INTERVAL` | locksmithd | `5s` |" in table
    assert "| `…RETRY_INTERVAL` | locksmithd | `1m` | `--retry-interval` |" in table


def _example_keys(name: str) -> set[str]:
    text = "".join(line.lstrip("#") + "\n" for line in (ROOT / "examples" / name).read_text().splitlines())
    keys: set[str] = set()
    for line in text.splitlines():
        try:
            keys.update(e.key for e in parse_env(line + "\n"))
        except ValueError:
            continue  # a comment in prose, not a KEY=VALUE
    return keys


def test_every_locksmithd_key_is_in_the_example_env_file() -> None:
    missing = known_keys("locksmithd") - _example_keys("locksmithd.env")
    assert not missing


def test_example_env_file_is_valid() -> None:
    c = load_config("locksmithd", {}, {}, paths=(ROOT / "examples" / "locksmithd.env",))
    assert c.warnings == () and c.strategy == "etcd-lock"


def test_agent_settings_defaults_are_the_schemas() -> None:
    config = load_config("locksmithd", {}, {}, paths=())
    built = agent_settings(config)
    assert built == AgentSettings()
    assert (built.login_delay, built.pre_reboot_timeout, built.post_boot_timeout) == (300.0, 300.0, 300.0)
    assert (built.retry_interval, built.unavailable_backoff_max, built.reboot_grace, built.clock_check) == (
        60.0,
        60.0,
        900.0,
        30.0,
    )


def test_timing_settings_come_from_variables_flags_and_files(tmp_path: Path) -> None:
    env = {"LOCKSMITHD_RETRY_INTERVAL": "90s", "LOCKSMITHD_CLOCK_CHECK": "250ms"}
    conf = tmp_path / "update.conf"
    conf.write_text("LOCKSMITHD_REBOOT_GRACE=1h\nLOCKSMITHD_UNAVAILABLE_BACKOFF_MAX=2m\n")
    args = build_parser().parse_args(["--retry-interval", "2s"])
    c = load_config("locksmithd", flags_from_args(args, "locksmithd"), env, paths=(conf,))
    s = agent_settings(c)
    assert (s.retry_interval, s.clock_check, s.reboot_grace, s.unavailable_backoff_max) == (2.0, 0.25, 3600.0, 120.0)
    assert str(c.source_of("LOCKSMITHD_RETRY_INTERVAL")) == "the command line"
    assert str(c.source_of("LOCKSMITHD_REBOOT_GRACE")) == f"{conf} line 1"


@pytest.mark.parametrize(
    ("program", "key", "value", "problem"),
    [
        ("locksmithd", "LOCKSMITHD_RETRY_INTERVAL", "30s", None),
        ("locksmithd", "LOCKSMITHD_RETRY_INTERVAL", "30", "missing unit"),
        ("locksmithd", "LOCKSMITHD_RETRY_INTERVAL", "0s", "must be longer than 0"),
        ("locksmithd", "LOCKSMITHD_HEALTH_INTERVAL", "", None),  # empty: back to the default
        ("locksmithd", "REBOOT_STRATEGY", "etcd lock", "not a strategy name"),
        ("locksmithd", "REBOOT_WINDOW_START", "thu 04:00", None),  # cloud-config's window_start
        ("locksmithd", "LOCKSMITHD_REBOOT_WINDOW_START", "25:00", "00:00 to 23:59"),
        ("locksmithd", "LOCKSMITHD_FLEETLOCK_URL", "ftp://x", "not an http(s) URL"),  # the strategy's own
        ("locksmithd", "LOCKSMITHD_ENDPOINT", "http://a:1,file:///x", "mix backends"),
        ("locksmithd", "LOCKSMITHCTL_ENDPOINT", "http://a:1", "not a setting locksmithd reads"),
        ("locksmithctl", "LOCKSMITHCTL_ENDPOINT", "http://a:1", None),
        ("locksmithctl", "LOCKSMITHCTL_METRICS", "127.0.0.1:1", "not a setting locksmithctl reads"),
        ("locksmithd", "LOCKSMITHD_METRICS", "0.0.0.0:9100", "not a loopback address"),
        ("locksmithd", "LOCKSMITHD_ETCD_PASSWORD", " any thing ", None),
    ],
)
def test_check_one_key_value(program: str, key: str, value: str, problem: str | None) -> None:
    answer = check(program, key, value)  # type: ignore[arg-type]
    if problem is None:
        assert answer is None
    else:
        assert answer is not None and problem in answer and "\n" not in answer


def test_check_agrees_with_the_loader() -> None:
    problem = check("locksmithd", "LOCKSMITHD_LOGIN_DELAY", "-5m")
    with pytest.raises(Exception) as err:
        load_config("locksmithd", {}, {"LOCKSMITHD_LOGIN_DELAY": "-5m"}, paths=())
    assert problem is not None and str(err.value).endswith(problem)


def test_strategy_settings_get_flags_and_are_known() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, "locksmithd")
    flags = flags_from_args(parser.parse_args(["--fleetlock-url", "http://127.0.0.1:1"]), "locksmithd")
    c = load_config("locksmithd", flags, {"REBOOT_STRATEGY": "fleetlock"}, paths=())
    assert c.strategy_options == {"FLEETLOCK_URL": "http://127.0.0.1:1"}
    # a strategy's key is no typo when another strategy is configured
    assert load_config("locksmithd", {}, {"LOCKSMITHD_FLEETLOCK_URL": "http://a:1"}, paths=()).warnings == ()
    # best-effort, the default, declares LOCK_TTL (off unless set)
    assert load_config("locksmithd", {}, {}, paths=()).strategy_options == {"LOCK_TTL": None}


@pytest.mark.parametrize(("value", "expected"), [("15m", 900), ("2.5s", 3), ("0", None), ("168h", 7 * 24 * 3600)])
def test_lock_ttl_is_whole_seconds_rounded_up_and_0_is_off(value: str, expected: int | None) -> None:
    env = {"LOCKSMITHD_LOCK_TTL": value, "LOCKSMITHD_ENDPOINT": "http://127.0.0.1:2379"}
    assert load_config("locksmithd", {}, env, paths=()).strategy_options == {"LOCK_TTL": expected}


@pytest.mark.parametrize(("value", "needle"), [("1s", "between 2s and 168h"), ("200h", "between"), ("soon", "")])
def test_a_bad_lock_ttl_is_named_in_one_line(value: str, needle: str) -> None:
    env = {"LOCKSMITHD_LOCK_TTL": value, "LOCKSMITHD_ENDPOINT": "http://127.0.0.1:2379"}
    with pytest.raises(ConfigError) as err:
        load_config("locksmithd", {}, env, paths=())
    assert "LOCKSMITHD_LOCK_TTL" in str(err.value) and needle in str(err.value) and "\n" not in str(err.value)


def test_a_lock_ttl_with_the_embedded_store_is_refused_at_start(tmp_path: Path) -> None:
    env = {
        "LOCKSMITHD_LOCK_TTL": "15m",
        "LOCKSMITHD_ENDPOINT": f"file://{tmp_path}/kv.db",
        "REBOOT_STRATEGY": "etcd-lock",
    }
    with pytest.raises(ConfigError, match=r"LOCKSMITHD_LOCK_TTL needs etcd.*embedded store"):
        load_config("locksmithd", {}, env, paths=())
    assert not (tmp_path / "kv.db").exists()


def test_every_update_engine_key_is_in_the_example_update_conf(tmp_path: Path) -> None:
    from locksmith.updateengine import engineconfig

    keys = _example_keys("update.conf")
    assert {k for k in known_keys("update_engine") if not k.startswith("COREOS_RELEASE_")} <= keys
    uncommented = tmp_path / "update.conf"
    uncommented.write_text(
        "".join(
            f"{line.lstrip('#')}\n"
            for line in (ROOT / "examples" / "update.conf").read_text().splitlines()
            if line.startswith("#UPDATE_ENGINE_")
        )
    )
    config = engineconfig.load((uncommented,))
    assert config.disk == Path("/dev/vda") and config.check_interval == 45 * 60
