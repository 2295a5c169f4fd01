"""Regenerate the README's performance table from the committed benchmark results.

Every JSON file under benchmarks/results/ written by ``BenchResult`` (``irdeploy bench --out``,
``benchmarks/cpu_backends.py``, ``benchmarks/gpu_check.sh``) contributes its rows; the table
replaces what lies between the ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` lines of
README.md, so the README never shows a figure that no committed file holds.

Usage: python benchmarks/readme_table.py [--check]
  --check: write nothing; exit 1 if the README's table differs from the generated one (CI).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from irdeploy.runtime.bench import BenchResult, summary_markdown

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def bench_results(results: Path = RESULTS) -> list[tuple[str, BenchResult]]:
    """``(path relative to results/, result)`` for every BenchResult JSON file, sorted by path.
    Other JSON files there (export forms, AutoCast comparison) have their own formats."""
    found = []
    for path in sorted(results.rglob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and {"rows", "machine", "config"} <= data.keys():
            found.append((path.relative_to(results).as_posix(), BenchResult.from_dict(data)))
    return found


def splice(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    head, sep, rest = readme.partition(BEGIN + "\n")
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"README.md needs the lines {BEGIN} and {END} around the performance table")
    return head + sep + table + sep2 + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date; write nothing")
    args = parser.parse_args(argv)
    readme = README.read_text()
    wanted = splice(readme, summary_markdown(bench_results()))
    if args.check:
        if wanted != readme:
            print("README.md's benchmark table differs from benchmarks/results/; "
                  "run python benchmarks/readme_table.py", file=sys.stderr)
            return 1
        return 0
    if wanted != readme:
        from irdeploy.runtime.tensorrt.sidecar import atomic_write

        atomic_write(README, wanted.encode())
        print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
