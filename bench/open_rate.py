"""The former open-rate benchmark, now the suite's "open" and "paths" sections:

    python -m bench.open_rate [--cases N] [--rounds R]

is ``bench/open.py`` at the given size, then the no-payment path to the DPD 30 hand-off of
``bench/paths.py``, printed as the suite prints figures (``python -m bench --only open paths``
runs both with the suite's sizes and writes the JSON summary). The names other scripts imported
from here are kept.
"""

from __future__ import annotations

import argparse
import asyncio

from bench.__main__ import figure_line
from bench.open import (
    RING,
    bench_activities,
    bench_case,
    gather_limited,
    open_figures,
    open_rates,
)
from bench.paths import path_figures, run_paths

__all__ = ["RING", "_bench_activities", "_case", "_gather_limited", "main"]

#: The names this module had before the suite.
_bench_activities, _case, _gather_limited = bench_activities, bench_case, gather_limited


def main() -> None:
    """Parse ``--cases`` and ``--rounds`` and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500, help="cases per batch")
    parser.add_argument("--rounds", type=int, default=2, help="batches of each kind, in alternating order")
    args = parser.parse_args()
    for figure in open_figures(asyncio.run(open_rates(args.cases, args.rounds)), f"{args.cases} x {args.rounds} rounds"):
        print(figure_line(figure))
    path = "no_payment_to_hand_off"
    for figure in path_figures(path, *asyncio.run(run_paths([path]))[path]):
        print(figure_line(figure))


if __name__ == "__main__":
    main()
