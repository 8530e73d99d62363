"""The loan book and the delinquency scan on the time-skipping server: the scan finds the overdue
loans of an imported book on its own and opens their cases, leaves current loans alone, runs
twice without duplicating anything, and forwards what the book learns to running cases; the
servicing routes (payments, reversals, instalments) reach the book, the case, or re-open it."""

from __future__ import annotations

import asyncio
from datetime import time, timedelta

from sqlmodel import select

from collections_domain.case.contract import CaseStatus, LoanInstalment, PaymentReceived, PaymentReversed
from collections_domain.portfolio import loan_book, servicing
from collections_domain.portfolio.scan import ScanRequest, scan_page
from collections_domain.rules import calendar
from collections_domain.store.db import session
from collections_domain.store.models import CollectionCase, ContactAttempt, Loan, UnmatchedPayment
from tests.helpers import advance_to, server_now

TZ = "Asia/Shanghai"


async def eventually(check, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.2)


def book_csv(today, suffix: str) -> str:
    """A nightly file (with a byte-order mark, as spreadsheets write it): A is 5 days overdue, B
    paid on time, C falls due next week, D is 0.50 overdue (under the 1.00 minimum)."""
    rows = [
        "record,loan_id,borrower_id,currency,timezone,jurisdiction,region,portfolio,instalment_id,due_date,"
        "principal_minor,interest_minor,fees_minor,payment_id,amount_minor,paid_at,reversal_id,reason",
    ]
    for loan in "ABCD":
        rows.append(f"loan,{loan}-{suffix},B-{loan}-{suffix},CNY,{TZ},CN,CN-SH,no-accrual,,,,,,,,,,")
    rows += [
        f"instalment,A-{suffix},,,,,,,1,{today - timedelta(days=5)},250000,0,0,,,,,",
        f"instalment,B-{suffix},,,,,,,1,{today - timedelta(days=5)},100000,0,0,,,,,",
        f"payment,B-{suffix},,CNY,,,,,,,,,,pb1,100000,{today - timedelta(days=6)}T10:00:00+08:00,,",
        f"instalment,C-{suffix},,,,,,,1,{today + timedelta(days=7)},100000,0,0,,,,,",
        f"instalment,D-{suffix},,,,,,,1,{today - timedelta(days=5)},10050,0,0,,,,,",
        f"payment,D-{suffix},,CNY,,,,,,,,,,pd1,10000,{today - timedelta(days=5)}T10:00:00+08:00,,",
        "payment,Z-unknown,,CNY,,,,,,,,,,pz,100,2026-01-01T10:00:00+08:00,,",
        f"instalment,A-{suffix},,,,,,,bad,not-a-date,1,0,0,,,,,",
    ]
    return "\ufeff" + "\n".join(rows) + "\n"


