"""`locksmith-bootloader`: the boot-time half of A/B for disk image files (GRUB gptprio stand-in).

  choose --disk IMG [--boot-record PATH]            pick the slot to boot (consuming a try), record it
  mark-successful --disk IMG [--slot NAME|--booted] after a good boot: the slot sticks
  status --disk IMG                                 both slots' attributes
  sync [--disk DEV] [--env FILE]                    at boot: fold the try GRUB spent into the GPT, re-mirror

On a booted host --disk may be left out: the disk holding the USR partition on the kernel command line.

Exit codes: 0 done, 1 the disk or its slots are unusable (one-line reason on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from locksmith.cli import Expected, file_error, run_main
from locksmith.disk import grubenv
from locksmith.disk.gpt import GptError
from locksmith.disk.slots import (
    SLOT_NAMES,
    Slot,
    SlotError,
    booted_disk,
    booted_slot,
    choose_boot,
    mark_successful,
    read_slots,
    write_boot_record,
)


def format_slot(slot: Slot, booted: bool = False) -> str:
    mark = " (booted)" if booted else ""
    return (
        f"{slot.name} partition={slot.number} partuuid={slot.partuuid} priority={slot.priority} "
        f"tries={slot.tries} successful={int(slot.successful)}{mark}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="locksmith-bootloader", description="A/B USR slot selection on a GPT disk.")
    sub = parser.add_subparsers(dest="command", required=True)
    choose = sub.add_parser("choose", help="choose the slot to boot, like GRUB's gptprio.next, and record it")
    choose.add_argument("--disk", required=True, type=Path)
    choose.add_argument("--boot-record", type=Path, help="where to record the choice (default <disk>.boot)")
    sync = sub.add_parser("sync", help="at boot: fold the try GRUB consumed into the GPT and re-mirror its env block")
    sync.add_argument("--disk", type=Path, help="default: the disk of the booted USR partition")
    sync.add_argument("--env", type=Path, default=grubenv.HOST_ENV, help=f"default {grubenv.HOST_ENV}")
    ok = sub.add_parser("mark-successful", help="mark a slot as booted successfully (default: the booted one)")
    ok.add_argument("--disk", type=Path, help="default: the disk of the booted USR partition")
    which = ok.add_mutually_exclusive_group()
    which.add_argument("--slot", choices=SLOT_NAMES)
    which.add_argument("--booted", action="store_true", help="the slot in the boot record (the default)")
    ok.add_argument("--boot-record", type=Path)
    status = sub.add_parser("status", help="print both slots' gptprio attributes")
    status.add_argument("--disk", type=Path, help="default: the disk of the booted USR partition")
    status.add_argument("--boot-record", type=Path)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    return parser


def _run(args: argparse.Namespace) -> int:
    disk: Path = args.disk or booted_disk()
    if args.command == "sync":
        spent = grubenv.fold_spent_tries(disk, args.env)
        for slot in read_slots(disk):
            folded = " (a try GRUB spent, folded in)" if slot.number in spent else ""
            print(format_slot(slot) + folded)
    elif args.command == "choose":
        slot = choose_boot(disk)
        record = write_boot_record(disk, slot, args.boot_record)
        print(format_slot(slot))
        print(f"boot record: {record}")
    elif args.command == "mark-successful":
        if args.slot:
            slot = next(s for s in read_slots(disk) if s.name == args.slot)
        else:
            slot = booted_slot(disk, args.boot_record)
        print(format_slot(mark_successful(disk, slot)))
    else:
        try:
            booted: int | None = booted_slot(disk, args.boot_record).number
        except SlotError:
            booted = None  # never "booted" yet: status still shows the attributes
        for slot in read_slots(disk):
            print(format_slot(slot, booted=slot.number == booted))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Nothing here logs: results are printed, errors end in one scrubbed line (run_main). No log set-up,
    # then: structlog and asyncio would be half of this tool's start, and it runs twice on every boot.
    return run_main(
        "locksmith-bootloader",
        lambda: _run(args),
        Expected((GptError, SlotError)),
        Expected(OSError, detail=file_error(args.disk or Path("/proc/cmdline"))),
        debug=args.debug,
    )


if __name__ == "__main__":
    sys.exit(main())
