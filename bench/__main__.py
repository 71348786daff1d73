"""`python -m bench [NAME ...]`: run every benchmark module in bench/ (or the named ones) with defaults.

Each benchmark is a module here with `main(argv: list[str] | None) -> int`; run one with its own options
as `python -m bench.<name> --help`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv) or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        print(f"bench: unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(discover())}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "main"):
            continue
        print(f"== {name}", flush=True)
        status = max(status, module.main([]) or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