async def test_a_payment_after_a_write_off_is_a_recovery_reported_by_the_book(time_env, harness_factory):
    """Payments after a write-off are recorded as recoveries against the written-off amount and
    reported (``read_loan(...).recovery``, ``GET /v1/loans/{id}``), not dropped."""
    h = harness_factory(time_env)
    policy = h.activities.policies.current
    async with h.worker:
        now = await server_now(time_env)
        today = calendar.local_date(now, TZ)
        loan_id = f"W-{abs(hash(now)) % 10**6}"
        loan_book.upsert_loan(h.engine, loan_book.LoanIn(
            loan_id=loan_id, borrower_id=f"B-{loan_id}", timezone=TZ, portfolio="no-accrual",
            instalments=[LoanInstalment(instalment_id="1", due_date=today - timedelta(days=200), principal_minor=300_000)]), policy)
        loan_book.refresh(h.engine, loan_id, policy)
        page = await scan_page(h.engine, h.client, policy, ScanRequest(time_zone=TZ, as_of=now), task_queue=h.task_queue)
        assert page.opened == [loan_id]
        handle = h.client.get_workflow_handle(f"collection-{loan_id}", result_type=CaseStatus)
        h.handles.append(handle)
        # DPD past 180 from the start; written off once nothing is paid for 90 days of the case.
        # First in the module: a long skip after other tests' cases stalled the server's sleep.
        await advance_to(time_env, calendar.local_instant(today + timedelta(days=92), time(12), TZ))

        async def written_off():
            st = await handle.query("status", result_type=CaseStatus)
            return st if st.outcome is not None else None

        ended = await eventually(written_off)
        assert ended.outcome == "written_off" and ended.written_off_minor == 300_000
        later = calendar.local_instant(today + timedelta(days=93), time(12), TZ)
        await advance_to(time_env, later)
        paid = PaymentReceived(payment_id="rec-1", amount_minor=120_000, currency="CNY", paid_at=later)
        delivery = await servicing.deliver_payment(h.client, h.engine, policy, loan_id, paid, now=later)
        again = await servicing.deliver_payment(h.client, h.engine, policy, loan_id, paid, now=later)
    assert delivery.status == "recorded_in_book" and delivery.reason == "written_off"
    assert again.status == "recorded_in_book" and not again.new
    book = loan_book.read_loan(h.engine, loan_id, policy, later)
    assert book.loan.status == "written_off"
    assert book.recovery is not None
    assert (book.recovery.written_off_minor, book.recovery.recovered_minor, book.recovery.remaining_minor) == (300_000, 120_000, 180_000)
    assert book.view.outstanding.total == 180_000
    with session(h.engine) as db:
        assert db.exec(select(UnmatchedPayment).where(UnmatchedPayment.loan_id == loan_id)).first() is None


async def test_the_scan_finds_overdue_loans_in_the_book_on_its_own(time_env, harness_factory):
    h = harness_factory(time_env)
    policy = h.activities.policies.current
    async with h.worker:
        now = await server_now(time_env)
        today = calendar.local_date(now, TZ)
        suffix = str(abs(hash(now)) % 10**6)
        report = loan_book.import_csv(h.engine, policy, text=book_csv(today, suffix), now=now)
        assert (report.loans, report.instalments, report.payments) == (4, 4, 2)
        assert len(report.errors) == 2 and "line 12: loan_id: loan Z-unknown is not in the loan book" in report.errors[0]
        assert report.errors[1].startswith("line 13: due_date: must be a date YYYY-MM-DD")
        request = ScanRequest(time_zone=TZ, as_of=now, scan_id="test-scan")
        first = await scan_page(h.engine, h.client, policy, request, task_queue=h.task_queue)
        assert first.opened == [f"A-{suffix}"], first
        assert "instalment 1 due" in first.reasons[f"A-{suffix}"] and "unpaid 5 day(s)" in first.reasons[f"A-{suffix}"]
        # B (paid) and C (not due yet) owe nothing due: not even looked at; D is under the minimum.
        assert first.current == [] and first.below_minimum == [f"D-{suffix}"]
        handle = h.client.get_workflow_handle(f"collection-A-{suffix}", result_type=CaseStatus)
        h.handles.append(handle)

        async def opened():
            st = await handle.query("status", result_type=CaseStatus)
            return st if st.steps_done else None

        st = await eventually(opened)
        assert st.days_past_due == 5 and st.outstanding_minor == 250_000 and st.opening_reason.source == "scan"
        second = await scan_page(h.engine, h.client, policy, request, task_queue=h.task_queue)
        assert second.opened == [] and second.forwarded == {}  # run twice: no second case, no message

        # The next instalment falls due while the case is open: the book forwards it, once.
        loan_book.add_instalment(h.engine, f"A-{suffix}", LoanInstalment(instalment_id="2", due_date=today, principal_minor=100_000))
        third = await scan_page(h.engine, h.client, policy, request, task_queue=h.task_queue)
        assert third.forwarded == {f"A-{suffix}": ["instalment 2"]}
        assert (await scan_page(h.engine, h.client, policy, request, task_queue=h.task_queue)).forwarded == {}

        async def grown():
            st = await handle.query("status", result_type=CaseStatus)
            return st if st.outstanding_minor == 350_000 else None

        st = await eventually(grown)
        assert st.days_past_due == 5 and [line.instalment_id for line in st.ledger.lines] == ["1", "2"]
        with session(h.engine) as db:
            attempts = list(db.exec(select(ContactAttempt).where(ContactAttempt.loan_id == f"A-{suffix}")))
            assert len({a.idempotency_key for a in attempts}) == len(attempts)
            cases = list(db.exec(select(CollectionCase).where(CollectionCase.loan_id == f"A-{suffix}")))
            assert len(cases) == 1 and cases[0].opening_source == "scan"


