"""--validate: one `line N: level: message` per finding, with the line of the offending node; exit 1."""

from __future__ import annotations

import pytest

from locksmith.cloudconfig.substitute import substitute
from locksmith.cloudconfig.validate import validate_text

from .conftest import Cli


def findings(text: str) -> list[str]:
    return [str(f) for f in validate_text(text)[1]]


def test_a_clean_document_reports_nothing_and_exits_0(cli: Cli) -> None:
    result = cli("#cloud-config\nhostname: web1\ncoreos:\n  update:\n    reboot_strategy: etcd-lock\n", "--validate")
    assert (result.code, result.out) == (0, "")


def test_a_yaml_syntax_error_names_its_line(cli: Cli) -> None:
    result = cli("#cloud-config\nhostname: web1\nusers:\n  - name: a\n   bad: [\n", "--validate")
    assert result.code == 1
    assert result.out.startswith("line 5: error: invalid YAML:")
    assert len(result.out.splitlines()) == 1


def test_unknown_keys_are_warnings_at_their_line() -> None:
    assert findings("#cloud-config\nhostname: a\nfrobnicate: 1\ncoreos:\n  update:\n    speed: fast\n") == [
        "line 3: warning: unrecognized key 'frobnicate'",
        "line 6: warning: unrecognized key 'coreos.update.speed'",
    ]


def test_wrong_types_say_what_was_wanted() -> None:
    text = (
        "#cloud-config\nusers:\n  - bob\nwrite_files: {}\nhostname: [a]\n"
        "coreos:\n  units:\n    - name: a.service\n      enable: maybe\n"
    )
    assert findings(text) == [
        "line 3: error: incorrect type for users[0] (want struct)",
        "line 4: error: incorrect type for write_files (want list of structs)",
        "line 5: error: incorrect type for hostname (want string)",
        "line 9: error: incorrect type for coreos.units[0].enable (want bool)",
    ]


def test_invalid_values_are_errors() -> None:
    text = (
        "#cloud-config\nmanage_etc_hosts: yes-please\nwrite_files:\n  - path: etc/x\n    encoding: rot13\n"
        "  - path: /usr/lib/x\n    permissions: '0999'\ncoreos:\n  units:\n    - name: web.service\n"
        "      command: launch\n  etcd2:\n    proxy: maybe\n"
    )
    assert findings(text) == [
        "line 2: error: manage_etc_hosts: invalid value 'yes-please': use one of localhost",
        "line 4: error: write_files[0].path: invalid value 'etc/x': use an absolute path",
        "line 5: error: write_files[0].encoding: invalid value 'rot13': use one of b64, base64, gz, gzip, "
        "gz+base64, gzip+base64, gz+b64, gzip+b64",
        "line 6: error: write_files[1].path: invalid value '/usr/lib/x': /usr is read-only (the OS image); "
        "write under /etc or /var",
        "line 7: error: write_files[1].permissions: invalid value '0999': use octal like 0644",
        "line 11: error: coreos.units[0].command: invalid value 'launch': use one of start, stop, restart, "
        "reload, try-restart, reload-or-restart, reload-or-try-restart",
        "line 13: error: coreos.etcd2.proxy: invalid value 'maybe': use one of on, off, readonly",
    ]


def test_misplaced_sections_say_where_they_belong() -> None:
    text = "#cloud-config\nunits: []\nreboot_strategy: off\ncoreos:\n  write_files: []\n  hostname: a\n"
    assert findings(text) == [
        "line 2: warning: units is not read here: it belongs in coreos",
        "line 3: warning: reboot_strategy is not read here: it belongs in coreos.update",
        "line 5: warning: coreos.write_files is not read here: it belongs in the top level",
        "line 6: warning: coreos.hostname is not read here: it belongs in the top level",
    ]


