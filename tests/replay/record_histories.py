"""Record workflow histories for the replay test: ``python -m tests.replay.record_histories``.

Each scenario runs on a fresh time-skipping server with the current code and is saved as JSON
under ``tests/replay/histories/<version>/<scenario>--<workflow id>.json``. Histories are kept forever: the replay test proves
that every later change to the workflow still replays what running cases already did.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from datetime import time, timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from collections_domain.rules import calendar
from collections_domain.ops.binaries import find_binary
from collections_domain.portfolio.simulation import register_search_attributes as _register_search_attributes
from collections_domain.ops.wiring import build_worker
from tests.conftest import Harness
from collections_domain.case.contract import CaseStatus
from collections_domain.client import propose_plan, record_contact_outcome
from tests.helpers import advance_to, new_loan_id, open_case, payment, promise, server_now
from collections_domain.case.contract import CaseInput, PaymentReversed
from collections_domain.portfolio.scan import ScanRequest
from tests.keys import TEST_CONVERTER

TZ = "Asia/Shanghai"
OUT = Path(__file__).parent / "histories"


async def main(version: str) -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"), data_converter=TEST_CONVERTER
    )
    await _register_search_attributes(env.client)
    folder = OUT / version
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        h = Harness(env, Path(tmp))
        h.version = version
        # v7+: a second worker with providers' rate limits (CONTACT_RATE_LIMITS): its cases run a
        # step's SMS and letters on their channels' task queues, beside the step's other contacts.
        limited = _limited_harness(env, Path(tmp)) if int(version[1:]) >= 7 else None
        async with h.worker, (limited.worker if limited else contextlib.nullcontext()):
            today = calendar.local_date(await server_now(env), TZ)
            due = today - timedelta(days=1)

            def local(dpd: int, hour: int = 12):
                return calendar.local_instant(due + timedelta(days=dpd), time(hour), TZ)

            handles = {}
            _, handles["never_paid_legal"] = await open_case(h, due=due, amount_minor=2_000_000)
            _, handles["cured_dpd_5"] = await open_case(h, due=due, amount_minor=300_000)
            _, handles["promise_kept"] = await open_case(h, due=due, amount_minor=300_000)
            _, handles["promise_broken"] = await open_case(h, due=due, amount_minor=300_000)
            _, handles["rejected_signals"] = await open_case(h, due=due, amount_minor=300_000)
            _, handles["late_start_with_payment"] = await open_case(
                h, due=today - timedelta(days=12), amount_minor=400_000,
                first_payment=payment(100_000, await server_now(env), payment_id="sws-1"),
            )
            if version != "v1":
                for name, amount in (("plan_settled", 100_001), ("plan_broken", 300_000), ("dispute_and_hardship", 300_000),
                                     ("cease_contact", 300_000), ("bankruptcy_after_placement", 300_000),
                                     ("call_promise", 300_000), ("written_off", 300_000)):
                    _, handles[name] = await open_case(
                        h, due=due, amount_minor=amount, interest_due_minor=10_000 if name == "plan_settled" else 0
                    )
            if version not in ("v1", "v2"):
                await _issue_4_openings(env, h, handles, today)
            if limited is not None:
                _, handles["rate_limited_never_paid"] = await open_case(limited, due=due, amount_minor=300_000)
            ledger = version not in ("v1", "v2", "v3")
            if ledger:
                await _issue_11_openings(env, h, handles, due)
            await handles["rejected_signals"].signal("payment_received", {"payment_id": "bad", "amount_minor": -1, "currency": "CNY", "paid_at": local(1).isoformat()})
            await handles["rejected_signals"].signal("promise_to_pay", {"promise_id": "far", "amount_minor": 1, "promised_date": (today + timedelta(days=90)).isoformat()})
            await advance_to(env, local(4))
            await handles["promise_kept"].signal("promise_to_pay", promise(100_000, due + timedelta(days=8), promise_id="k1"))
            await handles["promise_broken"].signal("promise_to_pay", promise(100_000, due + timedelta(days=5), promise_id="b1"))
            await advance_to(env, local(5))
            await handles["cured_dpd_5"].signal("payment_received", payment(300_000, local(5), payment_id="c5"))
            if ledger:
                await _issue_11_money(env, h, handles, due, local)
            await advance_to(env, local(8))
            await handles["promise_kept"].signal("payment_received", payment(100_000, local(8), payment_id="k1-pay"))
            if version != "v1":
                await _issue_3_scenarios(env, h, handles, due, local)
            if version not in ("v1", "v2"):
                await handles["uk_breathing_space"].signal("breathing_space", {"breathing_space_id": "BS-1"})
            await advance_to(env, local(31))
            if ledger:
                await _issue_11_legal(env, h, handles, local)
            if version != "v1":
                # The hand-off children of the DPD 30 step, and a written-off case.
                for name in ("never_paid_legal", "bankruptcy_after_placement"):
                    st = await handles[name].query("status", result_type=CaseStatus)
                    handles[f"{name}_child"] = env.client.get_workflow_handle(st.hand_offs[0].workflow_id)
                legal = handles["never_paid_legal_child"]
                await legal.signal("legal_status", {"event_id": "E1", "status": "lawyers_letter_sent"})
                await legal.signal("legal_status", {"event_id": "E2", "status": "lawyers_letter_sent"})
                await handles["bankruptcy_after_placement"].signal("bankruptcy", {"notice_id": "BK-1"})
                await advance_to(env, local(33))
                handles["plan_broken_child"] = env.client.get_workflow_handle(f"{handles['plan_broken'].id}-plan-PB")
                await advance_to(env, local(181))
            if int(version[1:]) >= 6:
                from collections_domain.analytics.produce import KpiReportRequest

                handles["kpi_report"] = await h.client.start_workflow(
                    "KpiReportWorkflow", KpiReportRequest(days=365, name="replay"), id="kpi-report-replay",
                    task_queue=h.task_queue)
                await handles["kpi_report"].result()
            for name, handle in handles.items():
                history = await handle.fetch_history()
                path = folder / f"{name}--{handle.id}.json"
                path.write_text(history.to_json())
                print(f"saved {path} ({len(history.events)} events)")
            for handle in handles.values():
                try:
                    await handle.terminate(reason="recorded")
                except Exception:
                    pass
    await env.shutdown()


def _limited_harness(env, tmp: Path) -> Harness:
    """A harness whose worker has rate limits on SMS and letters, on a task queue of its own."""
    folder = tmp / "limited"
    folder.mkdir()
    limited = Harness(env, folder)
    limited.task_queue += "-limited"  # the harness's first worker holds its own queue
    limited.settings = limited.settings.model_copy(update={"contact_rate_limits": "sms=50,letter=20",
                                                          "temporal_task_queue": limited.task_queue})
    limited.worker = build_worker(limited.client, limited.settings, limited.activities)
    return limited


async def _issue_11_openings(env, h, handles, due) -> None:
    """The loan ledger (recorded from v4 on): instalments falling due, re-anchoring, a reversal,
    accrual, a value-dated promise, the contract's original input (the patch marker), the legal
    track's money, a re-opened case and the delinquency scan."""
    _, handles["instalment_reanchor_reversal"] = await open_case(h, due=due, amount_minor=300_000)
    _, handles["accrual_cn"] = await open_case(h, due=due, amount_minor=500_000, interest_due_minor=20_000, portfolio=None)
    _, handles["value_dated_promise"] = await open_case(h, due=due, amount_minor=300_000)
    _, handles["legal_judgment_settled"] = await open_case(h, due=due, amount_minor=2_000_000)
    original = CaseInput(loan_id=new_loan_id("ORIG"), borrower_id="B-orig", principal_due_minor=300_000, oldest_due_date=due,
                         portfolio="no-accrual")
    handles["original_input_patch"] = await h.client.start_workflow(
        "LoanCollectionWorkflow", original, id=original.workflow_id, task_queue=h.task_queue, result_type=CaseStatus)


