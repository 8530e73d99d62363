"""``simulate`` of the whole packaged file, loan by loan, equals the same figures computed straight
from the CSV.

The expected figures are computed here with nothing but ``csv``, ``Decimal`` and the policy
file's numbers, day by day, following the conventions stated in ``home_credit.py`` and the
policy: amounts rounded half-up to minor units, all principal; an instalment falls due at local
midnight of its day; payments are made at 12:00 local and pay the oldest instalment due first
(money beyond what is due waits as credit for the next instalment); at 00:30 local, on the day an
instalment falls due and on the day after (``identification.grace_days`` = 0), a loan with no
case and something unpaid since before that day, at least ``identification_minimum_minor``,
gets a case; a case is cured when nothing due is unpaid after a payment, and written off at local
midnight of the later of DPD ``write_off.days_past_due`` (counted from the oldest unpaid
instalment) and ``write_off.no_payment_days`` + 1 days after its opening or its last payment; a
written-off loan gets no other case. The highest DPD is counted while a case is open.

The file is replayed in ``CHUNKS`` parts, each a test of its own on a server of its own, so that
pytest-xdist runs them side by side (a loan's replay depends only on its borrower's loans: each
borrower's loans stay in one part, ``chunks``); together they compare every loan of the file, and
``test_the_chunks_cover_every_loan_of_the_file_once`` checks that they do.
"""

import csv
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

import pytest

from collections_domain.portfolio.home_credit import PACKAGED_CSV, HomeCreditLoan, read_loans
from collections_domain.portfolio.simulation import simulate
from collections_domain.rules.policy import DEFAULT_POLICY_PATH, load_policy
from tests.databases import fresh_database_url

POLICY = load_policy(DEFAULT_POLICY_PATH)
CURRENCY = {0: "CNY", 1: "CNY", 2: "CNY", 3: "CNY", 4: "CNY", 5: "CNY", 6: "USD", 7: "USD", 8: "GBP", 9: "GBP"}


