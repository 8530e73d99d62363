"""The KPI report (``collections_domain.analytics.report``) from hand-built figures: the HTML page
is self-contained, has every chart as inline SVG, escapes what it is given and copes with an empty
portfolio; the Rich tables print the key numbers. ``realistic_report`` and ``realistic_whatif``
are also what ``tests/e2e/report_html_test.py`` renders in Chromium and screenshots."""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import UTC, date, datetime

import pytest
from rich.console import Console

from collections_domain.analytics.figures import (
    ArmComparison,
    ArmFigure,
    ChannelFigure,
    CureCurve,
    Figure,
    Filters,
    KpiReport,
    Rate,
    RecoveryFigure,
    RollRateMatrix,
    StageFigure,
    WhatIf,
    WhatIfRun,
)
from collections_domain.analytics.report import (
    CHART_IDS,
    NO_DATA,
    print_kpis,
    print_whatif,
    render_html,
    write_html,
)

BUCKETS = ["1-2", "3-6", "7-29", "30+"]
COLUMNS = ["current", *BUCKETS, "closed"]
#: Loans in each row bucket at a month-end by their column one month later, six months summed.
ROLL_COUNTS = [
    [412, 21, 18, 35, 64, 3],
    [188, 9, 7, 22, 96, 4],
    [121, 5, 4, 14, 183, 9],
    [37, 2, 1, 6, 301, 48],
]
SCRIPT = "<script>alert(1)</script>"


def wilson(k: int, n: int, z: float = 1.96) -> Rate:
    """``k / n`` with its Wilson interval (the figures' own ``stats.wilson``, recomputed here)."""
    if n == 0:
        return Rate(numerator=k, denominator=n, value=None)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Rate(numerator=k, denominator=n, value=p, low=max(0.0, centre - half), high=min(1.0, centre + half))


def curve(arm: str, cases: int, plateau: float, days_to_half: float, horizon: int = 90) -> CureCurve:
    days = list(range(horizon + 1))
    return CureCurve(arm=arm, cases=cases, days=days,
                     cured_share=[round(plateau * (1 - 0.5 ** (d / days_to_half)), 4) for d in days])


def comparison(experiment: str, champion: str, challenger: str, a: tuple[int, int], b: tuple[int, int]) -> ArmComparison:
    """The two-proportion z-test between champion ``a`` and challenger ``b`` (cured, cases)."""
    pa, pb = a[0] / a[1], b[0] / b[1]
    diff = pb - pa
    se = math.sqrt(pa * (1 - pa) / a[1] + pb * (1 - pb) / b[1])
    pooled = (a[0] + b[0]) / (a[1] + b[1])
    z = diff / math.sqrt(pooled * (1 - pooled) * (1 / a[1] + 1 / b[1]))
    p = math.erfc(abs(z) / math.sqrt(2))
    verdict = (f"{challenger} cures {diff * 100:.1f} points more of its cases than {champion} "
               f"(p = {p:.3f}): the data so far supports the challenger.")
    return ArmComparison(experiment_id=experiment, champion=champion, challenger=challenger, difference=diff,
                         low=diff - 1.96 * se, high=diff + 1.96 * se, p_value=p, verdict=verdict)


