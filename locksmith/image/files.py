"""Small files the builder writes into the tree (kept as text here so the installed wheel carries them)."""

from __future__ import annotations

AUTOLOGIN_GENERATOR = r"""#!/bin/sh
# CoreOS's `coreos.autologin[=TTY]` kernel argument: a root shell on the console without a password, for
# debugging and the boot tests. Without the argument nothing is generated.
set -eu
normal_dir=$1
for word in $(cat /proc/cmdline); do
  case "$word" in
    coreos.autologin) ttys="ttyS0 tty1" ;;
    coreos.autologin=*) ttys=${word#coreos.autologin=} ;;
    *) continue ;;
  esac
  for tty in $(echo "$ttys" | tr ',' ' '); do
    case "$tty" in
      ttyS*) unit="serial-getty@$tty.service" ;;
      *) unit="getty@$tty.service" ;;
    esac
    mkdir -p "$normal_dir/$unit.d"
    cat >"$normal_dir/$unit.d/10-autologin.conf" <<UNIT
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud %I 115200,38400,9600 \$TERM
UNIT
  done
done
"""

DHCP_NETWORK = r"""# Every wired interface by DHCP, as CoreOS's default (a file of the same name in /etc overrides it).
[Match]
Name=en* eth*

[Network]
DHCP=yes
"""

SSH_KEYGEN_DROPIN = r"""# The image carries no host keys (every machine would share them):
# make the missing ones before sshd checks them.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
