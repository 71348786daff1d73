"""The watch resync both etcd backends use once their history is gone, and the reconnect budget."""

from __future__ import annotations

import pytest

from locksmith.kv.base import Change, Entry, KVUnavailable
from locksmith.kv.watch import Reconnect, resync


def test_newer_value_is_reported_at_its_own_revision() -> None:
    change, last = resync("k", Entry("k", b"v", 12), 20, 5)
    assert change == Change("k", b"v", 12)
    assert last == 20  # nothing up to the store's revision is worth asking for again


def test_deleted_key_is_reported_at_the_store_revision() -> None:
    assert resync("k", None, 20, 5) == (Change("k", None, 20), 20)


def test_nothing_newer_reports_nothing_but_moves_on() -> None:
    assert resync("k", Entry("k", b"v", 5), 9, 5) == (None, 9)
    assert resync("k", None, 3, 5) == (None, 5)


def test_unreachable_beyond_the_budget_ends_the_watch() -> None:
    reconnect = Reconnect("etcd v3", "k", budget=0.0)
    reconnect.unreachable(OSError("refused"))  # the first failure starts the clock
    with pytest.raises(KVUnavailable, match="etcd v3: the watch on k could not reconnect: refused"):
        while True:
            reconnect.unreachable(OSError("refused"))


def test_an_answer_resets_the_budget() -> None:
    reconnect = Reconnect("etcd v2", "k", budget=3600.0)
    reconnect.unreachable(OSError("refused"))
    reconnect.answered()
    reconnect.unreachable(OSError("refused"))  # a fresh budget: no raise
