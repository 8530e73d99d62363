"""The benchmark suite (GitHub issue 14, "Performance and scale"):

    python -m bench [--quick] [--full SECTION ...] [--only SECTION ...] [--json PATH]

Runs the sections in order (``open``, ``paths``, ``memory``, ``herd``, ``ratelimit``,
``simulate``), each a module ``bench.<section>`` (``simulate``: ``bench.simulate_ratio``) with
``async def measure(quick: bool) -> list[Figure]``, imported only when its turn comes. Prints the
load average before and after each section and one aligned line per figure: section, name,
value and unit, baseline and its name, ratio, goal, met or NOT MET. A section that is missing or
raises is one error line and the suite goes on; the exit status is then 1. At the end writes the
JSON summary (machine, start and end in UTC, every section's timing and error, every figure's
``as_dict()``) to ``--json`` (default ``bench/last-run.json``) and prints its path.

Nothing fails on time: the figures are reported against their goals, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.figures import Figure, load_average

#: Section name -> module, in the order the suite runs them.
SECTIONS: dict[str, str] = {
    "open": "bench.open",
    "paths": "bench.paths",
    "memory": "bench.memory",
    "herd": "bench.herd",
    "ratelimit": "bench.ratelimit",
    "simulate": "bench.simulate_ratio",
}
DEFAULT_JSON = Path(__file__).with_name("last-run.json")
#: Column widths of a figure line.
WIDTHS = (10, 40, 20, 44, 12, 22)


def _number(value: float | None) -> str:
    """``17,392`` for whole numbers, ``0.873`` otherwise (at most 3 decimals)."""
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def figure_line(figure: Figure) -> str:
    """One aligned line: section, name, value+unit, baseline (name), ratio, goal, verdict."""
    baseline = "" if figure.baseline is None else f"vs {_number(figure.baseline)}" + (
        f" ({figure.baseline_name})" if figure.baseline_name else "")
    ratio = "" if figure.ratio is None else f"ratio {figure.ratio:.2f}"
    goal = f"goal {figure.goal}" if figure.goal else ""
    verdict = {True: "met", False: "NOT MET", None: "" if not figure.goal else "n/a"}[figure.goal_met]
    cells = (figure.section, figure.name, f"{_number(figure.value)} {figure.unit}", baseline, ratio, goal)
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, WIDTHS)) + "  " + verdict


def _load_text(load: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.2f}" for value in load)


def _git_commit() -> str | None:
    """The checked-out commit (read-only ``git rev-parse``), or None outside a repository."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, load, Python, SDK version, commit."""
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": list(load_average()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "temporalio": _version("temporalio"),
        "git_commit": _git_commit(),
    }


def run_section(name: str, quick: bool) -> tuple[list[Figure], dict[str, Any]]:
    """Import and run one section; ``(figures, record)`` where ``record`` has its timing, load
    before/after and ``error`` (None, or one line) for the JSON summary. Prints as it goes."""
    module_name = SECTIONS[name]
    before = load_average()
    print(f"== {name}: load average {_load_text(before)}", flush=True)
    began, started = time.perf_counter(), datetime.now(UTC)
    figures: list[Figure] = []
    error = None
    try:
        module = importlib.import_module(module_name)
        figures = list(asyncio.run(module.measure(quick)))
    except ModuleNotFoundError as err:
        error = f"no module {module_name}" if err.name == module_name else f"{type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 (any failure of a section is reported and the suite goes on)
        error = f"{type(err).__name__}: {err}"
        traceback.print_exc(limit=-3)
    seconds = time.perf_counter() - began
    for figure in figures:
        print(figure_line(figure), flush=True)
    if error:
        print(f"{name.ljust(WIDTHS[0])}  ERROR  {error}", flush=True)
    after = load_average()
    print(f"== {name}: {seconds:.1f} s, load average {_load_text(after)}", flush=True)
    record = {"section": name, "module": module_name, "started": started.isoformat(),
              "seconds": round(seconds, 2), "load_before": list(before), "load_after": list(after),
              "figures": len(figures), "error": error}
    return figures, record


def main(argv: list[str] | None = None) -> int:
    """Run the suite; 0 if every section ran, 1 if any was missing or raised."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes, not tens of minutes)")
    parser.add_argument("--full", nargs="+", default=[], choices=list(SECTIONS), metavar="SECTION",
                        help="with --quick: these sections at full size all the same")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)})")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the summary (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    chosen = [name for name in SECTIONS if not args.only or name in args.only]
    started = datetime.now(UTC)
    summary: dict[str, Any] = {"machine": machine(), "quick": args.quick, "full_sections": args.full, "sections_chosen": chosen,
                               "started": started.isoformat()}
    print(f"bench {'--quick ' if args.quick else ''}{' '.join(chosen)}: {summary['machine']['nproc']} cores, "
          f"Python {summary['machine']['python']}, temporalio {summary['machine']['temporalio']}", flush=True)
    figures: list[Figure] = []
    records: list[dict[str, Any]] = []
    try:
        for name in chosen:
            section_figures, record = run_section(name, args.quick and name not in args.full)
            figures += section_figures
            records.append(record)
    finally:
        summary["finished"] = datetime.now(UTC).isoformat()
        summary["machine"]["load_average_end"] = list(load_average())
        summary["sections"] = records
        summary["figures"] = [figure.as_dict() for figure in figures]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"summary: {args.json}", flush=True)
    errors = [record for record in records if record["error"]]
    missed = [figure for figure in figures if figure.goal_met is False]
    print(f"{len(figures)} figures, {len(missed)} goal(s) not met, {len(errors)} section error(s)", flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
