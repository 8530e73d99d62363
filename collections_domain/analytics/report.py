"""The KPI report people read: Rich tables for a terminal and one self-contained HTML page with
charts (inline SVG drawn by matplotlib), from the shapes of ``figures.py``.

Money arrives as integer minor units per currency and is shown in major units with the currency's
own exponent (``1,234.56 CNY``, ``1,234 JPY``); amounts in different currencies are never summed.
Rates are fractions in [0, 1], shown as percentages with the counts they come from and, where the
figure carries one, their 95 % interval.
"""

from __future__ import annotations

import html
import io
import math
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from collections_domain.analytics.figures import (
    ArmComparison,
    Figure,
    Filters,
    KpiReport,
    Rate,
    RecoveryFigure,
    WhatIf,
    WhatIfRun,
)
from collections_domain.rules.templates import minor_to_decimal

if TYPE_CHECKING:  # rich and matplotlib are imported where they are used
    from matplotlib.figure import Figure as MplFigure
    from rich.console import Console

__all__ = ["CHART_IDS", "NO_DATA", "print_kpis", "print_whatif", "render_html", "write_html"]

#: The ``id`` of each chart's ``<figure>`` in the HTML page (stable: tests and links use them).
CHART_IDS = ("chart-roll-rates", "chart-cure-curves", "chart-recovery-stage", "chart-recovery-agency", "chart-whatif")
#: What a chart, or a table, shows in place of figures it has none of.
NO_DATA = "no data yet"
_DASH = "—"

# Captions of the charts and tables whose figures carry no definition of their own; a
# ``report.definitions`` entry under the same key replaces the built-in sentence.
_DEFINITIONS = {
    "cure_curves": "Share of each strategy arm's cases cured by each day since the case opened "
    "(cumulative; n is the arm's cases).",
    "recovery": "Amount recovered over the amount that entered collections, per currency (amounts "
    "in different currencies are never added up).",
    "stages": "Cases by the furthest ladder step they reached (identified: none yet); cure rate with "
    "its 95 % interval, and the median days from opening to cure of the cured ones.",
    "promises": "Promises to pay: kept over resolved (kept or broken), and the other promise ratios, "
    "with the counts they come from and their 95 % interval.",
    "channels": "Contact attempts per channel, those delivered, right-party contacts (an agent task "
    "reporting reached, promise made, refused or dispute raised, over the agent tasks), and their cost.",
    "arms": "Strategy arms (champion/challenger): cure rate with its 95 % interval, promises kept, "
    "amount recovered, cost, and cost per cure, per currency.",
    "comparisons": "Two-proportion z-test of cure rates, challenger minus champion, with its 95 % "
    "interval and two-sided p-value.",
    "whatif": "The same loans replayed under each policy: cases opened, cures, amount recovered, "
    "messages (SMS and email), letters, agent tasks, hand-offs and cost. "
    "Differences are against the first policy.",
}

_RECOVERY_BARS = ("Bars: the amount that entered collections (light) and the amount recovered (dark), in "
                  "major units; the label is the recovery rate, of the amount entered, and the cases.")


# ---------------------------------------------------------------------------------------------
# Numbers as people read them


def _money(amount_minor: int, currency: str, *, signed: bool = False) -> str:
    """``1,234.56 CNY`` (``1,234 JPY``): minor units in the currency's own exponent."""
    major = minor_to_decimal(amount_minor, currency)  # exponent: -precision of the currency
    text = f"{major:,.{max(0, -int(major.as_tuple().exponent))}f}"
    if signed and amount_minor > 0:
        text = "+" + text
    return f"{text} {currency}"


def _moneys(amounts: dict[str, int] | dict[str, int | None], *, sep: str = "\n") -> str:
    """Amounts per currency, one a line (a table cell), or a dash."""
    parts = [_money(v, cur) for cur, v in sorted(amounts.items()) if v is not None]
    return sep.join(parts) if parts else _DASH


def _pct(value: float | None, digits: int = 1) -> str:
    return _DASH if value is None else f"{value * 100:.{digits}f}%"


def _count(value: int | None) -> str:
    return _DASH if value is None else f"{value:,}"


def _days(value: float | None) -> str:
    if value is None:
        return _DASH
    return f"{value:,.1f}".removesuffix(".0")


def _interval(low: float | None, high: float | None) -> str:
    """``[35.1–49.2%]``, or empty when the rate has no interval."""
    if low is None or high is None:
        return ""
    return f"[{low * 100:.1f}–{high * 100:.1f}%]"


def _rate(rate: Rate | None) -> str:
    """``42.0% (21/50)``."""
    if rate is None:
        return _DASH
    return f"{_pct(rate.value)} ({rate.numerator:,}/{rate.denominator:,})"


def _rate_ci(rate: Rate | None) -> str:
    """``42.0% [35.1–49.2%]``."""
    if rate is None or rate.value is None:
        return _DASH
    return f"{_pct(rate.value)} {_interval(rate.low, rate.high)}".strip()


def _points(value: float | None) -> str:
    """A difference of two rates in percentage points: ``+3.2 pp``."""
    return _DASH if value is None else f"{value * 100:+.1f} pp"


def _figure_parts(fig: Figure) -> tuple[str, str]:
    """A headline figure as (number, unit): a share as a percentage, days, cases, or money in
    major units with its currency."""
    if fig.value is None:
        return _DASH, ""
    unit = fig.unit.strip()
    if unit == "share":
        return _pct(float(fig.value)), ""
    if unit == "days":
        return _days(float(fig.value)), "days"
    if unit == "cases":
        return _count(int(fig.value)), "cases"
    if unit.startswith("minor units"):
        currency = unit.removeprefix("minor units").strip()
        if currency:
            number, _, currency = _money(round(fig.value), currency).rpartition(" ")
            return number, currency
    return (f"{fig.value:,}" if isinstance(fig.value, int) else f"{fig.value:,.2f}"), unit


