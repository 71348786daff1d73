"""`coreos-cloudinit`: CoreOS's command line, plus `--root DIR` to apply into a tree instead of `/`.

Exit status: 0 when everything was applied (or `--validate` found nothing), 1 otherwise; with
`--ignore-failure` always 0, as CoreOS's flag promised, after printing the same report.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from locksmith.cloudconfig import datasource, substitute, userdata
from locksmith.cloudconfig.apply import Outcome, apply_document, run_script
from locksmith.cloudconfig.context import DEFAULT_SSH_KEY_NAME, DEFAULT_WORKSPACE, Context
from locksmith.cloudconfig.findings import Finding, has_errors
from locksmith.cloudconfig.rootfs import Root
from locksmith.cloudconfig.runner import Runner
from locksmith.cloudconfig.validate import validate_text

# --oem ID -> the config drive it reads. CoreOS's metadata services (EC2, GCE, …) are not spoken here.
OEM_CONFIGDRIVE = {"ec2-compat": "/media/configdrive", "openstack": "/media/configdrive"}
OEM_CONFIGDRIVE["rackspace-onmetal"] = "/media/configdrive"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coreos-cloudinit", description="Apply (or --validate) a host's cloud-config.")

    def flag(name: str, **kw: object) -> None:
        # CoreOS's Go flags took one dash too (-from-file); scripts written for it keep working.
        p.add_argument(f"--{name}", f"-{name}", **kw)  # type: ignore[arg-type]

    flag("from-file", metavar="PATH", help="read user data from this file")
    flag("from-configdrive", metavar="DIR", help="read an OpenStack config drive mounted at DIR")
    flag("from-url", metavar="URL", help="download user data from URL")
    flag("from-proc-cmdline", action="store_true", help="download from cloud-config-url= on the kernel command line")
    flag("oem", metavar="ID", help=f"use the datasource of this OEM ({', '.join(sorted(OEM_CONFIGDRIVE))})")
    flag("validate", action="store_true", help="check the user data and report; apply nothing")
    flag("workspace", metavar="DIR", default=DEFAULT_WORKSPACE, help="where user-data scripts are kept")
    flag("ssh-key-name", metavar="NAME", default=DEFAULT_SSH_KEY_NAME, help="file name under authorized_keys.d")
    flag("ignore-failure", action="store_true", help="exit 0 even when something failed (still reported)")
    flag("root", metavar="DIR", default="/", help="apply into this tree instead of / (services are not touched)")
    return p


def _sources(args: argparse.Namespace, root: Root) -> list[datasource.Source]:
    """The datasources asked for, read in CoreOS's order; DatasourceError for one we cannot read."""
    found: list[datasource.Source] = []
    if args.oem:
        if args.oem not in OEM_CONFIGDRIVE:
            raise datasource.DatasourceError(
                f"--oem {args.oem}: unknown; use one of {', '.join(sorted(OEM_CONFIGDRIVE))}"
            )
        args.from_configdrive = args.from_configdrive or OEM_CONFIGDRIVE[args.oem]
    if args.from_file:
        found.append(datasource.from_file(Path(args.from_file)))
    if args.from_configdrive:
        found.append(datasource.from_configdrive(Path(args.from_configdrive)))
    if args.from_url:
        found.append(datasource.from_url(args.from_url))
    if args.from_proc_cmdline:
        cmdline = root.read_text("/proc/cmdline") or ""
        found.append(datasource.from_cmdline(cmdline))
    return found


def _missing_findings(missing: dict[str, int]) -> list[Finding]:
    out = []
    for name, line in missing.items():
        out.append(
            Finding(line, "warning", f"${name} has no value (no metadata, no COREOS_{name.upper()}): left as is")
        )
    return out


def _report(findings: list[Finding]) -> None:
    for finding in findings:
        print(finding)


def run(argv: Sequence[str] | None = None, runner: Runner | None = None) -> int:
    """The command, without the exit: returns the status (tests pass their own runner)."""
    args = _parser().parse_args(argv)
    if not any((args.from_file, args.from_configdrive, args.from_url, args.from_proc_cmdline, args.oem)):
        print("coreos-cloudinit: give a datasource: --from-file, --from-configdrive, --from-url, --from-proc-cmdline")
        return 2
    root = Root(Path(args.root).resolve())
    if not root.path.is_dir():
        print(f"coreos-cloudinit: --root {args.root}: not a directory")
        return 2
    failed = _run(args, root, runner or Runner(live=root.is_live))
    return 0 if args.ignore_failure or not failed else 1


def _run(args: argparse.Namespace, root: Root, runner: Runner) -> bool:
    """True if anything failed or (with --validate) was reported."""
    try:
        sources = _sources(args, root)
    except datasource.DatasourceError as exc:
        print(f"coreos-cloudinit: {exc}")
        return True
    source = next((s for s in sources if s.user_data is not None), None)
    meta = next((s for s in sources if s.hostname or s.public_keys or s.addresses), None)
    ctx = Context(root, runner, args.workspace, args.ssh_key_name, say=print)
    if meta is not None:
        ctx.metadata_hostname, ctx.metadata_keys = meta.hostname, meta.public_keys
    if source is None:
        print("coreos-cloudinit: no user data")
        # CoreOS applied the metadata's host name and SSH keys on their own too.
        return False if args.validate or meta is None else _finish(apply_document(ctx, {}), runner)
    try:
        data = userdata.parse(source.user_data or b"")
    except userdata.UserDataError as exc:
        print(userdata.header_finding(exc) if args.validate else f"coreos-cloudinit: {exc}")
        return True
    values = substitute.values_from(meta.addresses if meta else {}, os.environ)
    text, missing = substitute.substitute(data.text, values)
    findings = _missing_findings(missing)
    if data.kind == "empty":
        print("coreos-cloudinit: the user data is empty")
        return False
    if data.kind == "script":
        _report(findings)
        return bool(findings) if args.validate else _finish(run_script(ctx, text), runner)
    document, more = validate_text(text)
    findings = sorted(findings + more)
    _report(findings)
    if args.validate:
        return bool(findings)
    if document is None or has_errors(findings):
        print("coreos-cloudinit: not applied: fix the errors above")
        return True
    return _finish(apply_document(ctx, document), runner)


def _finish(outcome: Outcome, runner: Runner) -> bool:
    for argv in runner.skipped:
        print(f"coreos-cloudinit: not the running system, skipped: {' '.join(argv)}")
    for failure in outcome.failures:
        print(f"coreos-cloudinit: failed: {failure}")
    return bool(outcome.failures)


def main() -> None:
    sys.exit(run())
