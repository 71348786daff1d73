"""What the vmfleet tests share: a namespace prefix of their own, and a check that no test leaves a
namespace behind."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from harness.vmfleet import netns

# Never the demo's prefix: a test's sweep must not touch a demo running on the same machine.
PREFIX = "lsvmtest"


@pytest.fixture(autouse=True)
def no_namespace_left() -> Iterator[None]:
    yield
    ours = re.compile(rf"{PREFIX}-{os.getpid()}-")
    left = [name for name in netns.namespaces() if ours.match(name)]
    netns.remove(left)  # so one failure does not spill into the next test
    assert left == [], f"namespaces left behind: {left}"