def realistic_report(*, challenger: str = "call-first", agency: str = "Northbridge Collections") -> KpiReport:
    """About six months of a 650-case portfolio in CNY and USD: 4 buckets, 2 arms, 2 agencies."""
    rates = [[c / sum(row) for c in row] for row in ROLL_COUNTS]
    roll = RollRateMatrix(
        definition="Share of the loans in a bucket at one month-end that are in each bucket at the next "
        "(current: cured; closed: written off or out of the book).",
        months=["2025-09", "2025-10", "2025-11", "2025-12", "2026-01"],
        rows=BUCKETS, columns=COLUMNS, counts=ROLL_COUNTS, rates=rates,
        cure_rate_by_bucket={b: wilson(row[0], sum(row)) for b, row in zip(BUCKETS, ROLL_COUNTS)},
    )
    arms = [
        ArmFigure(arm="sms-first", experiment_id="exp-early-contact", treatment="SMS day 1, agent call day 3",
                  cases=328, cured=wilson(197, 328), promise_kept=wilson(58, 82),
                  recovered_minor={"CNY": 131_004_500, "USD": 15_230_000},
                  cost_minor={"CNY": 1_452_000, "USD": 31_000},
                  cost_per_cure_minor={"CNY": 8_850, "USD": 1_020}),
        ArmFigure(arm=challenger, experiment_id="exp-early-contact", treatment="Agent call day 1, SMS day 2",
                  cases=322, cured=wilson(219, 322), promise_kept=wilson(77, 96),
                  recovered_minor={"CNY": 142_870_100, "USD": 16_012_500},
                  cost_minor={"CNY": 2_388_000, "USD": 52_500},
                  cost_per_cure_minor={"CNY": 13_120, "USD": 1_560}),
    ]
    recovery = []
    for track, cases, cny, usd in [
        ("all", 650, (412_345_600, 273_874_600), (58_230_000, 31_242_500)),
        ("stage:identified", 58, (18_120_000, 16_002_300), (2_410_000, 2_130_000)),
        ("stage:initial", 402, (201_330_000, 160_870_400), (30_120_000, 21_900_000)),
        ("stage:deep", 131, (112_400_000, 71_300_900), (16_700_000, 6_290_000)),
        ("stage:agency", 37, (52_495_600, 21_401_000), (7_100_000, 832_500)),
        ("stage:legal", 22, (28_000_000, 4_300_000), (1_900_000, 90_000)),
        ("agency:Huaxia Recovery Services", 21, (31_200_000, 13_900_000), (0, 0)),
        (f"agency:{agency}", 16, (21_295_600, 7_501_000), (7_100_000, 832_500)),
        ("legal", 22, (28_000_000, 4_300_000), (1_900_000, 90_000)),
    ]:
        for currency, (entered, recovered), share in (("CNY", cny, 0.82), ("USD", usd, 0.18)):
            if entered:
                recovery.append(RecoveryFigure(track=track, currency=currency, cases=round(cases * share),
                                               entered_minor=entered, recovered_minor=recovered,
                                               rate=recovered / entered))
    return KpiReport(
        generated_at=datetime(2026, 3, 2, 6, 30, tzinfo=UTC),
        filters=Filters(opened_from=date(2025, 9, 1), opened_to=date(2026, 2, 28)),
        cases=650,
        headline=[
            Figure(name="Cases", value=650, unit="cases", definition="Collection cases opened in the period."),
            Figure(name="Cure rate", value=416 / 650, unit="share",
                   definition="Cases whose overdue amount was fully paid, the loan current again, over cases opened."),
            Figure(name="Median days to cure", value=6.5, unit="days",
                   definition="Median days from opening to cure, of the cured cases."),
            Figure(name="Roll rate 1-2 to 30+", value=64 / 553, unit="share",
                   definition="Loans at DPD 1-2 at a month-end that are at DPD 30+ at the next."),
            Figure(name="Recovered (CNY)", value=273_874_600, unit="minor units CNY",
                   definition="Payments received on cases in CNY since they opened."),
            Figure(name="Recovered (USD)", value=31_242_500, unit="minor units USD",
                   definition="Payments received on cases in USD since they opened."),
            Figure(name="Promises kept", value=135 / 178, unit="share",
                   definition="Promises to pay kept, over promises kept or broken."),
            Figure(name="Right-party contact rate", value=512 / 920, unit="share",
                   definition="Agent tasks that reached the borrower, over agent tasks."),
        ],
        roll_rates=roll,
        stages=[
            StageFigure(stage="identified", cases=58, cured=wilson(31, 58), median_days_to_cure=1.0),
            StageFigure(stage="initial", cases=402, cured=wilson(296, 402), median_days_to_cure=4.5),
            StageFigure(stage="deep", cases=131, cured=wilson(77, 131), median_days_to_cure=17.0),
            StageFigure(stage="agency", cases=37, cured=wilson(9, 37), median_days_to_cure=52.0),
            StageFigure(stage="legal", cases=22, cured=wilson(3, 22), median_days_to_cure=71.5),
        ],
        cure_curves=[curve("sms-first", 328, 0.64, 6.0), curve(challenger, 322, 0.71, 4.5)],
        promises={"kept": wilson(135, 178), "made_per_case": wilson(196, 650)},
        channels=[
            ChannelFigure(channel="sms", attempts=1840, delivered=1779, right_party_contact=None,
                          cost_minor={"CNY": 7_820, "USD": 1_900}),
            ChannelFigure(channel="email", attempts=1210, delivered=1163, right_party_contact=None,
                          cost_minor={"CNY": 990, "USD": 220}),
            ChannelFigure(channel="agent_task", attempts=920, delivered=920, right_party_contact=wilson(512, 920),
                          cost_minor={"CNY": 2_286_000, "USD": 64_000}),
            ChannelFigure(channel="letter", attempts=141, delivered=138, right_party_contact=None,
                          cost_minor={"CNY": 169_200, "USD": 12_500}),
            ChannelFigure(channel="agency", attempts=37, delivered=37, right_party_contact=None, cost_minor={}),
            ChannelFigure(channel="legal", attempts=22, delivered=22, right_party_contact=None,
                          cost_minor={"CNY": 440_000, "USD": 30_000}),
        ],
        recovery=recovery,
        arms=arms,
        comparisons=[comparison("exp-early-contact", "sms-first", challenger, (197, 328), (219, 322))],
        definitions={
            "dpd": "Days past due: local calendar days since the oldest unpaid due date.",
            "cure": "The overdue amount is fully paid and the loan is current again.",
            "roll": "A loan moves to a worse DPD bucket.",
        },
    )


