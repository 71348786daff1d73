"""`python -m bench [--full] [NAME ...]`: run every benchmark module in bench/ (or the named ones).

Each benchmark is a module here with `main(argv: list[str] | None) -> int`; run one with its own options
as `python -m bench.<name> --help`. A module whose full-size run takes too long for one sitting defines
`QUICK_ARGV` (a smaller run, written to its own results file); `python -m bench` uses it, `--full` runs
every module with its defaults (the sizes the issue asks for).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def discover() -> list[str]:
    """The benchmarks: the modules here with a `main` (their helpers, such as contention_worker, have
    none), found without importing them all."""
    here = Path(__file__).parent
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(here)])
        if not m.name.startswith("_") and "\ndef main(" in (here / f"{m.name}.py").read_text()
    )


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(__doc__.strip())
        print(f"\nbenchmarks: {', '.join(discover())}")
        return 0
    full = "--full" in args
    names = [a for a in args if a != "--full"] or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        print(f"bench: unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(discover())}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "main"):
            continue
        module_argv = [] if full else list(getattr(module, "QUICK_ARGV", []))
        print(f"== {name} {' '.join(module_argv)}".rstrip(), flush=True)
        started = time.monotonic()
        status = max(status, module.main(module_argv) or 0)
        print(f"== {name}: {time.monotonic() - started:.0f} s\n", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