async def _issue_11_money(env, h, handles, due, local) -> None:
    from collections_domain.portfolio.servicing import deliver_reversal

    reanchor = handles["instalment_reanchor_reversal"]
    await reanchor.signal("instalment_due", {"instalment_id": "2", "due_date": str(due + timedelta(days=3)), "principal_minor": 200_000})
    await reanchor.signal("payment_received", payment(300_000, local(5), payment_id="ra-1"))
    promised = handles["value_dated_promise"]
    await promised.signal("promise_to_pay", promise(300_000, due + timedelta(days=5), promise_id="vd"))
    deadline = calendar.local_instant(due + timedelta(days=8), time(0), TZ)
    await advance_to(env, deadline + timedelta(minutes=10))
    await promised.signal("payment_received", payment(300_000, deadline - timedelta(minutes=10), payment_id="vd-pay"))
    await reanchor.signal("payment_reversed", {"reversal_id": "rv-1", "payment_id": "ra-1", "reason": "bounced"})
    # The cured case's payment bounces: collection re-opens from its own ledger.
    cured = handles["cured_dpd_5"]
    handles["cured_dpd_5"] = h.client.get_workflow_handle(cured.id, run_id=cured.result_run_id)
    policy = h.activities.policies.current
    await deliver_reversal(h.client, h.engine, policy, cured.id.removeprefix("collection-"),
                           PaymentReversed(reversal_id="rv-c5", payment_id="c5", reason="chargeback"), task_queue=h.task_queue)
    handles["reopened_by_reversal"] = h.client.get_workflow_handle(cured.id)
    strategy_loans = _issue_13_book(h, calendar.local_date(await server_now(env), TZ)) if int(h.version[1:]) >= 6 else {}
    scan = await h.client.start_workflow("DelinquencyScanWorkflow", ScanRequest(time_zone=TZ), id="delinquency-scan-replay",
                                         task_queue=h.task_queue)
    await scan.result()
    handles["delinquency_scan"] = scan
    for name, loan_id in strategy_loans.items():
        handles[name] = h.client.get_workflow_handle(f"collection-{loan_id}")