async def test_payments_and_reversals_reach_the_book_the_case_or_reopen_it(time_env, harness_factory):
    h = harness_factory(time_env)
    policy = h.activities.policies.current
    async with h.worker:
        now = await server_now(time_env)
        today = calendar.local_date(now, TZ)
        loan_id = f"S-{abs(hash(now)) % 10**6}"
        loan_book.upsert_loan(h.engine, loan_book.LoanIn(
            loan_id=loan_id, borrower_id=f"B-{loan_id}", timezone=TZ, portfolio="no-accrual",
            instalments=[LoanInstalment(instalment_id="1", due_date=today - timedelta(days=12), principal_minor=300_000),
                         LoanInstalment(instalment_id="2", due_date=today - timedelta(days=2), principal_minor=200_000)]), policy)
        loan_book.refresh(h.engine, loan_id, policy)
        page = await scan_page(h.engine, h.client, policy, ScanRequest(time_zone=TZ, as_of=now), task_queue=h.task_queue)
        assert page.opened == [loan_id]
        handle = h.client.get_workflow_handle(f"collection-{loan_id}", result_type=CaseStatus)
        h.handles.append(handle)

        async def status_where(check):
            async def probe():
                st = await handle.query("status", result_type=CaseStatus)
                return st if check(st) else None
            return await eventually(probe)

        assert (await status_where(lambda st: st.days_past_due == 12)).outstanding_minor == 500_000
        paid = PaymentReceived(payment_id="gw-1", amount_minor=300_000, currency="CNY", paid_at=now)
        delivery = await servicing.deliver_payment(h.client, h.engine, policy, loan_id, paid, now=now)
        assert delivery.status == "delivered"
        moved = await status_where(lambda st: st.days_past_due == 2)  # the first instalment is paid: DPD moves
        assert moved.outstanding_minor == 200_000 and moved.oldest_due_date == today - timedelta(days=2)
        reversal = PaymentReversed(reversal_id="rv-1", payment_id="gw-1", reason="bounced")
        assert (await servicing.deliver_reversal(h.client, h.engine, policy, loan_id, reversal,
                                                 task_queue=h.task_queue)).status == "delivered"
        back = await status_where(lambda st: st.days_past_due == 12)
        assert back.outstanding_minor == 500_000 and back.ledger.payments[0].status == "reversed"

        # Paid in full: the case ends cured; the payment then bounces and collection re-opens.
        full = PaymentReceived(payment_id="gw-2", amount_minor=500_000, currency="CNY", paid_at=await server_now(time_env))
        await servicing.deliver_payment(h.client, h.engine, policy, loan_id, full, now=full.paid_at)
        cured = await handle.result()
        assert cured.outcome == "cured"
        await advance_to(time_env, await server_now(time_env) + timedelta(minutes=1))
        again = await servicing.deliver_reversal(h.client, h.engine, policy, loan_id,
                                                 PaymentReversed(reversal_id="rv-2", payment_id="gw-2", reason="chargeback"),
                                                 task_queue=h.task_queue)
        assert again.status == "reopened", again
        reopened = h.client.get_workflow_handle(f"collection-{loan_id}", result_type=CaseStatus)

        async def reopened_status():
            st = await reopened.query("status", result_type=CaseStatus)
            return st if st.reopened_from and st.outstanding_minor == 500_000 else None

        st = await eventually(reopened_status)
        assert st.reopened_from == cured.episode_id and st.opening_reason.source == "reversal"
        assert st.days_past_due == 12 and st.outcome is None

        # A loan nobody knows: the payment is held; a loan of the book with no case: the book has it.
        stray = PaymentReceived(payment_id="gw-x", amount_minor=700, currency="CNY", paid_at=now)
        assert (await servicing.deliver_payment(h.client, h.engine, policy, "NOBODY-1", stray, now=now)).status == "held_for_reconciliation"
        with session(h.engine) as db:
            assert db.exec(select(UnmatchedPayment).where(UnmatchedPayment.loan_id == "NOBODY-1")).one().amount_minor == 700
            assert db.get(Loan, loan_id).status == "active"


