"""``simulate`` on the whole packaged file equals the outcome table computed straight from the CSV.

The expected table is computed here with nothing but ``csv``, ``Decimal`` and the policy file's
numbers, following the conventions stated in ``home_credit.py``: amounts rounded half-up to
minor units; payments on or before the due day lower the opening amount; a late payment on DPD k
arrives at 12:00 local, after that day's 09:00 step. A case still owing is written off at the
start of DPD D, where D is the policy's ``write_off.days_past_due`` or, if later, the day after
``write_off.no_payment_days`` full days since its last payment (k + no_payment_days + 1); a
payment that arrives after its case ended (on DPD D or later) is not applied.
"""

import csv
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

import pytest

from collections_domain.portfolio.home_credit import PACKAGED_CSV, market_for, read_cases
from collections_domain.rules.policy import DEFAULT_POLICY_PATH, load_policy
from collections_domain.portfolio.simulation import simulate
from tests.databases import fresh_database_url


def minor(text: str) -> int:
    return int((Decimal(text) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_outcomes() -> tuple[dict[str, tuple[int, int, int]], int]:
    """``{row: (cases, still unpaid, written off)}`` and the number of payments that arrive after
    their case ended."""
    policy = load_policy(DEFAULT_POLICY_PATH)
    instalments: dict[tuple, list[dict]] = defaultdict(list)
    with PACKAGED_CSV.open(newline="") as handle:
        for row in csv.DictReader(handle):
            instalments[(row["SK_ID_PREV"], row["NUM_INSTALMENT_NUMBER"], row["NUM_INSTALMENT_VERSION"])].append(row)
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    after_close = 0
    for rows in instalments.values():
        due_day = float(rows[0]["DAYS_INSTALMENT"])
        owed = max(minor(r["AMT_INSTALMENT"]) for r in rows)
        late: dict[int, int] = defaultdict(int)
        signals: dict[int, int] = defaultdict(int)  # payments (one signal each) per late day
        for r in rows:
            if not r["AMT_PAYMENT"] or not r["DAYS_ENTRY_PAYMENT"] or minor(r["AMT_PAYMENT"]) <= 0:
                continue
            k = int(float(r["DAYS_ENTRY_PAYMENT"]) - due_day)
            if k <= 0:
                owed -= minor(r["AMT_PAYMENT"])
            else:
                late[k] += minor(r["AMT_PAYMENT"])
                signals[k] += 1
        if owed <= 0:
            continue  # paid in full on time: never a case
        thresholds = policy.thresholds(market_for(int(float(rows[0]["SK_ID_CURR"]))).currency)
        cured_on = None
        remaining = owed
        write_off_day = policy.write_off.days_past_due
        for k in sorted(late):
            if k >= write_off_day:  # written off at the start of that day: this payment and the rest bounce
                after_close += sum(n for day, n in signals.items() if day >= k)
                break
            remaining -= late[k]
            if remaining <= 0:
                cured_on = k
                after_close += sum(n for day, n in signals.items() if day > k)
                break
            write_off_day = max(write_off_day, k + policy.write_off.no_payment_days + 1)
        unpaid = cured_on is None
        written_off = unpaid  # a case not cured before its write-off day is written off on it
        if cured_on is not None and cured_on < 3:
            row = "cured before DPD 3"
        elif cured_on is not None and cured_on < 7:
            row = "cured at DPD 3-6"
        elif cured_on is not None and cured_on < 30:
            row = "cured at DPD 7-29"
        else:
            at_30 = owed - sum(amount for k, amount in late.items() if k < 30)
            if at_30 >= thresholds.legal_threshold_minor:
                row = "reached DPD 30: legal"
            elif at_30 >= thresholds.minimum_overdue_minor:
                row = "reached DPD 30: agency"
            else:
                row = "reached DPD 30 under the minimum (reminders only)"
        table[row][0] += 1
        table[row][1] += int(unpaid)
        table[row][2] += int(written_off)
    return {row: (cases, unpaid, written_off) for row, (cases, unpaid, written_off) in table.items()}, after_close


def expected_table() -> dict[str, tuple[int, int, int]]:
    return expected_outcomes()[0]


def test_expected_table_counts_every_case():
    expected = expected_table()
    assert sum(cases for cases, _, _ in expected.values()) == len(read_cases()) == 2601


@pytest.mark.timeout(2700)  # about 17 minutes on a 2-core machine; room for a slower one
async def test_simulation_of_the_whole_file_equals_the_csv(tmp_path):
    # SQLite file by default; a PostgreSQL database when TEST_DATABASE_URL says so.
    result = await simulate(read_cases(), database_url=fresh_database_url(tmp_path, "simulation"))
    got = {
        row: (cases, unpaid, written_off)
        for row, cases, unpaid, written_off in result.table.as_rows()
        if row != "total" and cases
    }
    print(
        "\n" + result.table.render() + f"\nwall time {result.wall_seconds:.1f} s"
        f"\npayments after close {result.payments_after_close}"
    )
    expected, after_close = expected_outcomes()
    assert got == expected
    assert result.payments_after_close == after_close
    assert all(status.outstanding_minor >= 0 for status in result.statuses.values())