def _issue_13_book(h, today) -> dict[str, str]:
    """The strategy (recorded from v6 on): loans of the book with different repayment histories,
    scored at opening by the scan, so that their cases run different treatments and arms."""
    from collections_domain.portfolio import loan_book
    from tests.helpers import seed_borrower

    # name: (loan id, days back of each instalment, days back and amount of each payment); the
    # bands these get from propensity-2026.12 at the episode's opening: medium (the experiment's
    # two arms: the ids are picked for them), high (self_cure), low (early_call), and one opened
    # straight at DPD 35.
    histories = {
        "strategy_medium_champion": ("ST-medium-0", (35, 4), ((30, 150000),)),
        "strategy_medium_challenger": ("ST-medium-1", (65, 35, 4), ((50, 150000), (20, 150000))),
        "strategy_high_self_cure": ("ST-high-0", (4,), ()),
        "strategy_low_early_call": ("ST-low-0", (35, 4), ((34, 75000), (10, 75000))),
        "strategy_paid_on_time_before": ("ST-time-0", (95, 65, 35, 4), ((95, 150000), (65, 150000), (35, 150000))),
        "strategy_often_late": ("ST-late-0", (95, 65, 35, 4), ((80, 150000), (50, 150000))),
    }
    rows = ["record,loan_id,borrower_id,currency,timezone,jurisdiction,region,portfolio,instalment_id,due_date,"
            "principal_minor,interest_minor,fees_minor,payment_id,amount_minor,paid_at,reversal_id,reason"]
    loans = {}
    for name, (loan_id, due_back, paid) in histories.items():
        loans[name] = loan_id
        seed_borrower(h.engine, f"B-{loan_id}", tz=TZ)
        rows.append(f"loan,{loan_id},B-{loan_id},CNY,{TZ},CN,CN-SH,no-accrual,,,,,,,,,,")
        rows += [f"instalment,{loan_id},,,,,,,{i},{today - timedelta(days=back)},150000,0,0,,,,,"
                 for i, back in enumerate(due_back, start=1)]
        rows += [f"payment,{loan_id},,CNY,,,,,,,,,,p{i},{amount},{today - timedelta(days=back)}T10:00:00+08:00,,"
                 for i, (back, amount) in enumerate(paid, start=1)]
    loan_book.import_csv(h.engine, h.activities.policies.current, text="\n".join(rows) + "\n")
    return loans