async def test_an_instalment_paid_before_the_case_opened_is_never_sent_to_it(time_env, harness_factory):
    h = harness_factory(time_env)
    policy = h.activities.policies.current
    async with h.worker:
        now = await server_now(time_env)
        today = calendar.local_date(now, TZ)
        loan_id = f"E-{abs(hash(now)) % 10**6}"
        loan_book.upsert_loan(h.engine, loan_book.LoanIn(
            loan_id=loan_id, borrower_id=f"B-{loan_id}", timezone=TZ, portfolio="no-accrual",
            instalments=[LoanInstalment(instalment_id="1", due_date=today - timedelta(days=40), principal_minor=100_000),
                         LoanInstalment(instalment_id="2", due_date=today - timedelta(days=3), principal_minor=100_000)]), policy)
        early = calendar.local_instant(today - timedelta(days=45), time(12), TZ)  # paid before it was due: credit
        loan_book.record_payment(h.engine, loan_id, PaymentReceived(payment_id="early", amount_minor=100_000, currency="CNY",
                                                                    paid_at=early), now=now)
        loan_book.refresh(h.engine, loan_id, policy, now)
        request = ScanRequest(loan_ids=[loan_id], as_of=now)
        assert (await scan_page(h.engine, h.client, policy, request, task_queue=h.task_queue)).opened == [loan_id]
        h.handles.append(h.client.get_workflow_handle(f"collection-{loan_id}"))
        again = await scan_page(h.engine, h.client, policy, request, task_queue=h.task_queue)
        handle = h.client.get_workflow_handle(f"collection-{loan_id}", result_type=CaseStatus)

        async def opened():
            st = await handle.query("status", result_type=CaseStatus)
            return st if st.ledger and st.ledger.lines else None

        st = await eventually(opened)
    assert again.forwarded == {}  # instalment 1 was paid in the book before the case: never sent to it
    assert [line.instalment_id for line in st.ledger.lines] == ["2"] and st.days_past_due == 3


async def test_money_in_another_currency_is_held_or_refused_by_the_case_never_invisible(time_env, harness_factory):
    """A USD payment for a CNY loan was "recorded in the book" and then shown nowhere (the
    book's view skips other currencies). Now: no case running, it is held (``wrong_currency``);
    a running case refuses it on the record; the book keeps only the loan's own money."""
    h = harness_factory(time_env)
    policy = h.activities.policies.current
    async with h.worker:
        now = await server_now(time_env)
        today = calendar.local_date(now, TZ)
        loan_id = f"FX-{abs(hash(now)) % 10**6}"
        loan_book.upsert_loan(h.engine, loan_book.LoanIn(
            loan_id=loan_id, borrower_id=f"B-{loan_id}", timezone=TZ, portfolio="no-accrual",
            instalments=[LoanInstalment(instalment_id="1", due_date=today + timedelta(days=5), principal_minor=300_000)]), policy)
        usd = PaymentReceived(payment_id="usd-1", amount_minor=500, currency="USD", paid_at=now)
        held = await servicing.deliver_payment(h.client, h.engine, policy, loan_id, usd, now=now)
        assert held.status == "held_for_reconciliation" and held.reason == "wrong_currency", held
        loan_book.add_instalment(h.engine, loan_id, LoanInstalment(instalment_id="0", due_date=today - timedelta(days=4),
                                                                   principal_minor=100_000))
        loan_book.refresh(h.engine, loan_id, policy, now)
        page = await scan_page(h.engine, h.client, policy, ScanRequest(time_zone=TZ, as_of=now), task_queue=h.task_queue)
        assert page.opened == [loan_id]
        handle = h.client.get_workflow_handle(f"collection-{loan_id}", result_type=CaseStatus)
        h.handles.append(handle)
        usd2 = PaymentReceived(payment_id="usd-2", amount_minor=500, currency="USD", paid_at=now)
        assert (await servicing.deliver_payment(h.client, h.engine, policy, loan_id, usd2, now=now)).status == "delivered"

        async def refused():
            st = await handle.query("status", result_type=CaseStatus)
            return st if any(r.id == "usd-2" for r in st.rejected_signals) else None

        st = await eventually(refused)
    assert "currency: must be the case currency CNY" in next(r.reason for r in st.rejected_signals if r.id == "usd-2")
    with session(h.engine) as db:
        held_rows = db.exec(select(UnmatchedPayment).where(UnmatchedPayment.loan_id == loan_id)).all()
        book_rows = db.exec(select(loan_book.LoanPaymentRecord).where(loan_book.LoanPaymentRecord.loan_id == loan_id)).all()
    assert [(row.payment_id, row.reason) for row in held_rows] == [("usd-1", "wrong_currency")]
    assert book_rows == []