def _figure_value(fig: Figure) -> str:
    """``64.0%``, ``6.5 days``, ``650 cases``, ``2,738,746.00 CNY``."""
    return " ".join(part for part in _figure_parts(fig) if part)


def _when(instant: datetime) -> str:
    if instant.tzinfo is not None:
        instant = instant.astimezone(UTC)
    return f"{instant:%Y-%m-%d %H:%M} UTC"


def _filters(filters: Filters) -> str:
    """``opened 2026-01-01 to 2026-03-31 · policy v3 · ...`` or ``all cases``."""
    parts = []
    if filters.opened_from or filters.opened_to:
        parts.append(f"opened {filters.opened_from or '…'} to {filters.opened_to or '…'}")
    for label, value in (
        ("policy", filters.policy_version),
        ("arm", filters.strategy_arm),
        ("segment", filters.segment),
        ("jurisdiction", filters.jurisdiction),
        ("channel", filters.channel),
    ):
        if value is not None:
            parts.append(f"{label} {value}")
    return " · ".join(parts) if parts else "all cases"


def _months(months: Sequence[str]) -> str:
    if not months:
        return "no month-ends yet"
    if len(months) <= 4:
        return "month-ends " + ", ".join(months) + " (each to the next)"
    return f"{len(months)} month-on-month transitions, {months[0]} to {months[-1]}"


def _track(track: str) -> str:
    """``stage:deep`` -> ``Stage: deep``; ``all`` -> ``All cases``."""
    if track == "all":
        return "All cases"
    kind, sep, name = track.partition(":")
    return f"{kind.capitalize()}: {name}" if sep else track.capitalize()


def _label(key: str) -> str:
    """``made_per_case`` -> ``Made per case``; an abbreviation (``dpd``, ``ptp``) in capitals."""
    return key.upper() if key.isalpha() and len(key) <= 3 else key.replace("_", " ").capitalize()


def _definition(report: KpiReport, key: str) -> str:
    return report.definitions.get(key) or _DEFINITIONS[key]


# ---------------------------------------------------------------------------------------------
# Tables: built once from the figures, drawn by Rich or as HTML


