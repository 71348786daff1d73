"""Class 4 of issue 9: the machine-id file is an input too; what it holds is validated and bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from locksmith.machineid import MachineIdError, read_machine_id


def test_an_endless_machine_id_file_is_refused_without_reading_it_all() -> None:
    with pytest.raises(MachineIdError) as info:
        read_machine_id("/dev/zero")  # would never end if read whole
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


@pytest.mark.parametrize(
    "content",
    [b"0123456789abcdef0123456789abcdef\nAvailable: 9\n", b"\x1b[2J" * 10, b"x" * 1_000_000, b"0123 4567"],
)
def test_a_machine_id_file_that_could_forge_output_is_refused_in_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "machine-id"
    path.write_bytes(content)
    with pytest.raises(MachineIdError) as info:
        read_machine_id(path)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message and len(message) < 300


def test_a_real_machine_id_is_read(tmp_path: Path) -> None:
    path = tmp_path / "machine-id"
    path.write_text("0123456789abcdef0123456789abcdef\n")
    assert read_machine_id(path) == "0123456789abcdef0123456789abcdef"
