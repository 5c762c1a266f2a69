"""Run every `bench_*.py` module here, or those named on the command line, and print results."""

from __future__ import annotations

import importlib
import pkgutil
import platform
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = argv or sorted(
        module.name
        for module in pkgutil.iter_modules([str(here)])
        if module.name.startswith("bench_")
    )
    print(
        f"# python {platform.python_version()} on {platform.machine()}, "
        f"{platform.processor() or '?'}"
    )
    for name in names:
        module = importlib.import_module(f"tests.benchmarks.{name}")
        print(f"\n## {name}")
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