@dataclass
class _Table:
    """A table as text cells (a newline in a cell is a line break): ``numeric`` columns are
    right-aligned, ``wide`` ones hold free text that may wrap."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    numeric: set[int] = field(default_factory=set)
    caption: str = ""
    wide: set[int] = field(default_factory=set)


def _headline_table(report: KpiReport) -> _Table:
    rows = [[f.name, _figure_value(f), f.definition] for f in report.headline]
    return _Table("Headline figures", ["Figure", "Value", "Definition"], rows, numeric={1}, wide={2})


def _roll_rate_table(report: KpiReport) -> _Table:
    m = report.roll_rates
    rows = []
    for i, row in enumerate(m.rows):
        counts = m.counts[i] if i < len(m.counts) else []
        rates = m.rates[i] if i < len(m.rates) else []
        cells = [
            f"{_pct(rates[j] if j < len(rates) else None)} ({_count(counts[j] if j < len(counts) else 0)})"
            for j in range(len(m.columns))
        ]
        rows.append([row, *cells])
    return _Table(
        "Roll rates (from bucket → to bucket at the next month-end)",
        ["From \\ to", *m.columns],
        rows,
        numeric=set(range(1, len(m.columns) + 1)),
        caption=f"{m.definition} {_months(m.months).capitalize()}.",
    )


def _bucket_cure_table(report: KpiReport) -> _Table:
    rows = [
        [bucket, _pct(r.value), _interval(r.low, r.high) or _DASH, f"{r.numerator:,}/{r.denominator:,}"]
        for bucket, r in report.roll_rates.cure_rate_by_bucket.items()
    ]
    return _Table(
        "Cure rate out of each bucket",
        ["Bucket", "Cure rate", "95% interval", "Cured / loans"],
        rows,
        numeric={1, 2, 3},
        caption="Loans in the bucket at a month-end that were current at the next month-end.",
    )


def _stage_table(report: KpiReport) -> _Table:
    rows = [
        [s.stage, _count(s.cases), _pct(s.cured.value), _interval(s.cured.low, s.cured.high) or _DASH,
         f"{s.cured.numerator:,}", _days(s.median_days_to_cure)]
        for s in report.stages
    ]
    return _Table(
        "Ladder stages",
        ["Stage", "Cases", "Cure rate", "95% interval", "Cured", "Median days to cure"],
        rows,
        numeric={1, 2, 3, 4, 5},
        caption=_definition(report, "stages"),
    )


def _promise_table(report: KpiReport) -> _Table:
    rows = [
        [_label(name), _pct(r.value), _interval(r.low, r.high) or _DASH, f"{r.numerator:,}/{r.denominator:,}"]
        for name, r in report.promises.items()
    ]
    return _Table(
        "Promises to pay", ["Figure", "Rate", "95% interval", "Count"], rows, numeric={1, 2, 3},
        caption=_definition(report, "promises"),
    )


def _channel_table(report: KpiReport) -> _Table:
    rows = [
        [c.channel, _count(c.attempts), _count(c.delivered),
         _pct(c.delivered / c.attempts) if c.attempts else _DASH,
         _rate(c.right_party_contact), _moneys(c.cost_minor)]
        for c in report.channels
    ]
    return _Table(
        "Channels",
        ["Channel", "Attempts", "Delivered", "Delivery rate", "Right-party contact rate", "Cost"],
        rows,
        numeric={1, 2, 3, 4, 5},
        caption=_definition(report, "channels"),
    )


def _recovery_order(report: KpiReport) -> list[RecoveryFigure]:
    """``all`` first, then the stages in ladder order, the agencies, legal and anything else."""
    stage_rank = {f"stage:{s.stage}": i for i, s in enumerate(report.stages)}

    def key(r: RecoveryFigure) -> tuple:
        if r.track == "all":
            return (0, 0, "", r.currency)
        if r.track.startswith("stage:"):
            return (1, stage_rank.get(r.track, len(stage_rank)), r.track, r.currency)
        if r.track.startswith("agency:"):
            return (2, 0, r.track, r.currency)
        return (3, 0, r.track, r.currency)

    return sorted(report.recovery, key=key)


def _recovery_table(report: KpiReport) -> _Table:
    rows = [
        [_track(r.track), r.currency, _count(r.cases), _money(r.entered_minor, r.currency),
         _money(r.recovered_minor, r.currency), _pct(r.rate)]
        for r in _recovery_order(report)
    ]
    return _Table(
        "Recovery",
        ["Track", "Currency", "Cases", "Entered collections", "Recovered", "Recovery rate"],
        rows,
        numeric={2, 3, 4, 5},
        caption=_definition(report, "recovery"),
    )


def _arm_table(report: KpiReport) -> _Table:
    rows = [
        ["\n".join(filter(None, [a.arm, a.experiment_id])), a.treatment or _DASH, _count(a.cases), _rate_ci(a.cured),
         _rate(a.promise_kept), _moneys(a.recovered_minor), _moneys(a.cost_minor), _moneys(a.cost_per_cure_minor)]
        for a in report.arms
    ]
    return _Table(
        "Strategy arms",
        ["Arm\nexperiment", "Treatment", "Cases", "Cure rate [95%]", "Promises kept",
         "Recovered", "Cost", "Cost per cure"],
        rows,
        numeric={2, 3, 4, 5, 6, 7},
        caption=_definition(report, "arms"),
        wide={1},
    )


def _p_value(p: float | None) -> str:
    if p is None:
        return _DASH
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _comparison_table(report: KpiReport) -> _Table:
    rows = [
        [c.experiment_id, c.champion, c.challenger,
         f"{_points(c.difference)} {_points_interval(c)}".strip(), _p_value(c.p_value)]
        for c in report.comparisons
    ]
    return _Table(
        "Champion / challenger (verdicts below)",
        ["Experiment", "Champion", "Challenger", "Cure rate difference [95%]", "p-value"],
        rows,
        numeric={3, 4},
        caption=_definition(report, "comparisons"),
    )


def _points_interval(c: ArmComparison) -> str:
    if c.low is None or c.high is None:
        return ""
    return f"[{c.low * 100:+.1f}, {c.high * 100:+.1f}]"


def _kpi_tables(report: KpiReport) -> list[_Table]:
    return [
        _headline_table(report),
        _roll_rate_table(report),
        _bucket_cure_table(report),
        _stage_table(report),
        _promise_table(report),
        _channel_table(report),
        _recovery_table(report),
        _arm_table(report),
        _comparison_table(report),
    ]


def _currencies(runs: Iterable[WhatIfRun], attr: str) -> list[str]:
    return sorted({cur for run in runs for cur in getattr(run, attr)})


@dataclass
class _Metric:
    """One what-if figure across the runs: a count (``currency`` ``None``) or an amount of money
    in minor units of ``currency`` (``None`` where a run has no amount in that currency)."""

    label: str
    short: str  # the chart's label
    values: list[int | None]
    currency: str | None = None


def _whatif_metrics(runs: Sequence[WhatIfRun]) -> list[_Metric]:
    def counts(label: str, short: str, get: Callable[[WhatIfRun], int]) -> _Metric:
        return _Metric(label, short, [get(r) for r in runs])

    def amounts(label: str, short: str, attr: str) -> list[_Metric]:
        return [_Metric(f"{label} ({cur})", f"{short} {cur}", [getattr(r, attr).get(cur) for r in runs], cur)
                for cur in _currencies(runs, attr)]

    return [
        counts("Cases", "cases", lambda r: r.cases),
        counts("Cures", "cures", lambda r: r.cures),
        *amounts("Amount recovered", "recovered", "recovered_minor"),
        counts("Messages (SMS, email)", "messages", lambda r: r.messages),
        counts("Letters", "letters", lambda r: r.letters),
        counts("Agent tasks", "agent tasks", lambda r: r.agent_tasks),
        counts("Hand-offs", "hand-offs", lambda r: r.hand_offs),
        *amounts("Cost", "cost", "cost_minor"),
    ]


def _whatif_table(whatif: WhatIf, *, definition: bool = True) -> _Table:
    """Rows: the policies' figures (cure rate after cures); a column per policy, then one
    difference column per policy after the first (against the first)."""
    title = "What-if: policies side by side"
    runs = whatif.runs
    if not runs:
        return _Table(title, ["Figure"], caption=_DEFINITIONS["whatif"] if definition else "")
    base, others = runs[0], runs[1:]
    rows = []
    for metric in _whatif_metrics(runs):
        first = metric.values[0]
        if metric.currency is None:
            cells = [_count(v) for v in metric.values]
            diffs = [_count_diff(v or 0, first or 0) for v in metric.values[1:]]
        else:
            cells = [_DASH if v is None else _money(v, metric.currency) for v in metric.values]
            diffs = [_money_diff(v, first, metric.currency) for v in metric.values[1:]]
        rows.append([metric.label, *cells, *diffs])
        if metric.short == "cures":
            rates = [r.cures / r.cases if r.cases else None for r in runs]
            rows.append(["Cure rate", *[_pct(v) for v in rates], *[_rate_diff(v, rates[0]) for v in rates[1:]]])
    headers = ["Figure", *[r.policy_version for r in runs], *[f"Δ {r.policy_version} vs {base.policy_version}" for r in others]]
    loans = f"Loans replayed: {', '.join(f'{n:,}' for n in sorted({r.loans for r in runs}))}."
    caption = f"{_DEFINITIONS['whatif']} {loans}" if definition else loans
    return _Table(title, headers, rows, numeric=set(range(1, len(headers))), caption=caption)


def _count_diff(value: int, base: int) -> str:
    diff = value - base
    rel = f" ({diff / base:+.1%})" if base else ""
    return f"{diff:+,}{rel}"


def _money_diff(value: int | None, base: int | None, currency: str) -> str:
    if value is None and base is None:
        return _DASH
    diff = (value or 0) - (base or 0)
    rel = f" ({diff / base:+.1%})" if base else ""
    return f"{_money(diff, currency, signed=True)}{rel}"


def _rate_diff(value: float | None, base: float | None) -> str:
    return _DASH if value is None or base is None else _points(value - base)


# ---------------------------------------------------------------------------------------------
# Rich


def _rich_table(table: _Table):
    """``table`` as a Rich table; every cell is a ``Text``, so a name from the data is never read
    as console markup (``[red]``, ``[/]``)."""
    from rich.table import Table
    from rich.text import Text

    out = Table(
        title=Text(table.title, style="bold"),
        caption=Text(table.caption, style="dim") if table.caption else None,
        title_justify="left",
        caption_justify="left",
        header_style="bold cyan",
    )
    for i, header in enumerate(table.headers):
        longest = max([len(row[i]) for row in table.rows] + [len(header.split()[0]) if header else 1])
        out.add_column(
            Text(header),
            justify="right" if i in table.numeric else "left",
            overflow="fold",
            no_wrap=i not in table.wide,
            # On a narrow console (80 columns when piped) a column folds its text rather than
            # shrinking to nothing: a count or an amount stays readable.
            min_width=None if i in table.wide else min(longest, 12),
        )
    for row in table.rows or [[NO_DATA, *[""] * (len(table.headers) - 1)]]:
        out.add_row(*(Text(cell) for cell in row))
    return out


#: The narrowest a table is drawn: on a narrower console (80 columns when the output is piped) its
#: lines run longer instead of its columns shrinking until counts and amounts are cut.
MIN_TABLE_WIDTH = 150


@contextmanager
def _at_least(console: Console, width: int = MIN_TABLE_WIDTH) -> Iterator[None]:
    """Draw on ``console`` at least ``width`` columns wide while the block runs."""
    before = console.width
    console.width = max(before, width)
    try:
        yield
    finally:
        console.width = before


def print_kpis(report: KpiReport, console: Console) -> None:
    """Print ``report`` as Rich tables on ``console``: the headline figures with their
    definitions; the roll-rate matrix (each cell the share of its row as a percentage, with the
    count of loans); the cure rate out of each bucket; stages (cases, cure rate with its 95 %
    interval, median days to cure); promises; channels (attempts, delivered, right-party contact
    rate, cost per currency); recovery per track and currency; strategy arms (cure rate
    [low–high], cost per cure) and each champion/challenger comparison with its verdict sentence.
    Money is shown in major units with its currency (``1,234.56 CNY``)."""
    from rich.text import Text

    console.print(Text.assemble(
        ("Collection KPIs", "bold"),
        f"  {report.cases:,} cases · generated {_when(report.generated_at)} · {_filters(report.filters)}",
    ), highlight=False)
    with _at_least(console):
        for table in _kpi_tables(report):
            console.print()
            console.print(_rich_table(table))
    for c in report.comparisons:
        console.print(f"• {c.experiment_id}, {c.challenger} vs {c.champion}: {c.verdict}", markup=False, highlight=False)
    if report.definitions:
        console.print()
        console.print(_rich_table(_Table("Definitions", ["Term", "Definition"],
                                         [[_label(k), v] for k, v in report.definitions.items()], wide={1})))


def print_whatif(whatif: WhatIf, console: Console) -> None:
    """Print the policies of ``whatif`` side by side on ``console``: rows cases, cures, cure rate,
    amount recovered (per currency), messages, letters, agent tasks, hand-offs and cost (per
    currency); a column per policy (``policy_version``) and a difference column for each policy
    after the first, against the first (counts with their relative change, money in major units,
    the cure rate in percentage points)."""
    with _at_least(console, 60 + 45 * len(whatif.runs)):
        console.print(_rich_table(_whatif_table(whatif)))
    for run in whatif.runs:
        console.print(f"  {run.policy_version}: {run.policy_path}", markup=False, highlight=False, style="dim")


# ---------------------------------------------------------------------------------------------
# Charts: matplotlib (Agg canvas, no pyplot), saved as SVG and inlined

_PALETTE = ["#1f4e79", "#e07a1f", "#2a9d8f", "#b5384a", "#7d5ba6", "#8a6d3b", "#4d908e", "#5c6b7a"]
_ENTERED = "#d5dde6"
_RECOVERED = "#1f4e79"
#: One chart at a time: matplotlib's rc parameters are process-wide.
_RENDER_LOCK = threading.Lock()


def _chart_style() -> dict:
    from cycler import cycler

    return {
        "svg.fonttype": "none",  # text stays text: small, selectable, any script the browser has
        "svg.hashsalt": "kpi-report",  # the same figures give the same SVG
        "text.parse_math": False,  # a "$" in an arm or agency name is text, not mathtext
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "axes.labelsize": 9,
        "axes.labelcolor": "#374151",
        "axes.edgecolor": "#9ca3af",
        "axes.linewidth": 0.8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "axes.axisbelow": True,
        "grid.color": "#e5e7eb",
        "grid.linewidth": 0.8,
        "xtick.color": "#4b5563",
        "ytick.color": "#4b5563",
        "xtick.labelsize": 8.5,
        "ytick.labelsize": 8.5,
        "legend.frameon": False,
        "legend.fontsize": 8.5,
        "axes.prop_cycle": cycler(color=_PALETTE),
        "figure.facecolor": "white",
    }


def _new_figure(width: float, height: float) -> MplFigure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


_WIDTH = 10.0  # inches: 960 px at 96 dpi, the width of the page's text column


def _roll_rate_chart(report: KpiReport) -> MplFigure | None:
    """Heatmap rows (bucket at a month-end) × columns (bucket at the next), each cell the share
    of its row, annotated with the percentage and the count."""
    import numpy as np

    m = report.roll_rates
    if not m.rows or not m.columns or not any(any(row) for row in m.counts):
        return None
    data = np.full((len(m.rows), len(m.columns)), np.nan)
    for i, row in enumerate(m.rates[: len(m.rows)]):
        for j, value in enumerate(row[: len(m.columns)]):
            if value is not None:
                data[i, j] = value
    import matplotlib

    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#f3f4f6")
    fig = _new_figure(_WIDTH, 0.62 * len(m.rows) + 1.3)
    ax = fig.add_subplot()
    # A mesh, not imshow: each cell is a vector path (imshow would embed a bitmap).
    ax.pcolormesh(np.arange(len(m.columns) + 1) - 0.5, np.arange(len(m.rows) + 1) - 0.5, np.ma.masked_invalid(data),
                  cmap=cmap, vmin=0.0, vmax=1.0, edgecolors="white", linewidth=2)
    ax.set_xlim(-0.5, len(m.columns) - 0.5)
    ax.set_ylim(len(m.rows) - 0.5, -0.5)
    for i in range(len(m.rows)):
        for j in range(len(m.columns)):
            value = data[i, j]
            count = m.counts[i][j] if i < len(m.counts) and j < len(m.counts[i]) else 0
            text = _DASH if math.isnan(value) else f"{value * 100:.1f}%\n({count:,})"
            dark = not math.isnan(value) and value > 0.55
            ax.text(j, i, text, ha="center", va="center", fontsize=8.5,
                    color="white" if dark else "#1f2937", linespacing=1.25)
    ax.set_xticks(range(len(m.columns)), labels=m.columns)
    ax.set_yticks(range(len(m.rows)), labels=m.rows)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("bucket at the next month-end")
    ax.set_ylabel("bucket at month-end")
    ax.grid(False)
    ax.tick_params(which="both", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return fig


def _cure_curve_chart(report: KpiReport) -> MplFigure | None:
    """One line per arm: share of its cases cured (y, %) by day since opening (x)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import PercentFormatter

    curves = [c for c in report.cure_curves if c.days and c.cured_share]
    if not curves:
        return None
    fig = _new_figure(_WIDTH, 3.6)
    ax = fig.add_subplot()
    handles: list[Line2D] = []
    top = 0.0
    for i, curve in enumerate(curves):
        n = min(len(curve.days), len(curve.cured_share))
        days, share = curve.days[:n], curve.cured_share[:n]
        color = _PALETTE[i % len(_PALETTE)]
        (line,) = ax.plot(days, share, color=color, linewidth=2)
        handles.append(line)
        ax.annotate(f"{share[-1] * 100:.1f}%", (days[-1], share[-1]), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8.5, color=color)
        top = max(top, max(share))
    ax.set_xlabel("days since the case opened")
    ax.set_ylabel("cases cured")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylim(0, min(1.0, max(0.05, top * 1.15)))
    ax.set_xlim(0, max(c.days[-1] for c in curves) * 1.06 or 1)
    # Labels given explicitly: matplotlib would drop an arm whose name starts with "_".
    ax.legend(handles, [f"{c.arm} (n = {c.cases:,})" for c in curves], loc="upper left")
    return fig


