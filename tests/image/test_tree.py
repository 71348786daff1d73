"""The image's os-release: Debian's, naming this OS and its version (what the console's welcome line shows)."""

from __future__ import annotations

from locksmith.image.tree import os_release

DEBIAN = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
"""


def test_os_release_names_the_image_and_keeps_debian_s_identity() -> None:
    text = os_release(DEBIAN, "2.0.0")
    fields = dict(line.split("=", 1) for line in text.splitlines())
    assert fields["PRETTY_NAME"] == '"Locksmith OS 2.0.0 (Debian GNU/Linux 12 (bookworm))"'
    assert fields["IMAGE_ID"] == "locksmith" and fields["IMAGE_VERSION"] == "2.0.0"
    assert fields["ID"] == "debian" and fields["VERSION_ID"] == '"12"'  # apt and friends still see Debian
    assert text.endswith("\n") and text.count("PRETTY_NAME=") == 1
