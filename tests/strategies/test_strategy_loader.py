from __future__ import annotations

import pytest

from locksmith.strategy import Strategy, UnknownStrategy, available_strategies, load_strategy
from strategies.best_effort import BestEffortStrategy
from strategies.etcd_lock import EtcdLockStrategy
from strategies.fleetlock import FleetLockStrategy
from strategies.off import OffStrategy
from strategies.reboot import RebootStrategy


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("reboot", RebootStrategy),
        ("etcd-lock", EtcdLockStrategy),
        ("best-effort", BestEffortStrategy),
        ("off", OffStrategy),
        ("fleetlock", FleetLockStrategy),
    ],
)
def test_builtin_strategies_load_through_the_entry_point_group(name: str, cls: type[Strategy]) -> None:
    strategy = load_strategy(name)
    assert type(strategy) is cls
    assert strategy.name == name


def test_unknown_strategy_is_one_clear_line_listing_the_choices() -> None:
    with pytest.raises(UnknownStrategy) as err:
        load_strategy("etcdlock")
    message = str(err.value)
    assert "\n" not in message
    assert "'etcdlock'" in message
    for name in ("best-effort", "etcd-lock", "fleetlock", "off", "reboot"):
        assert name in message
    assert set(available_strategies()) >= {"best-effort", "etcd-lock", "fleetlock", "off", "reboot"}


def test_only_off_never_reboots() -> None:
    assert [n for n in available_strategies() if not load_strategy(n).reboots] == ["off"]