def _recovery_chart(report: KpiReport, prefix: str) -> MplFigure | None:
    """Per currency, one horizontal bar per group (``stage:`` or ``agency:``): the amount that
    entered collections (light), the amount recovered over it (dark), labelled with the rate."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    rows = [r for r in _recovery_order(report) if r.track.startswith(prefix) and (r.entered_minor or r.recovered_minor)]
    if not rows:
        return None
    currencies = sorted({r.currency for r in rows})
    per_currency = {cur: [r for r in rows if r.currency == cur] for cur in currencies}
    if prefix == "agency:":  # largest placements first
        for group in per_currency.values():
            group.sort(key=lambda r: -r.entered_minor)
    rows_shown = {cur: max(2, len(per_currency[cur])) for cur in currencies}  # one bar is not a slab
    heights = [rows_shown[cur] + 1.6 for cur in currencies]  # a row per group, plus title and axis
    fig = _new_figure(_WIDTH, 0.34 * sum(heights) + 0.4)
    axes = fig.subplots(len(currencies), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, cur in zip(axes, currencies):
        group = per_currency[cur]
        labels = [r.track.partition(":")[2] for r in group]
        entered = [float(minor_to_decimal(r.entered_minor, cur)) for r in group]
        recovered = [float(minor_to_decimal(r.recovered_minor, cur)) for r in group]
        y = range(len(group))
        ax.barh(y, entered, height=0.72, color=_ENTERED)
        ax.barh(y, recovered, height=0.42, color=_RECOVERED)
        for yi, r, e, rec in zip(y, group, entered, recovered):
            ax.annotate(f"{_pct(r.rate)} of {e:,.0f}  ({r.cases:,} cases)", (max(e, rec), yi), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=8, color="#374151")
        ax.set_yticks(list(y), labels=labels)
        pad = (rows_shown[cur] - len(group)) / 2
        ax.set_ylim(len(group) - 0.5 + pad, -0.5 - pad)  # top to bottom
        ax.set_xlim(0, max(max(entered), max(recovered), 1) * 1.32)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        ax.grid(axis="y", visible=False)
        ax.set_title(f"{cur} (major units)")
        ax.tick_params(axis="y", length=0)
    fig.legend(handles=[Patch(color=_ENTERED), Patch(color=_RECOVERED)],
               labels=["entered collections", "recovered"], loc="outside upper right", ncols=2)
    return fig


def _whatif_chart(whatif: WhatIf | None) -> MplFigure | None:
    """Left: the counts of each policy (grouped bars, a colour per policy). Right, with two
    policies or more: each figure's change against the first policy, in % (money per currency)."""
    import numpy as np
    from matplotlib.patches import Patch
    from matplotlib.ticker import PercentFormatter

    if whatif is None or not whatif.runs:
        return None
    runs = whatif.runs
    metrics = _whatif_metrics(runs)
    colors = [_PALETTE[i % len(_PALETTE)] for i in range(len(runs))]
    fig = _new_figure(_WIDTH, 3.9)
    compare = len(runs) > 1
    axes = fig.subplots(1, 2 if compare else 1, squeeze=False, width_ratios=[1.35, 1.0] if compare else None)[0]

    counts = [m for m in metrics if m.currency is None]
    ax = axes[0]
    x = np.arange(len(counts))
    width = 0.8 / len(runs)
    for k in range(len(runs)):
        values = [float(m.values[k] or 0) for m in counts]
        rects = ax.bar(x - 0.4 + width * (k + 0.5), values, width=width * 0.9, color=colors[k])
        ax.bar_label(rects, labels=[f"{v:,.0f}" for v in values], fontsize=7, padding=2, color="#374151")
    ax.set_xticks(x, labels=[m.short for m in counts])
    ax.grid(axis="x", visible=False)
    ax.margins(y=0.12)
    ax.set_title("Cases and actions")

    if compare:
        ax = axes[1]
        y = np.arange(len(metrics))
        height = 0.8 / (len(runs) - 1)
        limit = 0.0
        for k in range(1, len(runs)):
            changes = [_change(m.values[k], m.values[0]) for m in metrics]
            drawn = [0.0 if c is None else c for c in changes]
            rects = ax.barh(y - 0.4 + height * (k - 0.5), drawn, height=height * 0.9, color=colors[k])
            ax.bar_label(rects, labels=[_DASH if c is None else f"{c * 100:+.1f}%" for c in changes],
                         fontsize=7, padding=3, color="#374151")
            limit = max([limit, *[abs(c) for c in drawn]])
        ax.axvline(0, color="#6b7280", linewidth=0.8)
        ax.set_yticks(y, labels=[m.short for m in metrics])
        ax.invert_yaxis()
        ax.set_xlim(-limit * 1.45 - 0.01, limit * 1.45 + 0.01)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.grid(axis="y", visible=False)
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        ax.set_title(f"Change against {runs[0].policy_version}")
    fig.legend(handles=[Patch(color=c) for c in colors], labels=[r.policy_version for r in runs],
               loc="outside upper right", ncols=min(len(runs), 4))
    return fig