def test_missing_required_keys_and_duplicates() -> None:
    text = "#cloud-config\nwrite_files:\n  - content: x\nhostname: a\nhostname: b\n"
    assert findings(text) == [
        "line 3: error: missing required key write_files[0].path",
        "line 5: warning: duplicate key hostname: the last one counts",
    ]


def test_a_required_key_set_to_null_is_missing_and_its_entry_is_not_applied() -> None:
    # Found by the property test: `name: null` passed validation as an empty user, and applying it broke.
    document, found = validate_text(
        "#cloud-config\nusers:\n  - name:\n  - name: core\ncoreos:\n  units:\n    - name: ~\n"
    )
    assert [str(f) for f in found] == [
        "line 3: error: missing required key users[0].name",
        "line 7: error: missing required key coreos.units[0].name",
    ]
    assert document == {"users": [{"name": "core"}], "coreos": {"units": []}}


def test_known_but_unsupported_sections_are_info() -> None:
    assert findings("#cloud-config\ncoreos:\n  fleet:\n    metadata: a=b\n") == [
        "line 3: info: coreos.fleet is ignored: this image has no such service"
    ]


def test_info_alone_still_exits_1_under_validate(cli: Cli) -> None:
    result = cli("#cloud-config\ncoreos:\n  flannel: {}\n", "--validate")
    assert result.code == 1
    assert result.out == "line 3: info: coreos.flannel is ignored: this image has no such service\n"


def test_agent_values_are_judged_by_the_agents_own_parser() -> None:
    text = (
        "#cloud-config\ncoreos:\n  locksmith:\n    window_start: Thu 04:00\n    window_length: 8d\n"
        "    endpoint: ftp://etcd\n    group: ok\n"
    )
    out = findings(text)
    assert len(out) == 2
    assert out[0].startswith('line 5: error: coreos.locksmith.window_length: REBOOT_WINDOW_LENGTH="8d"')
    assert out[1].startswith('line 6: error: coreos.locksmith.endpoint: LOCKSMITHD_ENDPOINT="ftp://etcd"')


def test_a_window_start_without_length_is_rejected_as_the_agent_would() -> None:
    out = findings("#cloud-config\ncoreos:\n  locksmith:\n    window_start: '04:00'\n")
    assert out == [
        'line 4: error: coreos.locksmith.window_start: REBOOT_WINDOW_START="04:00" is set but REBOOT_WINDOW_LENGTH '
        "is not: set both or neither"
    ]


def test_engine_values_are_judged_by_the_engines_parser() -> None:
    out = findings("#cloud-config\ncoreos:\n  update:\n    group: 'not a channel'\n    server: gopher://x\n")
    assert out[0].startswith('line 4: error: coreos.update.group: GROUP="not a channel": not a channel name')
    assert out[1].startswith('line 5: error: coreos.update.server: SERVER="gopher://x": not an http(s) URL')


def test_the_etcd_password_never_appears_in_a_finding() -> None:
    out = findings("#cloud-config\ncoreos:\n  locksmith:\n    etcd_password: hunter2-secret\n")
    assert len(out) == 1 and "hunter2-secret" not in out[0] and '"***"' in out[0]


@pytest.mark.parametrize(
    ("yaml_text", "key", "expected"),
    [
        ("coreos:\n  update:\n    reboot_strategy: off\n", "update", {"reboot_strategy": "off"}),
        ("coreos:\n  update:\n    reboot_strategy: no\n", "update", {"reboot_strategy": "no"}),
        (
            "write_files:\n  - path: /etc/a\n    permissions: 0744\n",
            "write_files",
            [{"path": "/etc/a", "permissions": "0744"}],
        ),
        ("hostname: 012\n", "hostname", "012"),
    ],
)
def test_string_fields_keep_their_source_text_despite_yaml_1_1(yaml_text: str, key: str, expected: object) -> None:
    document, found = validate_text("#cloud-config\n" + yaml_text)
    assert document is not None
    value = document["coreos"][key] if key == "update" else document[key]
    assert value == expected
    # `no` is not a strategy the agent knows, yet it is a well-formed name: only "off"-style typing is at stake.
    assert [f for f in found if f.level == "error"] == []