async def test_a_csv_reversal_of_the_payment_that_cured_the_case_reopens_it_at_the_next_scan(time_env, harness_factory):
    """A reversal row in the nightly file only marked the book: the loan showed DPD 10 again, each
    scan then started a case that failed ("already ended as cured") and none ever ran. Now the
    scan delivers the reversal, which re-opens the ended case from its own ledger."""
    h = harness_factory(time_env)
    policy = h.activities.policies.current
    async with h.worker:
        now = await server_now(time_env)
        today = calendar.local_date(now, TZ)
        loan_id = f"RV-{abs(hash(now)) % 10**6}"
        loan_book.upsert_loan(h.engine, loan_book.LoanIn(
            loan_id=loan_id, borrower_id=f"B-{loan_id}", timezone=TZ, portfolio="no-accrual",
            instalments=[LoanInstalment(instalment_id="1", due_date=today - timedelta(days=10), principal_minor=1_002)]), policy)
        loan_book.refresh(h.engine, loan_id, policy, now)
        request = ScanRequest(time_zone=TZ, as_of=now, scan_id="rv-scan")
        assert (await scan_page(h.engine, h.client, policy, request, task_queue=h.task_queue)).opened == [loan_id]
        handle = h.client.get_workflow_handle(f"collection-{loan_id}", result_type=CaseStatus)
        h.handles.append(handle)
        paid = PaymentReceived(payment_id="x2-p", amount_minor=1_002, currency="CNY", paid_at=now)
        await servicing.deliver_payment(h.client, h.engine, policy, loan_id, paid, now=now)
        cured = await handle.result()
        assert cured.outcome == "cured"
        later = await server_now(time_env)
        # While the case is closed the next instalment falls due: the re-opened case must have it.
        loan_book.add_instalment(h.engine, loan_id, LoanInstalment(instalment_id="2", due_date=calendar.local_date(later, TZ),
                                                                   principal_minor=500))
        csv_text = ("record,loan_id,payment_id,reversal_id,reason,paid_at\n"
                    f"reversal,{loan_id},x2-p,x2-rev,bounced,{later.isoformat()}\n")
        report = loan_book.import_csv(h.engine, policy, text=csv_text, now=later)
        assert report.errors == [] and report.reversals == 1
        page = await scan_page(h.engine, h.client, policy, request.model_copy(update={"as_of": later}),
                               task_queue=h.task_queue)
        assert page.errors == [] and page.opened == [], page
        assert page.forwarded == {loan_id: ["reversal x2-rev: reopened"]}
        again = await scan_page(h.engine, h.client, policy, request.model_copy(update={"as_of": later}),
                                task_queue=h.task_queue)
        assert again.opened == [] and again.errors == []  # the re-opened case runs: nothing twice
        reopened = h.client.get_workflow_handle(f"collection-{loan_id}", result_type=CaseStatus)

        async def reopened_status():
            st = await reopened.query("status", result_type=CaseStatus)
            return st if st.reopened_from and st.outstanding_minor == 1_502 else None

        st = await eventually(reopened_status)
    assert st and st.reopened_from == cured.episode_id and st.outcome is None
    assert [line.instalment_id for line in st.ledger.lines] == ["1", "2"]