def _change(value: int | None, base: int | None) -> float | None:
    """``value`` relative to ``base`` (``+0.073``: 7.3 % more), ``None`` without a base."""
    if not base:
        return None
    return ((value or 0) - base) / base


def _short(value: float) -> str:
    """``12.3k``, ``4.5M``: an axis or bar label (the table gives the exact amount)."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:,.0f}"


_TAG = re.compile(r"<[^>]+>")  # text content is escaped by matplotlib: no "<" or ">" in it
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'((?:xlink:)?href="#|url\(#)([^")]+)')
_FONT_FAMILY = re.compile(r"font-family:[^;\"]*;?\s*")


def _svg(fig: MplFigure, prefix: str) -> str:
    """``fig`` as an inline ``<svg>``: no XML prologue, DOCTYPE, metadata or global stylesheet,
    fonts left to the page, ids prefixed so several charts share one document."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    svg = re.sub(r"<style[^>]*>.*?</style>\s*", "", svg, flags=re.DOTALL)  # "*{...}" would style the page
    svg = re.sub(r"\n\s*", "\n", svg)  # matplotlib indents every element
    ids = {i for tag in _TAG.findall(svg) for i in _ID.findall(tag)}

    def tag(match: re.Match) -> str:
        text = _FONT_FAMILY.sub("", match.group(0))
        text = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
        return _REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}" if m.group(2) in ids else m.group(0), text)

    return _TAG.sub(tag, svg).replace("<svg ", '<svg role="img" ', 1)