def realistic_whatif() -> WhatIf:
    """The default policy against one that calls on day 1, on the same 2,445 loans."""
    return WhatIf(runs=[
        WhatIfRun(policy_version="v3", policy_path="collections_domain/rules/policies/default.toml", loans=2445,
                  cases=1612, cures=1032, recovered_minor={"CNY": 986_120_400, "USD": 102_330_000},
                  messages=5120, letters=388, agent_tasks=2410, hand_offs=141,
                  cost_minor={"CNY": 9_874_000, "USD": 412_000}),
        WhatIfRun(policy_version="v4-early-call", policy_path="policies/early_call.toml", loans=2445,
                  cases=1612, cures=1107, recovered_minor={"CNY": 1_021_994_800, "USD": 106_120_000},
                  messages=4380, letters=351, agent_tasks=3390, hand_offs=118,
                  cost_minor={"CNY": 13_410_000, "USD": 561_000}),
    ])


def empty_report(*, buckets: bool = True) -> KpiReport:
    """A portfolio with no cases yet (``buckets``: with the policy's buckets and zero counts)."""
    rows = BUCKETS if buckets else []
    columns = COLUMNS if buckets else []
    return KpiReport(
        generated_at=datetime(2026, 3, 2, 6, 30, tzinfo=UTC),
        filters=Filters(),
        cases=0,
        headline=[Figure(name="Cure rate", value=None, unit="share", definition="Cured over opened.")] if buckets else [],
        roll_rates=RollRateMatrix(
            definition="Month-on-month transitions.", months=[], rows=rows, columns=columns,
            counts=[[0] * len(columns) for _ in rows], rates=[[None] * len(columns) for _ in rows],
            cure_rate_by_bucket={b: wilson(0, 0) for b in rows},
        ),
        stages=[], cure_curves=[], promises={}, channels=[], recovery=[], arms=[], comparisons=[],
    )


def chart(page: str, chart_id: str) -> str:
    """The ``<figure id=chart_id>`` element of ``page``."""
    match = re.search(rf'<figure id="{chart_id}"[^>]*>.*?</figure>', page, flags=re.DOTALL)
    assert match, f"no <figure id={chart_id!r}>"
    return match.group(0)


def recorded(print_fn, *args) -> str:
    console = Console(record=True, width=160)
    print_fn(*args, console)
    return console.export_text()


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(realistic_report(), realistic_whatif())


def test_the_page_is_self_contained(page):
    lower = page.lower()
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", lower)
    assert "<script" not in lower and "<link" not in lower and "@import" not in lower
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", lower)
    assert "<iframe" not in lower and "<img" not in lower


def test_the_page_is_small_and_free_of_matplotlib_metadata(page):
    assert len(page.encode()) < 300_000
    assert "<metadata" not in page and "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert "matplotlib.org" not in page


def test_every_chart_is_inline_svg_with_its_definition(page):
    for chart_id in CHART_IDS:
        element = chart(page, chart_id)
        assert "<svg" in element and "</svg>" in element, chart_id
        assert "<figcaption>" in element and NO_DATA not in element, chart_id
    assert "Share of the loans in a bucket at one month-end" in chart(page, "chart-roll-rates")
    assert "74.5%" in chart(page, "chart-roll-rates")  # 412 / 553 annotated on the heatmap
    assert "sms-first (n = 328)" in chart(page, "chart-cure-curves")


def test_ids_are_unique_across_the_inlined_charts(page):
    ids = Counter(re.findall(r'\bid="([^"]+)"', page))
    assert [i for i, n in ids.items() if n > 1] == []
    referenced = re.findall(r'(?:href="#|url\(#)([^")]+)', page)
    assert referenced and set(referenced) <= set(ids)


def test_the_page_shows_the_figures_with_their_definitions(page):
    assert "Recovered (CNY)" in page and "2,738,746.00 CNY" in page
    assert "Cases whose overdue amount was fully paid" in page
    assert "call-first cures 8.0 points more" in page
    assert "60.1% [54.7–65.2%]" in page  # sms-first 197 / 328 with its Wilson interval
    assert "Huaxia Recovery Services" in page and "v4-early-call" in page