def minor(text: str) -> int:
    return int((Decimal(text) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def file_loans() -> dict[str, tuple[int, list[tuple[int, int]], list[tuple[int, int]]]]:
    """``{SK_ID_PREV: (SK_ID_CURR, [(due day, amount)], [(paid day, amount)])}``."""
    rows: dict[str, list[dict]] = defaultdict(list)
    with PACKAGED_CSV.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            rows[row["SK_ID_PREV"]].append(row)
    loans = {}
    for prev, group in rows.items():
        instalments: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for row in group:
            instalments[(row["NUM_INSTALMENT_NUMBER"], row["NUM_INSTALMENT_VERSION"])].append(row)
        due = sorted((int(float(g[0]["DAYS_INSTALMENT"])), max(minor(r["AMT_INSTALMENT"]) for r in g)) for g in instalments.values())
        paid = sorted((int(float(r["DAYS_ENTRY_PAYMENT"])), minor(r["AMT_PAYMENT"])) for r in group
                      if r["DAYS_ENTRY_PAYMENT"] and r["AMT_PAYMENT"] and minor(r["AMT_PAYMENT"]) > 0)
        loans[str(int(float(prev)))] = (int(float(group[0]["SK_ID_CURR"])), due, paid)
    return loans


def expected(curr: int, due: list[tuple[int, int]], paid: list[tuple[int, int]]) -> dict:
    """The loan's figures, day by day."""
    minimum = POLICY.thresholds(CURRENCY[curr % 10]).identification_minimum_minor
    rules = POLICY.write_off
    owed = [amount for _, amount in due]  # what each instalment (oldest first) still owes, once due
    scan_days = {day for day, _ in due} | {day + 1 for day, _ in due}
    credit, cases, max_dpd, outcome, written_off = 0, 0, 0, "not_opened", False
    case_open, opened, last_paid = False, None, None
    payments = defaultdict(int)
    for day, amount in paid:
        payments[day] += amount
    first, last = min([d for d, _ in due] + [d for d, _ in paid]), max([d for d, _ in due] + [d for d, _ in paid])

    def oldest_unpaid(today: int) -> int | None:
        return next((d for (d, _), left in zip(due, owed) if d <= today and left > 0), None)

    for today in range(first, last + max(rules.days_past_due, rules.no_payment_days + 1) + 3):
        for i, (d, _) in enumerate(due):  # 00:00: instalments fall due; credit pays them
            if d == today and credit:
                take = min(credit, owed[i])
                owed[i] -= take
                credit -= take
        oldest = oldest_unpaid(today)
        if case_open:  # 00:00: the write-off, else the day's DPD while the case is open
            write_off_day = max(oldest + rules.days_past_due, max(opened, last_paid or opened) + rules.no_payment_days + 1)
            max_dpd = max(max_dpd, today - oldest)
            if today >= write_off_day:
                case_open, written_off, outcome = False, True, "written_off"
        if not case_open and not written_off and today in scan_days:  # 00:30: the scan
            overdue = sum(left for (d, _), left in zip(due, owed) if d < today)
            if oldest is not None and oldest < today and overdue >= minimum:
                case_open, opened, last_paid, cases = True, today, None, cases + 1
                max_dpd = max(max_dpd, today - oldest)
        money = payments.get(today, 0)  # 12:00: payments, oldest instalment due first
        if money:
            for i, (d, _) in enumerate(due):
                if d <= today:
                    take = min(money, owed[i])
                    owed[i] -= take
                    money -= take
            credit += money
            if case_open:
                last_paid = today
                if all(left == 0 for (d, _), left in zip(due, owed) if d <= today):
                    case_open, outcome = False, "cured"
    return {"instalments": len(due), "cases": cases, "max_days_past_due": max_dpd,
            "final_outstanding_minor": max(0, sum(a for _, a in due) - sum(a for _, a in paid)), "outcome": outcome}


#: Parts the file is replayed in (one test each): at least the workers of a parallel run.
CHUNKS = 4


def chunks(loans: list[HomeCreditLoan], parts: int = CHUNKS) -> list[list[HomeCreditLoan]]:
    """``loans`` in ``parts`` parts of about equal work (instalments and payments), each
    borrower's loans in one part (their replay shares the borrower's anchor day), each part in
    the file's order. Deterministic: the heaviest borrowers first, each to the lightest part."""
    by_borrower: dict[str, list[HomeCreditLoan]] = defaultdict(list)
    for loan in loans:
        by_borrower[loan.borrower_id].append(loan)
    weight = {borrower: sum(1 + len(loan.instalments) + len(loan.payments) for loan in group)
              for borrower, group in by_borrower.items()}
    load, members = [0] * parts, [set() for _ in range(parts)]
    for borrower in sorted(by_borrower, key=lambda b: (-weight[b], b)):
        lightest = min(range(parts), key=lambda i: (load[i], i))
        load[lightest] += weight[borrower]
        members[lightest].add(borrower)
    return [[loan for loan in loans if loan.borrower_id in part] for part in members]


def test_the_chunks_cover_every_loan_of_the_file_once():
    loans = read_loans()
    assert len(loans) == 2445 and sum(len(loan.instalments) for loan in loans) == 3140
    parts = chunks(loans)
    ids = [loan.loan_id for part in parts for loan in part]
    assert sorted(ids) == sorted(loan.loan_id for loan in loans) and len(set(ids)) == len(ids)
    borrowers = [{loan.borrower_id for loan in part} for part in parts]
    assert all(not (a & b) for i, a in enumerate(borrowers) for b in borrowers[i + 1:])
    assert set(file_loans()) == {loan.source_loan_id for loan in loans}
    assert all(part for part in parts)


@pytest.mark.parametrize("chunk", range(CHUNKS), ids=[f"part{i + 1}of{CHUNKS}" for i in range(CHUNKS)])
async def test_simulation_of_the_whole_file_equals_the_csv(tmp_path, chunk):
    loans = chunks(read_loans())[chunk]
    result = await simulate(loans, database_url=fresh_database_url(tmp_path, "simulation"))
    got = {loan.source_loan_id: {"instalments": loan.instalments, "cases": loan.cases,
                                 "max_days_past_due": loan.max_days_past_due,
                                 "final_outstanding_minor": loan.final_outstanding_minor, "outcome": loan.outcome}
           for loan in result.loans}
    facts = file_loans()
    want = {loan.source_loan_id: expected(*facts[loan.source_loan_id]) for loan in loans}
    assert set(got) == set(want)
    wrong = {prev: (got.get(prev), want[prev]) for prev in want if got.get(prev) != want[prev]}
    assert not wrong, f"{len(wrong)} of {len(want)} loans differ, e.g. {list(wrong.items())[:5]}"
    outcomes, rows = result.table()
    assert sum(sum(counts.values()) for _, counts in rows) == len(loans)
    print(f"\n{len(loans)} loans in {result.wall_seconds:.1f} s: {dict((s, sum(c.values())) for s, c in rows)}")