def _chart(chart_id: str, title: str, caption: str, draw: Callable[[], MplFigure | None]) -> str:
    """``<figure id=chart_id>`` with the chart's SVG (or "no data yet") and its caption."""
    import matplotlib

    with _RENDER_LOCK, matplotlib.rc_context(_chart_style()), warnings.catch_warnings():
        # Glyphs DejaVu lacks (CJK names) are drawn by the browser: text is kept as text.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig = draw()
        body = _svg(fig, chart_id) if fig is not None else f'<div class="no-data">{_e(NO_DATA)}</div>'
    label = f'aria-label="{_e(title)}"'
    body = body.replace('<svg role="img" ', f'<svg role="img" {label} ', 1)
    return (
        f'<figure id="{chart_id}" class="chart">\n<div class="chart-title">{_e(title)}</div>\n{body}\n'
        f"<figcaption>{_e(caption)}</figcaption>\n</figure>"
    )


# ---------------------------------------------------------------------------------------------
# HTML


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cell(text: str, *, sub: bool = False) -> str:
    """A table cell's text, its lines broken (``sub``: the lines after the first muted)."""
    first, *rest = text.split("\n")
    if sub:
        return _e(first) + "".join(f'<br><span class="sub">{_e(line)}</span>' for line in rest)
    return "<br>".join(_e(line) for line in [first, *rest])