def test_every_string_from_the_report_is_escaped():
    report = realistic_report(challenger=SCRIPT, agency='Acme & Sons "<b>bold</b>"')
    page = render_html(report, WhatIf(runs=[realistic_whatif().runs[0].model_copy(update={"policy_version": SCRIPT})]))
    assert SCRIPT not in page and "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "Acme &amp; Sons" in page
    assert "<svg" in chart(page, "chart-cure-curves")  # the name is drawn as text in the legend too


@pytest.mark.parametrize("buckets", [True, False], ids=["zero-counts", "no-buckets"])
def test_an_empty_portfolio_renders_no_data_in_place_of_each_chart(buckets):
    page = render_html(empty_report(buckets=buckets), WhatIf(runs=[]))
    for chart_id in CHART_IDS:
        element = chart(page, chart_id)
        assert NO_DATA in element and "<svg" not in element, chart_id
        assert "<figcaption>" in element


def test_write_html_writes_the_page(tmp_path):
    path = write_html(realistic_report(), tmp_path / "out" / "kpi.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and 'id="chart-whatif"' not in text


def test_print_kpis_prints_the_key_numbers():
    text = recorded(print_kpis, realistic_report())
    for expected in [
        "650 cases",
        "64.0%",  # the cure rate headline, 416 / 650
        "6.5 days",
        "2,738,746.00 CNY",
        "312,425.00 USD",
        "74.5% (412)",  # roll 1-2 -> current
        "11.6% (64)",  # roll 1-2 -> 30+
        "74.5%",  # cure rate out of 1-2 ...
        "412/553",  # ... with its counts
        "73.6%",  # initial stage cure rate 296 / 402
        "71.5",  # legal: median days to cure
        "75.8%",  # promises kept 135 / 178
        "55.7% (512/920)",  # agent-task right-party contacts
        "22,860.00 CNY",  # agent-task cost
        "Stage: deep",
        "Agency: Huaxia Recovery Services",
        "60.1% [54.7–65.2%]",
        "131.20 CNY",  # call-first cost per cure
        "+8.0 pp",
    ]:
        assert expected in text, expected
    assert "the data so far supports the challenger" in flat(text)
    assert "Cases whose overdue amount was fully paid, the loan current again" in flat(text)


def test_money_is_shown_in_the_currency_exponent():
    report = realistic_report()
    report.recovery.append(RecoveryFigure(track="all", currency="JPY", cases=3, entered_minor=1_234_567,
                                          recovered_minor=1_234, rate=1_234 / 1_234_567))
    text = recorded(print_kpis, report)
    assert "1,234,567 JPY" in text and "1,234 JPY" in text and "1,234.00 JPY" not in text


def test_print_kpis_copes_with_an_empty_portfolio():
    text = recorded(print_kpis, empty_report())
    assert "0 cases" in text and NO_DATA in text


def test_print_whatif_puts_policies_side_by_side_with_the_difference():
    text = recorded(print_whatif, realistic_whatif())
    for expected in ["v3", "v4-early-call", "Δ v4-early-call vs v3", "1,032", "1,107", "+75 (+7.3%)",
                     "9,861,204.00 CNY", "+358,744.00 CNY", "Hand-offs", "-23 (-16.3%)", "+35,360.00 CNY",
                     "Agent tasks", "+980"]:
        assert expected in text, expected


def test_a_single_policy_what_if_has_no_difference_column_and_still_draws():
    whatif = WhatIf(runs=realistic_whatif().runs[:1])
    page = render_html(empty_report(), whatif)
    assert "<svg" in chart(page, "chart-whatif") and "Δ" not in page
    assert "Δ" not in recorded(print_whatif, whatif)


def test_names_in_any_script_stay_text_in_the_charts():
    page = render_html(realistic_report(agency="华夏催收服务有限公司"))
    assert "华夏催收服务有限公司" in chart(page, "chart-recovery-agency")


def test_names_are_never_read_as_console_markup():
    report = realistic_report(challenger="[/bold] [red]call-first")
    report.filters.segment = "[/]"
    text = recorded(print_kpis, report)
    assert "[/bold] [red]call-first" in text and "segment [/]" in text


def test_a_name_that_looks_like_svg_markup_is_drawn_as_it_is():
    page = render_html(realistic_report(challenger='id="x" font-family: serif; url(#x)'))
    assert 'id="x" font-family: serif; url(#x) (n = 322)' in chart(page, "chart-cure-curves").replace("&quot;", '"')
