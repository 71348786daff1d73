"""The Omaha client has a total deadline per request: a server trickling its reply ends the check (issue 9)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness.devtools.trickle import trickling_server
from locksmith.protocol.update1 import Operation
from locksmith.updateengine.engine import Identity, UpdateEngine
from locksmith.updateengine.target import SlotTarget

from .ue_support import MACHINE_ID, make_world


async def test_a_trickling_omaha_server_fails_the_check_within_its_deadline(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    async with trickling_server("text/xml") as url:
        config = world.config(url + "/v1/update/", version="1.0.0")
        target = SlotTarget(config.disk, None, config.public_key)
        engine = UpdateEngine(config, Identity(MACHINE_ID, "c" * 32), target, request_timeout=1.0)
        try:
            async with asyncio.timeout(60):
                ended_in = await engine.check_for_update()
        finally:
            await engine.aclose()
    assert ended_in is Operation.IDLE
    assert engine.last_error is not None and "no complete reply within 1s" in engine.last_error
