"""``python -m benchmarks run NAME|all [--quick] [--out DIR]`` and ``python -m benchmarks list``."""

import argparse
import datetime
import importlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks import BENCHMARKS  # noqa: E402
from benchmarks.record import REPO, record, write_record  # noqa: E402

FULL_OUT = REPO / "benchmarks" / "results"
QUICK_OUT = REPO / "outputs" / "benchmarks" / "quick"


def run_one(name: str, *, quick: bool, out: Path) -> Path:
    """Import ``benchmarks.<name>``, run it and write its record; returns the record's path."""
    module = importlib.import_module(f"benchmarks.{name}")
    started = datetime.datetime.now(datetime.timezone.utc)
    start = time.perf_counter()
    figures = module.run(quick)
    result = record(name, figures, quick=quick, wall_s=time.perf_counter() - start, started=started)
    path = write_record(out, result)
    print(f"== {name}: {json.dumps(figures)}\n   -> {path} ({result['wall_s']:.0f} s)", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the benchmarks, one a line, with their first docstring line")
    run = commands.add_parser("run", help="run one benchmark, or all in order")
    run.add_argument("name", choices=[*BENCHMARKS, "all"])
    run.add_argument("--quick", action="store_true", help="tiny settings (seconds each): a smoke run, not a figure")
    run.add_argument("--out", type=Path, default=None, help=f"where the JSON goes (default {FULL_OUT.relative_to(REPO)}/, "
                     f"with --quick {QUICK_OUT.relative_to(REPO)}/)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in BENCHMARKS:
            doc = importlib.import_module(f"benchmarks.{name}").__doc__ or ""
            print(f"{name:24} {doc.strip().splitlines()[0] if doc.strip() else ''}")
        return 0
    out = args.out or (QUICK_OUT if args.quick else FULL_OUT)
    for name in BENCHMARKS if args.name == "all" else (args.name,):
        run_one(name, quick=args.quick, out=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