async def _issue_11_legal(env, h, handles, local) -> None:
    st = await handles["legal_judgment_settled"].query("status", result_type=CaseStatus)
    child = h.client.get_workflow_handle(st.hand_offs[0].workflow_id)
    await child.signal("legal_status", {"event_id": "J-1", "status": "judgment", "awarded_minor": 1_800_000,
                                        "court_costs_minor": 50_000})
    await advance_to(env, local(32))
    await child.signal("legal_status", {"event_id": "S-1", "status": "settled"})
    await advance_to(env, local(33))
    handles["legal_judgment_settled_child"] = child


async def _issue_4_openings(env, h, handles, today) -> None:
    """The compliance gate (recorded from v3 on): a deferral for preferred hours, a US call cap
    rerouted to email, an attorney, a UK breathing space and a UK legal step that sends the
    default notice first."""
    from collections_domain.store.preferences import record_call_attempt, set_contact_preferences

    case, handles["cn_preferred_hours_deferral"] = await open_case(h, due=today - timedelta(days=1), amount_minor=300_000)
    set_contact_preferences(h.engine, case.borrower_id, preferred_hours="18:00-20:00")
    ny = "America/New_York"
    us_today = calendar.local_date(await server_now(env), ny)
    case, handles["us_call_cap_to_email"] = await open_case(
        h, due=us_today - timedelta(days=1), tz=ny, currency="USD", jurisdiction="US", locale="en", amount_minor=300_000
    )
    now = await server_now(env)
    for i in range(7):
        record_call_attempt(h.engine, attempt_id=f"{case.loan_id}-{i}", loan_id=case.loan_id, borrower_id=case.borrower_id,
                            attempted_at=now + timedelta(days=1 + i // 2, hours=i % 2), connected=False)
    case, handles["attorney_only"] = await open_case(h, due=today - timedelta(days=1), amount_minor=300_000)
    set_contact_preferences(h.engine, case.borrower_id, attorney_id="ATT-R", attorney_name="R. Counsel", attorney_address="2 Bar Lane")
    london = "Europe/London"
    uk_today = calendar.local_date(await server_now(env), london)
    _, handles["uk_breathing_space"] = await open_case(
        h, due=uk_today - timedelta(days=1), tz=london, currency="GBP", jurisdiction="UK", locale="en", amount_minor=300_000
    )
    _, handles["uk_legal_default_notice_first"] = await open_case(
        h, due=uk_today - timedelta(days=31), tz=london, currency="GBP", jurisdiction="UK", locale="en", amount_minor=2_000_000
    )


async def _issue_3_scenarios(env, h, handles, due, local) -> None:
    """Plans, contact outcomes, pauses and stops (recorded from v2 on)."""
    day = lambda n: str(due + timedelta(days=n))  # noqa: E731
    # The v1 scenarios already moved the clock to DPD 8, 12:00.
    st = await handles["call_promise"].query("status", result_type=CaseStatus)
    await record_contact_outcome(env.client, handles["call_promise"].id.removeprefix("collection-"), {
        "task_key": st.open_tasks[0].task_key, "outcome": "promise_made", "agent_id": "A1",
        "promise": {"promise_id": "P1", "amount_minor": 300_000, "promised_date": day(12)}})
    settled = await propose_plan(env.client, handles["plan_settled"].id.removeprefix("collection-"),
                                 {"plan_id": "PS", "kind": "instalments", "instalment_dates": [day(9), day(12)]})
    await propose_plan(env.client, handles["plan_broken"].id.removeprefix("collection-"),
                       {"plan_id": "PB", "kind": "deferral", "new_due_date": day(13)})
    await handles["dispute_and_hardship"].signal("dispute_opened", {"dispute_id": "D1"})
    await handles["cease_contact"].signal("cease_contact", {"request_id": "C1"})
    await advance_to(env, local(9))
    await handles["plan_settled"].signal("payment_received", payment(settled.instalments[0].amount_minor, local(9), payment_id="ps-1"))
    await handles["dispute_and_hardship"].signal("dispute_resolved", {"dispute_id": "D1", "resolution": "rejected"})
    await handles["dispute_and_hardship"].signal("hardship", {"hardship_id": "H1"})
    await advance_to(env, local(12))
    await handles["plan_settled"].signal("payment_received", payment(settled.instalments[1].amount_minor, local(12), payment_id="ps-2"))
    handles["plan_settled_child"] = env.client.get_workflow_handle(settled.plan_workflow_id)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "v1"))
