"""The KPI report's HTML page in a real browser: headless Chromium (Debian's ``/usr/bin/chromium``
driven by Playwright, no browser download) opens the file written by ``report.write_html`` from
the hand-built report of ``tests/analytics/report_test.py``; every chart's ``<figure>`` is visible
with a non-zero size and its SVG drew marks, the page logs no error and asks for nothing but
itself. Skipped without Chromium, unless ``CI_REQUIRE_CHROMIUM`` is set (then it fails).

The screenshots in ``docs/reports/`` are taken by this test (full page, then one per chart):

    REPORT_SCREENSHOT_DIR=docs/reports .venv/bin/pytest -q tests/e2e/report_html_test.py

``REPORT_SCREENSHOT_FROM=<report.html>`` takes them of another report instead (the README's
pictures come from the what-if replay of 800 real loans: ``simulate --policy A --policy B --html``),
checking that its charts are drawn but not the hand-built report's counts.
"""

from __future__ import annotations

import os
from pathlib import Path

from collections_domain.analytics.report import CHART_IDS, write_html
from tests.analytics.report_test import realistic_report, realistic_whatif
from tests.e2e.ui_console_test import CHROMIUM_ARGS, require_browser

VIEWPORT = {"width": 1280, "height": 900}
#: The SVG shapes a chart drew, less its ticks (an axes alone is its background and 2-4 spines).
DRAWN_MARKS = """svg => [...svg.querySelectorAll('path, rect, use, polyline, polygon')]
    .filter(el => !el.closest('defs') && !el.closest('[id*="tick_"]')).length"""
#: Fewer than this many marks and the chart did not draw its data.
MIN_MARKS = {
    "chart-roll-rates": 24,  # 4 × 6 cells
    "chart-cure-curves": 6,  # 2 lines and their legend's 2
    "chart-recovery-stage": 20,  # 2 currencies × 5 stages × 2 bars
    "chart-recovery-agency": 6,  # 3 agency/currency pairs × 2 bars
    "chart-whatif": 24,  # (6 counts + 2 × 2 amounts) × 2 policies
}
#: Screenshot file of each chart (``kpi-report.png`` is the whole page).
SHOTS = {
    "chart-roll-rates": "roll-rates.png",
    "chart-cure-curves": "cure-curves.png",
    "chart-recovery-stage": "recovery-stage.png",
    "chart-recovery-agency": "recovery-agency.png",
    "chart-whatif": "whatif.png",
}


async def test_the_kpi_report_draws_every_chart_in_chromium(tmp_path):
    chromium = require_browser()
    from playwright.async_api import async_playwright, expect

    source = os.environ.get("REPORT_SCREENSHOT_FROM")
    page_path = (Path(source).resolve() if source else
                 write_html(realistic_report(), tmp_path / "kpi-report.html", whatif=realistic_whatif()))
    url = page_path.as_uri()
    shots = os.environ.get("REPORT_SCREENSHOT_DIR")
    requests: list[str] = []
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport=VIEWPORT)
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(url, wait_until="load")

            for chart_id in CHART_IDS:
                figure = page.locator(f"figure#{chart_id}")
                await expect(figure).to_be_visible()
                svg = figure.locator("svg")
                await expect(svg).to_have_count(1)
                for element in (figure, svg):
                    box = await element.bounding_box()
                    assert box and box["width"] > 300 and box["height"] > 100, (chart_id, box)
                marks = await svg.evaluate(DRAWN_MARKS)
                assert marks > (1 if source else MIN_MARKS[chart_id]), (chart_id, marks)
                await expect(figure.locator("figcaption")).not_to_be_empty()
            if not source:
                await expect(page.locator("#arms .verdicts li")).to_have_count(1)

            if shots:
                folder = Path(shots)
                folder.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(folder / "kpi-report.png"), full_page=True)
                for chart_id, name in SHOTS.items():
                    await page.locator(f"figure#{chart_id}").screenshot(path=str(folder / name))
        finally:
            await browser.close()

    assert requests == [url], f"the page asked for more than itself: {requests}"
    assert errors == [], errors
