"""ARCHITECTURE.md's code map, checked: who may import whom, the harness kept out of the product, and
short modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400

# Utilities any product component may use (but the pure protocol layer).
_UTILITIES = {
    "locksmith",
    "locksmith.logging",
    "locksmith.safe_text",
    "locksmith.machineid",
    "locksmith.cli",
    "locksmith.deadline",
}

# component -> the components it may import (besides itself). A component is a sub-package of
# locksmith (locksmith.agent) or a top-level module (locksmith.ctl); strategies/ is one component.
ALLOWED: dict[str, set[str]] = {
    "locksmith.protocol": set(),
    # settings asks strategy for the installed strategies' own settings, lazily (strategy imports settings).
    "locksmith.settings": {"locksmith.protocol", "locksmith.kv.base", "locksmith.strategy"} | _UTILITIES,
    "locksmith.kv": {"locksmith.protocol"} | _UTILITIES,
    "locksmith.lockstore": {"locksmith.kv", "locksmith.protocol", "locksmith.pacing_record", "locksmith.handover"}
    | _UTILITIES,
    "locksmith.handover": {"locksmith.kv", "locksmith.protocol", "locksmith.lockstore"} | _UTILITIES,
    "locksmith.pacing_record": {"locksmith.kv", "locksmith.protocol"} | _UTILITIES,
    "locksmith.leases": {"locksmith.kv", "locksmith.lockstore", "locksmith.protocol"} | _UTILITIES,
    "locksmith.waitline": {
        "locksmith.kv",
        "locksmith.lockstore",
        "locksmith.leases",
        "locksmith.protocol",
        "locksmith.strategy",
    }
    | _UTILITIES,
    "locksmith.bus": {"locksmith.protocol"} | _UTILITIES,
    "locksmith.disk": {"locksmith.protocol"} | _UTILITIES,
    "locksmith.fleetlock": {"locksmith.protocol"} | _UTILITIES,
    "locksmith.strategy": {"locksmith.settings", "locksmith.kv", "locksmith.protocol"} | _UTILITIES,
    "strategies": {
        "locksmith.strategy",
        "locksmith.settings",
        "locksmith.kv",
        "locksmith.lockstore",
        "locksmith.leases",
        "locksmith.waitline",
        "locksmith.protocol",
        "locksmith.fleetlock",
    }
    | _UTILITIES,
    "locksmith.agent": {
        "locksmith.protocol",
        "locksmith.settings",
        "locksmith.kv",
        "locksmith.lockstore",
        "locksmith.bus",
        "locksmith.strategy",
        "locksmith.fleetlock",
    }
    | _UTILITIES,
    "locksmith.updateengine": {"locksmith.protocol", "locksmith.settings", "locksmith.bus", "locksmith.disk"}
    | _UTILITIES,
    "locksmith.cloudconfig": {"locksmith.settings"} | _UTILITIES,
    "locksmith.image": {"locksmith.protocol", "locksmith.settings", "locksmith.disk", "locksmith.updateengine"}
    | _UTILITIES,
    "locksmith.ctl": {
        "locksmith.protocol",
        "locksmith.settings",
        "locksmith.kv",
        "locksmith.lockstore",
        "locksmith.bus",
        "locksmith.ctl_hosts",
        "locksmith.ctl_leases",
    }
    | _UTILITIES,
    "locksmith.ctl_leases": {
        "locksmith.kv",
        "locksmith.leases",
        "locksmith.lockstore",
        "locksmith.protocol",
        "locksmith.settings",
    }
    | _UTILITIES,
    "locksmith.safe_text": set(),
    "locksmith.logging": {"locksmith.safe_text"},
    "locksmith.cli": {"locksmith.safe_text"},
    "locksmith.machineid": set(),
    "locksmith.deadline": set(),
    "locksmith.ctl_hosts": {"locksmith.protocol"},
    "locksmith": set(),
}


def _component(module: str) -> str:
    if module.startswith("strategies"):
        return "strategies"
    parts = module.split(".")
    return ".".join(parts[:2])


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("locksmith", "strategies", "harness")}


def _product_files() -> list[Path]:
    return sorted([*(ROOT / "locksmith").rglob("*.py"), *(ROOT / "strategies").rglob("*.py")])


def _resolve(name: str) -> str:
    """The module a dotted import name refers to (`locksmith.kv.KVError` -> `locksmith.kv`)."""
    parts = name.split(".")
    while len(parts) > 1:
        base = ROOT.joinpath(*parts)
        if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
            break
        parts.pop()
    return ".".join(parts)


def _is_allowed(module: str, own: str) -> bool:
    if module == own or module.startswith(own + ".") or module in _UTILITIES:
        return True
    # The bare package ("locksmith", a utility) is matched exactly: as a prefix it would allow everything.
    return any(module == a or (a != "locksmith" and module.startswith(a + ".")) for a in ALLOWED[own])


@pytest.mark.parametrize("path", _product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_product_imports_follow_the_code_map(path: Path) -> None:
    own = _component(_module_name(path))
    assert own in ALLOWED, f"{own} is not in ARCHITECTURE.md's code map (add it there and here)"
    modules = {_resolve(name) for name in _imports(path)}
    bad = sorted(m for m in modules if not _is_allowed(m, own))
    assert not bad, f"{path.relative_to(ROOT)} ({own}) imports {bad}; allowed: {sorted(ALLOWED[own])}"


def test_nothing_outside_the_harness_tests_and_bench_imports_the_harness() -> None:
    offenders = [
        str(p.relative_to(ROOT)) for p in _product_files() if any(n.startswith("harness") for n in _imports(p))
    ]
    assert offenders == []


def _all_modules() -> list[Path]:
    return sorted(
        p for top in ("locksmith", "strategies", "harness", "bench", "tests") for p in (ROOT / top).rglob("*.py")
    )


def test_no_module_is_over_the_size_limit() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _all_modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these into modules of one job each (≤ {MAX_LINES} lines): {long}"


def test_every_product_folder_is_on_the_code_map() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    folders = sorted(p.name for p in (ROOT / "locksmith").iterdir() if p.is_dir() and (p / "__init__.py").exists())
    missing = [f for f in folders if f"`locksmith/{f}/`" not in text]
    assert missing == [], f"ARCHITECTURE.md's code map lacks {missing}"
    for top in ("harness/", "strategies/", "tests/", "bench/"):
        assert f"`{top}`" in text