def _html_table(table: _Table, *, title: bool = True) -> str:
    if not table.rows:
        head = f"<h3>{_e(table.title)}</h3>\n" if title else ""
        return f'{head}<p class="no-data small">{_e(NO_DATA)}</p>'

    def cls(i: int) -> str:
        return ' class="num"' if i in table.numeric else (' class="wide"' if i in table.wide else "")

    head = "".join(f"<th{cls(i)} scope=\"col\">{_cell(h)}</th>" for i, h in enumerate(table.headers))
    body = "\n".join(
        "<tr>" + "".join(
            (f'<th scope="row">{_cell(c, sub=True)}</th>' if i == 0 else f"<td{cls(i)}>{_cell(c)}</td>") for i, c in enumerate(row)
        ) + "</tr>"
        for row in table.rows
    )
    caption = f"<caption>{_e(table.title)}</caption>" if title else ""
    note = f'<p class="note">{_e(table.caption)}</p>' if table.caption else ""
    return (f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody></table></div>{note}")


def _headline_html(report: KpiReport) -> str:
    if not report.headline:
        return f'<p class="no-data small">{_e(NO_DATA)}</p>'
    cards = "\n".join(
        f'<div class="card"><dt>{_e(f.name)}</dt><dd class="value">{_e(_figure_parts(f)[0])}'
        f' <span class="unit">{_e(_figure_parts(f)[1])}</span></dd>'
        f'<dd class="definition">{_e(f.definition)}</dd></div>'
        for f in report.headline
    )
    return f'<dl class="cards">\n{cards}\n</dl>'


def _verdicts_html(comparisons: Sequence[ArmComparison]) -> str:
    items = "\n".join(
        f'<li><span class="exp">{_e(c.experiment_id)}</span> <strong>{_e(c.challenger)}</strong> vs '
        f'<strong>{_e(c.champion)}</strong><span class="verdict">{_e(c.verdict)}</span></li>'
        for c in comparisons
    )
    return f'<ul class="verdicts">\n{items}\n</ul>' if items else ""


_CSS = """
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --accent: #1f4e79; --paper: #ffffff;
  --fonts: "Inter", "Segoe UI", system-ui, -apple-system, Roboto, "Helvetica Neue", Arial, "Noto Sans",
  "Liberation Sans", "DejaVu Sans", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif;
  /* The charts are laid out with DejaVu Sans (matplotlib's font); Verdana has its metrics. */
  --chart-fonts: "DejaVu Sans", Verdana, "Bitstream Vera Sans", "Segoe UI", Arial, "PingFang SC",
  "Microsoft YaHei", "Noto Sans CJK SC", sans-serif; }
* { box-sizing: border-box; }
html { font-size: 15px; -webkit-text-size-adjust: 100%; }
body { margin: 0; background: #f3f5f8; color: var(--ink); font-family: var(--fonts); line-height: 1.5;
  font-feature-settings: "tnum" 1; }
main { max-width: 1080px; margin: 24px auto; padding: 36px 48px 40px; background: var(--paper);
  border: 1px solid var(--line); border-radius: 10px; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 14px; margin-bottom: 8px; }
h1 { font-size: 1.9rem; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 1.3rem; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0; }
.meta b { color: var(--ink); font-weight: 600; }
nav { margin: 10px 0 0; font-size: .88rem; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 12px; margin: 12px 0 0; }
.card { border: 1px solid var(--line); border-left: 4px solid var(--accent); border-radius: 6px; padding: 10px 14px;
  margin: 0; break-inside: avoid; }
.card dt { font-size: .8rem; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.card dd { margin: 0; }
.card .value { font-size: 1.55rem; font-weight: 650; font-variant-numeric: tabular-nums; margin: 2px 0 4px;
  white-space: nowrap; }
.card .unit { font-size: .9rem; font-weight: 500; color: var(--muted); }
.card .definition { font-size: .82rem; color: var(--muted); line-height: 1.4; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .86rem; margin: 6px 0 2px; }
caption { text-align: left; font-weight: 600; padding: 4px 0 6px; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top;
  white-space: nowrap; }
thead th { white-space: normal; font-size: .75rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted);
  border-bottom: 2px solid #cbd5e1; vertical-align: bottom; }
tbody th { font-weight: 600; }
tbody th .sub { font-weight: 400; color: var(--muted); font-size: .8rem; }
tbody tr:nth-child(even) { background: #f9fafb; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.wide { white-space: normal; }
.note, figcaption { color: var(--muted); font-size: .84rem; margin: 6px 0 0; }
figure.chart { margin: 14px 0 22px; break-inside: avoid; }
.chart-title { font-weight: 600; margin-bottom: 4px; }
figure.chart svg { display: block; width: 100%; height: auto; }
figure.chart svg * { stroke-linejoin: round; stroke-linecap: butt; }
figure.chart svg text { font-family: var(--chart-fonts); }
figcaption { border-left: 3px solid var(--line); padding-left: 10px; }
.no-data { display: flex; align-items: center; justify-content: center; min-height: 140px; color: var(--muted);
  border: 1px dashed #cbd5e1; border-radius: 6px; background: #fafafa; font-style: italic; }
.no-data.small { min-height: 0; padding: 10px; justify-content: flex-start; }
.verdicts { list-style: none; padding: 0; margin: 10px 0 0; }
.verdicts li { border: 1px solid var(--line); border-left: 4px solid #e07a1f; border-radius: 6px; padding: 8px 12px;
  margin: 0 0 8px; break-inside: avoid; }
.verdicts .exp { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .85rem; color: var(--muted); }
.verdicts .verdict { display: block; margin-top: 2px; }
dl.definitions dt { font-weight: 600; margin-top: 8px; }
dl.definitions dd { margin: 0 0 0 0; color: var(--muted); }
footer { margin-top: 32px; padding-top: 10px; border-top: 1px solid var(--line); color: var(--muted); font-size: .8rem; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  html { font-size: 10pt; }
  table { font-size: 8pt; }
  th, td, .num { padding: 3px 4px; white-space: normal; }
  body { background: #fff; }
  main { max-width: none; margin: 0; padding: 0; border: 0; }
  nav { display: none; }
  h2 { break-after: avoid; }
  table, figure, .card, li { break-inside: avoid; }
  tbody tr:nth-child(even) { background: none; }
  .table-wrap { overflow: visible; }
}
"""


def render_html(report: KpiReport, whatif: WhatIf | None = None) -> str:
    """One self-contained HTML page of ``report`` (and the policies of ``whatif`` side by side
    when given): no scripts, external stylesheets, fonts or network requests; the charts are
    inline SVG drawn by matplotlib. Returns the page as a ``str`` (UTF-8 when written).

    Sections: the headline figures, each with its definition; the roll-rate heatmap
    (``<figure id="chart-roll-rates">``: rows the bucket at a month-end, columns the bucket at
    the next, cells the share of the row in % with the count) and the cure rate out of each
    bucket; stages; cure curves by arm (``chart-cure-curves``: share cured by day since opening);
    recovery by stage and by agency (``chart-recovery-stage``, ``chart-recovery-agency``: per
    currency, amounts in major units and the recovery rate) with the recovery table; promises;
    channels with their cost; the strategy arms with their 95 % intervals and each comparison's
    verdict; the what-if chart and table (``chart-whatif``) when ``whatif`` is given; and the
    report's definitions. Every chart ``<figure>`` has a ``<figcaption>`` with its definition; a
    chart with no data shows "no data yet" instead. Every string from the report is escaped.
    ``report.definitions`` entries ``cure_curves``, ``recovery``, ``stages``, ``promises``,
    ``channels``, ``arms``, ``comparisons`` replace the built-in captions of those sections."""
    sections = _sections(report, whatif)
    nav = " ".join(f'<a href="#{anchor}">{_e(heading)}</a>' for anchor, heading, _ in sections)
    body = "\n".join(
        f'<section id="{anchor}">\n<h2>{_e(heading)}</h2>\n{content}\n</section>' for anchor, heading, content in sections
    )
    title = f"Collection KPIs, {_when(report.generated_at)}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="collections_domain.analytics.report">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header>
<h1>Collection KPIs</h1>
<p class="meta"><b>{_e(f"{report.cases:,}")} cases</b> · {_e(_filters(report.filters))} ·
generated {_e(_when(report.generated_at))}</p>
<nav aria-label="Sections">{nav}</nav>
</header>
{body}
<footer>Money in major units of each currency, never added up across currencies. Rates with their
counts; intervals are 95 % (Wilson for rates). Generated {_e(_when(report.generated_at))}.</footer>
</main>
</body>
</html>
"""


def _sections(report: KpiReport, whatif: WhatIf | None) -> list[tuple[str, str, str]]:
    """The page's sections, in order: ``(anchor, heading, body HTML)``."""
    recovery_caption = f"{_definition(report, 'recovery')} {_RECOVERY_BARS}"
    sections: list[tuple[str, str, str]] = [  # (anchor, heading, body)
        ("headline", "Headline figures", _headline_html(report)),
        ("roll-rates", "Roll rates", "\n".join([
            _chart("chart-roll-rates", "Roll-rate matrix: share of each bucket's loans by bucket one month later",
                   f"{report.roll_rates.definition} {_months(report.roll_rates.months).capitalize()}.",
                   lambda: _roll_rate_chart(report)),
            _html_table(_bucket_cure_table(report)),
        ])),
        ("stages", "Ladder stages", _html_table(_stage_table(report), title=False)),
        ("cure-curves", "Cure curves by arm", _chart(
            "chart-cure-curves", "Share of cases cured by day since opening, by strategy arm",
            _definition(report, "cure_curves"), lambda: _cure_curve_chart(report))),
        ("recovery", "Recovery", "\n".join([
            _chart("chart-recovery-stage", "Recovery by ladder stage", recovery_caption,
                   lambda: _recovery_chart(report, "stage:")),
            _chart("chart-recovery-agency", "Recovery by collection agency", recovery_caption,
                   lambda: _recovery_chart(report, "agency:")),
            _html_table(_recovery_table(report), title=False),
        ])),
        ("promises", "Promises to pay", _html_table(_promise_table(report), title=False)),
        ("channels", "Channels", _html_table(_channel_table(report), title=False)),
        ("arms", "Strategy arms", "\n".join([
            _html_table(_arm_table(report), title=False),
            "<h3>Champion / challenger</h3>",
            _html_table(_comparison_table(report), title=False) if report.comparisons
            else f'<p class="no-data small">{_e(NO_DATA)}</p>',
            _verdicts_html(report.comparisons),
        ])),
    ]
    if whatif is not None:
        sections.append(("whatif", "What-if: policies side by side", "\n".join([
            _chart("chart-whatif", "The same loans under each policy", _DEFINITIONS["whatif"],
                   lambda: _whatif_chart(whatif)),
            _html_table(_whatif_table(whatif, definition=False), title=False),
            _policy_paths_html(whatif),
        ])))
    if report.definitions:
        items = "\n".join(f"<dt>{_e(_label(k))}</dt><dd>{_e(v)}</dd>" for k, v in report.definitions.items())
        sections.append(("definitions", "Definitions", f'<dl class="definitions">\n{items}\n</dl>'))
    return sections


def _policy_paths_html(whatif: WhatIf) -> str:
    if not whatif.runs:
        return ""
    items = "; ".join(f"{_e(r.policy_version)}: <code>{_e(r.policy_path)}</code>" for r in whatif.runs)
    return f'<p class="note">Policies: {items}.</p>'


def write_html(report: KpiReport, path: str | Path, whatif: WhatIf | None = None) -> Path:
    """Write :func:`render_html` of ``report`` (and ``whatif``) to ``path`` as UTF-8, creating
    its folder if needed; returns the path written."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(report, whatif), encoding="utf-8")
    return out