def test_dashes_and_underscores_are_the_same_in_keys() -> None:
    document, found = validate_text("#cloud-config\nssh-authorized-keys: [k]\nmanage-etc-hosts: localhost\n")
    assert found == [] and document == {"ssh_authorized_keys": ["k"], "manage_etc_hosts": "localhost"}


def test_undecodable_write_files_content_is_an_error() -> None:
    text = "#cloud-config\nwrite_files:\n  - path: /etc/a\n    encoding: gzip+base64\n    content: aGVsbG8K\n"
    assert findings(text) == ["line 5: error: write_files[0].content: is not valid gzip data"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hostname: a\n", 'line 1: error: user data must start with "#cloud-config" or "#!"; add the header line\n'),
        (b"\x1f\x8bnot gzip", "line 1: error: user data is corrupt gzip"),
        (b"\xff\xfe\x00garbage", "line 1: error: user data is not UTF-8 text"),
    ],
)
def test_unusable_user_data_is_reported_on_line_1(cli: Cli, data: bytes, message: str) -> None:
    result = cli(data, "--validate")
    assert result.code == 1
    assert result.out.startswith(message)


def test_a_strategy_needing_settings_cloud_config_cannot_give_is_judged_on_its_own() -> None:
    # fleetlock needs LOCKSMITHD_FLEETLOCK_URL, which comes from update.conf, not from cloud-config
    assert findings("#cloud-config\ncoreos:\n  update:\n    reboot_strategy: fleetlock\n") == []
    out = findings("#cloud-config\ncoreos:\n  update:\n    reboot_strategy: 'no such!'\n")
    assert out[0].startswith('line 4: error: coreos.update.reboot_strategy: REBOOT_STRATEGY="no such!": not a strategy')


def test_user_names_are_checked() -> None:
    assert findings("#cloud-config\nusers:\n  - name: 'Bad Name'\n") == [
        "line 3: error: users[0].name: invalid value 'Bad Name': a user name is lower-case letters, digits, "
        "'_' and '-' (≤ 32)"
    ]


def test_the_missing_variable_warning_points_at_the_first_unescaped_use() -> None:
    text = "#cloud-config\na: \\$private_ipv4\nb: $private_ipv4\n"
    assert substitute(text, {}) == ("#cloud-config\na: $private_ipv4\nb: $private_ipv4\n", {"private_ipv4": 3})


def test_values_that_would_break_the_files_they_go_to_are_errors() -> None:
    text = (
        '#cloud-config\nusers:\n  - name: eve\n    passwd: "x:0:0"\n    gecos: "a\\nroot::0:0::/:/bin/sh"\n'
        'coreos:\n  etcd2:\n    name: "n1\\nETCD_FORCE_NEW_CLUSTER=true"\n'
    )
    assert findings(text) == [
        "line 4: error: users[0].passwd: invalid value: ':' and control characters cannot go into /etc/passwd "
        "or /etc/shadow",
        "line 5: error: users[0].gecos: invalid value: ':' and control characters cannot go into /etc/passwd "
        "or /etc/shadow",
        "line 8: error: coreos.etcd2.name: invalid value: control characters (newline, tab, …) cannot go into a "
        "setting",
    ]


def test_etcd_https_urls_without_their_certificate_are_an_error_on_their_line() -> None:
    text = (
        "#cloud-config\ncoreos:\n  etcd2:\n    cert_file: /c.pem\n"
        "    listen_client_urls: http://127.0.0.1:2379,https://10.0.0.1:2379\n"
        "    listen_peer_urls: https://10.0.0.1:2380\n    peer_cert_file: /p.pem\n    peer_key_file: /pk.pem\n"
    )
    assert findings(text) == [
        "line 5: error: coreos.etcd2.listen_client_urls has https URLs: set cert_file and key_file too,"
        " or etcd will not start"
    ]
