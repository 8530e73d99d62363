"""The engineers' command line as a user runs it: ``worker.py`` and ``starter.py`` as real
processes against the real dev server, with the README's commands and bad input."""

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio

from collections_domain.rules import calendar
from collections_domain.store.db import make_engine
from tests.e2e.conftest import zone_in_contact_window
from tests.helpers import seed_borrower
from tests.databases import fresh_database_url
from tests.keys import TEST_PAYLOAD_KEYS

ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(loop_scope="session")
async def cli_env(local_env, tmp_path):
    """Environment variables for the processes, and a worker process on its own task queue."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": local_env.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": f"cli-{uuid.uuid4().hex[:8]}",
        "DATABASE_URL": fresh_database_url(tmp_path, "cli"),
        "DATA_DIR": str(tmp_path),
        "PAYLOAD_KEYS": TEST_PAYLOAD_KEYS,  # the same ring as the tests' own clients
    }
    engine = make_engine(env["DATABASE_URL"])
    seed_borrower(engine, "B-cli", locale="en")
    engine.dispose()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "worker.py"), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield env
    finally:
        worker.terminate()
        await worker.wait()


async def starter(env, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "starter.py"), *args, env={**env, "COLUMNS": "200"}, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode, output.decode()


async def status_json(env, loan_id: str) -> dict:
    for _ in range(40):
        code, out = await starter(env, "status", loan_id, "--json")
        if code == 0:
            return json.loads(out)
        await asyncio.sleep(0.5)
    raise AssertionError(out)


async def test_a_case_driven_from_the_command_line(cli_env):
    tz = zone_in_contact_window()
    today = calendar.local_date(datetime.now(UTC), tz)
    loan = f"L-{uuid.uuid4().hex[:8]}"
    opening = [
        "start-case", "--loan-id", loan, "--borrower-id", "B-cli", "--portfolio", "no-accrual", "--principal-due-minor", "250000",
        "--oldest-due-date", (today - timedelta(days=5)).isoformat(), "--timezone", tz,
    ]
    code, out = await starter(cli_env, *opening)
    assert code == 0 and "Case open" in out, out
    code, out = await starter(cli_env, *opening)
    assert code == 0 and "already running" in out and "differ" not in out, out
    changed = [value if value != "250000" else "260000" for value in opening]
    code, out = await starter(cli_env, *changed)
    assert code == 0 and "already running" in out and "principal_due_minor: running 250000, given 260000" in out, out

    code, out = await starter(cli_env, "promise", loan, "100000", (today + timedelta(days=2)).isoformat(), "--promise-id", "ptp-cli")
    assert code == 0, out
    code, out = await starter(cli_env, "pay", loan, "100000", "--payment-id", "pay-cli-1")
    assert code == 0 and "CNY" in out, out
    code, out = await starter(cli_env, "pay", "--", loan, "-5")  # refused as the API refuses it (issue 12)
    assert code == 2 and "AMOUNT_MINOR: Input should be greater than or equal to 1" in out, out
    code, out = await starter(cli_env, "pay", loan, "100000", "--payment-id", "pay-cli-1")
    assert code == 0, out

    st = await status_json(cli_env, loan)
    for _ in range(20):
        if len(st["rejected_signals"]) == 1:
            break
        await asyncio.sleep(0.5)
        st = await status_json(cli_env, loan)
    assert st["paid_minor"] == 100_000 and st["promises_kept"] == 1 and st["stage"] == "initial"
    assert [r["reason"].split(":")[0] for r in st["rejected_signals"]] == ["payment_id"]

    code, out = await starter(cli_env, "pay", f"collection-{loan}", "150000")
    assert code == 0, out
    for _ in range(20):
        st = await status_json(cli_env, loan)
        if st["outcome"]:
            break
        await asyncio.sleep(0.5)
    assert st["outcome"] == "cured" and st["outstanding_minor"] == 0
    code, out = await starter(cli_env, "status", loan)
    assert code == 0 and "cured" in out
    code, out = await starter(cli_env, "history", loan, "--limit", "0")
    assert code == 0 and "workflow execution started" in out and "workflow tasks hidden" in out, out
    assert "payment_received" in out and "promise_to_pay" in out and "workflow execution completed" in out
    assert "send_sms: DPD 5" in out or "SMS" in out, out
    code, out = await starter(cli_env, "history", "no-such-loan")
    assert code != 0 and "no-such-loan" in out, out


async def test_a_payment_with_no_running_case_is_held(cli_env):
    loan = f"L-none-{uuid.uuid4().hex[:6]}"
    code, out = await starter(cli_env, "pay", loan, "5000")
    assert code != 0 and "--currency" in out, out
    code, out = await starter(cli_env, "pay", loan, "5000", "--currency", "CNY", "--payment-id", "gw-77")
    assert code == 0 and "is held for reconciliation" in out, out
    code, out = await starter(cli_env, "pay", loan, "5000", "--currency", "CNY", "--payment-id", "gw-77")
    assert code == 0 and "was already held" in out, out
    code, out = await starter(cli_env, "pay", loan, "6000", "--currency", "CNY", "--payment-id", "gw-77")
    assert code == 2 and "--payment-id: payment gw-77 is already held" in out, out


async def test_api_keys_from_the_command_line(cli_env):
    code, out = await starter(cli_env, "api-key", "create", "--name", "gateway", "--scopes", "read,write")
    assert code == 0 and "shown this once" in out.lower(), out
    key = next(line for line in out.splitlines() if line.startswith("lck_"))
    key_id = key.split("_")[1]
    code, out = await starter(cli_env, "api-key", "list")
    assert code == 0 and key_id in out and key not in out, out
    code, out = await starter(cli_env, "api-key", "create", "--name", "ops", "--scopes", "decode", "--key-only")
    assert code == 0 and out.strip().startswith("lck_"), out  # found by a newcomer trial: it was refused
    code, out = await starter(cli_env, "api-key", "create", "--name", "x", "--scopes", "root")
    assert code == 2 and "--scopes[0]: Input should be 'read', 'write', 'decode' or 'admin'" in out, out
    code, out = await starter(cli_env, "api-key", "revoke", key_id)
    assert code == 0 and "Revoked" in out, out
    code, out = await starter(cli_env, "api-key", "revoke", "0000000000000000")
    assert code != 0 and "no API key" in out, out


async def test_bad_input_is_refused_before_anything_starts(cli_env):
    base = ["start-case", "--loan-id", "L-bad", "--borrower-id", "B-cli", "--principal-due-minor", "100", "--oldest-due-date", "2026-01-05"]
    cases = {
        ("--currency", "XYZ"): "--currency: 'XYZ' is not an ISO 4217 currency code",
        ("--currency", "JPY"): "--currency: policy 2027.01-strategy has no thresholds for JPY",
        ("--policy-version", "nope"): "--policy-version: unknown policy 'nope'",
        ("--timezone", "Mars/Olympus"): "--timezone: 'Mars/Olympus' is not an IANA time zone name",
        ("--jurisdiction", "ZZ"): "--jurisdiction: Input should be 'CN', 'US' or 'UK'",
        ("--loan-id", "has space"): "--loan-id: must be 1-64 characters",
        ("--oldest-due-date", "20/11/2026"): "--oldest-due-date: must be a date YYYY-MM-DD",
        ("--oldest-due-date", "2999-01-01"): "--oldest-due-date: must not be after today",
    }
    for extra, message in cases.items():
        code, out = await starter(cli_env, *base, *extra)
        assert code == 2 and message in out, (extra, out)
    code, out = await starter(cli_env, "status", "no-such-loan")
    assert code == 2 and "no open case for loan 'no-such-loan'" in out
    code, out = await starter(cli_env, "promise", "no-such-loan", "100", "20261205")
    assert code == 2 and "PROMISED_DATE: must be a date YYYY-MM-DD" in out
    # Issue 11: the CLI sent 10^23 to the workflow, whose database write then failed forever.
    for amount, rule in (("99999999999999999999999", "AMOUNT_MINOR: must be a whole number of minor units"),
                         ("9007199254740992", "AMOUNT_MINOR: Input should be less than or equal to 9007199254740991")):
        code, out = await starter(cli_env, "pay", "no-such-loan", amount, "--currency", "CNY")
        assert code == 2 and rule in out, out
    code, out = await starter(cli_env, *base[:6], "99999999999999999999999", *base[7:])
    assert code == 2 and "--principal-due-minor" in out and "9007199254740991" in out, out
    # The API's payment rules hold for the CLI too (one validation: rules.validation).
    for paid_at, rule in (("2031-01-01T00:00:00Z", "--paid-at: must not be in the future"),
                          ("1999-01-01T00:00:00Z", "--paid-at: must be within the last 3650 days")):
        code, out = await starter(cli_env, "pay", "no-such-loan", "500", "--currency", "CNY", "--paid-at", paid_at)
        assert code == 2 and rule in out, out


async def test_runtime_refusals_against_a_real_server_are_one_line(cli_env):
    """Issue 12: ``pay`` to an unknown loan with a huge amount printed 342 lines of traceback.
    With a server and a worker up, refusals and unknown loans are one line on stderr."""
    for args, field in ((("pay", "no-such-loan", "99999999999999999999999"), "AMOUNT_MINOR"),
                        (("pay", "no-such-loan", "9007199254740992", "--currency", "CNY"), "AMOUNT_MINOR"),
                        (("pay", "no-such-loan", "5000"), "--currency"),
                        (("status", "no-such-loan"), "no-such-loan"),
                        (("history", "no-such-loan"), "no-such-loan"),
                        (("promise", "no-such-loan", "100", "2026-12-05"), "no-such-loan"),
                        (("hardship", "no-such-loan", "--hardship-id", "H-1"), "no-such-loan")):
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "starter.py"), *args, env={**cli_env, "COLUMNS": "200"}, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await process.communicate()
        lines = err.decode().splitlines()
        assert process.returncode != 0 and len(lines) == 1 and field in lines[0], (args, err.decode()[:2000])
        assert "Traceback" not in err.decode()


async def test_plans_outcomes_and_contact_history_from_the_command_line(cli_env):
    """A DPD 8 case: the agent reports the call with a note, proposes a plan (refused, then
    accepted), and the contact history lists it all from the database."""
    tz = zone_in_contact_window()
    today = calendar.local_date(datetime.now(UTC), tz)
    loan = f"L-{uuid.uuid4().hex[:8]}"
    code, out = await starter(
        cli_env, "start-case", "--loan-id", loan, "--borrower-id", "B-cli", "--portfolio", "no-accrual", "--principal-due-minor", "100001",
        "--oldest-due-date", (today - timedelta(days=8)).isoformat(), "--timezone", tz,
    )
    assert code == 0, out
    for _ in range(40):
        st = await status_json(cli_env, loan)
        if st["open_tasks"]:
            break
        await asyncio.sleep(0.5)
    task_key = st["open_tasks"][0]["task_key"]
    code, out = await starter(cli_env, "record-outcome", loan, "--task-key", task_key, "--outcome", "reached",
                              "--agent", "A-7", "--note", "Asked to call back after payday.")
    assert code == 0 and "note stored in the database" in out, out
    dates = ",".join((today + timedelta(days=d)).isoformat() for d in (1, 15, 29))
    code, out = await starter(cli_env, "propose-plan", loan, "--kind", "instalments", "--dates", dates, "--first-minor", "5")
    assert code == 2 and "plan refused: first_instalment_minor: the first instalment (5) must be at least 10001" in out, out
    code, out = await starter(cli_env, "propose-plan", loan, "--kind", "instalments", "--dates", dates, "--plan-id", "PL-CLI")
    assert code == 0 and "33335" in out and "PL-CLI" in out, out
    # A retry answers with the accepted schedule instead of refusing a duplicate.
    code, again = await starter(cli_env, "propose-plan", loan, "--kind", "instalments", "--dates", dates, "--plan-id", "PL-CLI")
    assert code == 0 and "33335" in again, again
    code, out = await starter(cli_env, "record-outcome", loan, "--task-key", task_key, "--outcome", "reached", "--agent", "A-7")
    assert code == 0 and "Recorded reached" in out, out
    code, out = await starter(cli_env, "legal-status", loan, "--status", "won")
    assert code == 2 and "--status: Input should be" in out, out
    code, out = await starter(cli_env, "contacts", loan)
    assert code == 0 and "Asked to call back after payday." in out and "reached" in out and "agent_call" in out, out
    code, out = await starter(cli_env, "dispute", loan, "--dispute-id", "D 1")
    assert code == 2 and "--dispute-id: must be 1-64 characters" in out, out
    code, out = await starter(cli_env, "bankruptcy", loan, "--notice-id", "BK-CLI")
    assert code == 0, out
    for _ in range(40):
        st = await status_json(cli_env, loan)
        if st["outcome"]:
            break
        await asyncio.sleep(0.5)
    assert st["outcome"] == "closed_bankruptcy" and st["plans_ended"][0]["status"] == "closed"
    assert st["open_tasks"] == []
