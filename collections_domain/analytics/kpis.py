"""Collection KPIs from what the product recorded: roll rates, cure rates, promises to pay,
right-party contact, recovery and cost, per strategy arm with the champion/challenger tests
(``compute_kpis``), and the totals of a simulation's what-if run (``whatif_run``).

The product's tables are read once with SQLAlchemy (SQLite or PostgreSQL alike) into an
in-memory DuckDB database, and every figure is one SQL statement over it (the ``*_SQL``
constants, each next to the sentence that defines it). Roll rates count month-end snapshots of
each loan's DPD that the loan ledger computes (``snapshots``). Money is integer minor units per
currency, never added up across currencies; rates are fractions with the counts they come from.

Which case a recorded fact belongs to: contact decisions and agent-task outcomes carry the case's
first run id in their record key (``<episode id>:<seq>``), contacts, placements and referrals its
first 8 characters in their idempotency key (``<workflow>:<episode[:8]>:<anchor>:<step>:<action>``),
payments and ledger entries the episode id itself; anything else (promises, cases from before
the loan ledger) belongs to the case of the same workflow open at its instant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import numpy as np
from sqlalchemy import column, inspect, select, table
from sqlalchemy.engine import Connection, Engine

from collections_domain.analytics import stats
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
    WhatIfRun,
)
from collections_domain.analytics.snapshots import (
    Month,
    month_end_snapshots,
    months_back,
    months_from,
    read_book,
)
from collections_domain.rules import ladder
from collections_domain.rules.compliance import CONNECTED_OUTCOMES
from collections_domain.rules.policy import Channel, CollectionPolicy
from collections_domain.rules.strategy import DEFAULT_BUCKETS, NO_EXPERIMENT
from collections_domain.store.writer import LOAN_STATUS_AFTER

__all__ = ["compute_kpis", "whatif_run"]

#: Cure curves run from day 0 to this day since opening.
CURE_CURVE_DAYS = 90
#: Roll rates look back at most this many month-ends (two years of a loan book loaded with its history).
ROLL_RATE_MONTHS = 60
#: The difference an experiment's verdict says how many cases would show (5 percentage points).
DETECTABLE_DIFFERENCE = 0.05
#: Contact attempt statuses that mean the provider (or the record back-end) took the contact.
DELIVERED = ("sent", "recorded")
#: Channels in the order the ladder uses them (the report lists them so).
CHANNEL_ORDER = [channel.value for channel in Channel]

# -- definitions: the sentence next to each figure ---------------------------------------------

DEFINITIONS = {
    "dpd": "Days past due: local calendar days since the oldest unpaid due date, in the borrower's time zone.",
    "cure": "A case is cured when its overdue amount is fully paid and the loan is current again "
            "(outcome cured; a case settled, written off or closed otherwise is not a cure).",
    "roll_rates": "Each loan's DPD at the last instant of every month in its own time zone, from the loan "
                  "ledger with the payments the product knew of then; counts[i][j] are loans in bucket i at "
                  "one month-end and in column j at the next (current: DPD 0 again, cured; closed: written off "
                  "or ended for good), summed over the months; the loans are the whole loan book (of the "
                  "jurisdiction filter), or, filtered by policy version, arm, segment or channel, those with a "
                  "case in the filters (dates aside); the month-ends those in the opening-date range from the month the "
                  "first of their instalments fell due (at most 60 month-ends before the last case opened).",
    "stages": "Cases by the furthest ladder step they reached (a compliance decision recorded for the step, "
              "whatever it decided; identified: none yet); cure rate with its Wilson 95 % interval, and the "
              "median days from opening to cure of the cured ones.",
    "time_to_cure": "Days from a cured case's opening to its cure (closing), exact to the second.",
    "cure_curves": "Share of each strategy arm's cases cured within d days of opening, d = 0 to 90 (cases still "
                   "open count as not cured; n is the arm's cases).",
    "promises": "Promises to pay made on the cases: kept over resolved (kept or broken; open ones wait), "
                "promises made per case, and the share of cases with at least one promise.",
    "right_party_contact": "Agent calls and visits whose outcome (reported, or missed at the deadline) reached "
                           "the borrower: reached, refused, promise made or dispute raised, over the tasks with an "
                           "outcome (tasks cancelled because the case ended are left out).",
    "channels": "Contact attempts per channel (one per contact, whatever its provider retries), those delivered "
                "(sent, or recorded by the record back-end), right-party contacts of agent tasks, and the cost of "
                "the delivered contacts at the policy's unit costs.",
    "recovery": "Amount recovered over the amount that entered collections, per currency (never added across "
                "currencies). Recovered: payments applied to the case's debt and not reversed. Entered: the "
                "overdue amount at opening plus instalments that fell due while the case ran, less instalments "
                "cancelled. Agency: payments while the case was placed over the amount placed; legal: payments "
                "after the referral over the amount referred.",
    "cost": "Cost: each delivered contact (messages, letters, agent tasks, placements, referrals) at the "
            "policy's unit cost of its action in the case's currency ([unit_costs]); cost per cure is the cost "
            "of the cases over their cures, rounded to the minor unit.",
    "arms": "Strategy arms (<experiment>:<arm>, none outside any experiment): cases, cure rate with its Wilson "
            "95 % interval, promises kept over resolved, amount recovered, cost and cost per cure, per currency.",
    "comparisons": "Each challenger's cure rate against its experiment's champion (the first arm in the policy): "
                   "difference challenger - champion with Newcombe's 95 % interval, and the two-sided p-value of "
                   "the pooled two-proportion z-test; the verdict needs p < 0.05.",
    "filters": "Cases opened between opened_from and opened_to (UTC days, inclusive), under policy_version, in "
               "strategy_arm (<experiment>:<arm> or the arm's name), of segment (score band or portfolio), "
               "jurisdiction, and contacted at least once on channel; with a channel, contact and cost figures "
               "count that channel's contacts only.",
}

# -- reading the product's tables ----------------------------------------------------------------

#: DuckDB table -> (the product's table, its columns and their DuckDB types). A column the database
#: lacks (a database from before it was added) reads as all NULL.
SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "cases": ("collection_cases", {
        "id": "BIGINT", "workflow_id": "VARCHAR", "loan_id": "VARCHAR", "currency": "VARCHAR",
        "opening_overdue_minor": "BIGINT", "jurisdiction": "VARCHAR", "policy_version": "VARCHAR",
        "outcome": "VARCHAR", "opened_at": "TIMESTAMP", "closed_at": "TIMESTAMP", "portfolio": "VARCHAR",
        "episode_id": "VARCHAR", "score_band": "VARCHAR", "treatment": "VARCHAR", "experiment_id": "VARCHAR",
        "strategy_arm": "VARCHAR",
    }),
    "decisions": ("contact_decisions", {
        "record_key": "VARCHAR", "workflow_id": "VARCHAR", "step": "VARCHAR", "action": "VARCHAR",
        "decision": "VARCHAR", "days_past_due": "INTEGER", "run_key": "VARCHAR", "decided_at": "TIMESTAMP",
    }),
    "attempts": ("contact_attempts", {
        "idempotency_key": "VARCHAR", "workflow_id": "VARCHAR", "step": "VARCHAR", "action": "VARCHAR",
        "channel": "VARCHAR", "status": "VARCHAR", "currency": "VARCHAR", "created_at": "TIMESTAMP",
    }),
    "outcomes": ("contact_outcomes", {
        "record_key": "VARCHAR", "workflow_id": "VARCHAR", "task_key": "VARCHAR", "action": "VARCHAR",
        "outcome": "VARCHAR", "recorded_at": "TIMESTAMP",
    }),
    "payments": ("payments", {
        "workflow_id": "VARCHAR", "episode_id": "VARCHAR", "payment_id": "VARCHAR", "amount_minor": "BIGINT",
        "applied_minor": "BIGINT", "currency": "VARCHAR", "paid_at": "TIMESTAMP", "value_at": "TIMESTAMP",
        "applied_at": "TIMESTAMP", "reversed_at": "TIMESTAMP",
    }),
    "promises": ("promises", {
        "workflow_id": "VARCHAR", "promise_id": "VARCHAR", "status": "VARCHAR", "made_at": "TIMESTAMP",
    }),
    "placements": ("placements", {
        "idempotency_key": "VARCHAR", "workflow_id": "VARCHAR", "agency": "VARCHAR", "amount_minor": "BIGINT",
        "currency": "VARCHAR", "placed_at": "TIMESTAMP",
    }),
    "referrals": ("legal_referrals", {
        "idempotency_key": "VARCHAR", "workflow_id": "VARCHAR", "amount_minor": "BIGINT", "currency": "VARCHAR",
        "filed_at": "TIMESTAMP",
    }),
    "hand_offs": ("hand_off_events", {
        "workflow_id": "VARCHAR", "child_workflow_id": "VARCHAR", "hand_off": "VARCHAR", "status": "VARCHAR",
        "recorded_at": "TIMESTAMP",
    }),
    "ledger": ("ledger_entries", {
        "workflow_id": "VARCHAR", "episode_id": "VARCHAR", "entry": "VARCHAR", "amount_minor": "BIGINT",
        "due_date": "DATE", "recorded_at": "TIMESTAMP",
    }),
    "write_offs": ("write_offs", {"workflow_id": "VARCHAR", "loan_id": "VARCHAR", "written_off_at": "TIMESTAMP"}),
}

#: The episode a contact's idempotency key names (``<workflow>:<episode[:8]>:...``); NULL for the
#: keys of cases from before the loan ledger (``<workflow>:<due date>:...``).
_CONTACT_KEY_EPISODE = ("CASE WHEN regexp_full_match(split_part(idempotency_key, ':', 2), '[0-9a-f]{8}') "
                        "THEN split_part(idempotency_key, ':', 2) END")
#: The anchor due date a contact's idempotency key names (the hand-off child's id ends with it).
_CONTACT_KEY_ANCHOR = (f"CASE WHEN ({_CONTACT_KEY_EPISODE}) IS NOT NULL THEN split_part(idempotency_key, ':', 3) "
                       "ELSE split_part(idempotency_key, ':', 2) END")
_RECORD_KEY_EPISODE = "nullif(split_part(record_key, ':', 1), '')"

#: Fact table -> (what names its case's episode, the instant that places it in a case otherwise).
ATTRIBUTION = {
    "decisions": (_RECORD_KEY_EPISODE, "decided_at"),
    "outcomes": (_RECORD_KEY_EPISODE, "recorded_at"),
    "attempts": (_CONTACT_KEY_EPISODE, "created_at"),
    "placements": (_CONTACT_KEY_EPISODE, "placed_at"),
    "referrals": (_CONTACT_KEY_EPISODE, "filed_at"),
    "payments": ("nullif(episode_id, '')", "applied_at"),
    "ledger": ("nullif(episode_id, '')", "recorded_at"),
    "promises": ("CAST(NULL AS VARCHAR)", "made_at"),
}

#: Each fact gets ``case_id``: the case whose episode its key names, else the case of its
#: workflow open at its instant (the latest, should two overlap).
ATTRIBUTION_SQL = """
CREATE TABLE {name} AS
WITH fact AS (
    SELECT row_number() OVER () AS fact_id, r.*, {episode} AS episode_hint, {instant} AS fact_at FROM src_{name} r
), by_episode AS (
    SELECT f.fact_id, min(c.id) AS case_id
    FROM fact f JOIN cases c ON c.workflow_id = f.workflow_id AND starts_with(c.episode_id, f.episode_hint)
    GROUP BY f.fact_id
), by_time AS (
    SELECT f.fact_id, max(c.id) AS case_id
    FROM fact f JOIN cases c ON c.workflow_id = f.workflow_id
        AND f.fact_at >= c.opened_at AND (c.closed_at IS NULL OR f.fact_at <= c.closed_at)
    WHERE f.fact_id NOT IN (SELECT fact_id FROM by_episode)
    GROUP BY f.fact_id
)
SELECT f.*, coalesce(e.case_id, t.case_id) AS case_id
FROM fact f LEFT JOIN by_episode e USING (fact_id) LEFT JOIN by_time t USING (fact_id)
"""

# -- the cases in scope ----------------------------------------------------------------------------

#: Every case with its arm, the furthest ladder step it reached (``stage_order``: the policy's
#: ladders in order; a step no ladder of this policy names ranks after them by its DPD) and, when
#: cured, the days it took.
CASE_BASE_SQL = """
CREATE TABLE case_base AS
WITH reached AS (
    SELECT d.case_id, arg_max(d.step, coalesce(s.rank, 1000 + d.days_past_due)) AS stage,
           max(coalesce(s.rank, 1000 + d.days_past_due)) AS stage_rank
    FROM decisions d LEFT JOIN stage_order s ON s.step = d.step
    WHERE d.case_id IS NOT NULL
    GROUP BY d.case_id
)
SELECT c.*,
    CASE WHEN c.experiment_id IS NOT NULL THEN c.experiment_id || ':' || coalesce(c.strategy_arm, 'none')
         ELSE coalesce(c.strategy_arm, 'none') END AS arm,
    coalesce(r.stage, 'identified') AS furthest_stage,
    coalesce(r.stage_rank, 0) AS stage_rank,
    coalesce(c.outcome = 'cured', false) AS cured,
    CASE WHEN c.outcome = 'cured' AND c.closed_at IS NOT NULL
         THEN epoch(c.closed_at - c.opened_at) / 86400.0 END AS days_to_cure
FROM cases c LEFT JOIN reached r ON r.case_id = c.id
"""

#: The filters but the opening dates (``DEFINITIONS["filters"]``): the loans roll rates follow.
SCOPE_SQL = """
CREATE TABLE scope AS
SELECT * FROM case_base
WHERE ($policy_version IS NULL OR policy_version = $policy_version)
  AND ($strategy_arm IS NULL OR arm = $strategy_arm OR coalesce(strategy_arm, 'none') = $strategy_arm)
  AND ($segment IS NULL OR score_band = $segment OR portfolio = $segment)
  AND ($jurisdiction IS NULL OR jurisdiction = $jurisdiction)
  AND ($channel IS NULL OR id IN (SELECT case_id FROM attempts WHERE channel = $channel))
"""

#: The cases the figures are about: the scope, opened in the date range.
KASE_SQL = """
CREATE TABLE kase AS
SELECT * FROM scope
WHERE ($opened_from IS NULL OR CAST(opened_at AS DATE) >= $opened_from)
  AND ($opened_to IS NULL OR CAST(opened_at AS DATE) <= $opened_to)
"""

#: The cases' contacts, delivered or not, and the cost of each delivered one (``DEFINITIONS["cost"]``).
CONTACT_SQL = """
CREATE TABLE contact AS
SELECT a.case_id, a.channel, a.action, a.status, k.currency,
    list_contains($delivered, a.status) AS delivered,
    CASE WHEN list_contains($delivered, a.status) THEN coalesce(u.cost_minor, 0) ELSE 0 END AS cost_minor
FROM attempts a
JOIN kase k ON k.id = a.case_id
LEFT JOIN unit_cost u ON u.currency = k.currency AND u.action = a.action
WHERE $channel IS NULL OR a.channel = $channel
"""

#: Per case: what entered collections, what was recovered and what the contacts cost
#: (``DEFINITIONS["recovery"]``, ``DEFINITIONS["cost"]``).
CASE_MONEY_SQL = """
CREATE TABLE case_money AS
WITH fell_due AS (
    SELECT l.case_id, sum(CASE l.entry WHEN 'instalment' THEN l.amount_minor ELSE -l.amount_minor END) AS minor
    FROM ledger l JOIN kase k ON k.id = l.case_id
    WHERE l.entry IN ('instalment', 'instalment_cancelled') AND l.recorded_at > k.opened_at
      AND l.due_date <= CAST(coalesce(k.closed_at, $now) AS DATE)
    GROUP BY l.case_id
), paid AS (
    SELECT p.case_id, sum(p.applied_minor) AS minor
    FROM payments p JOIN kase k ON k.id = p.case_id
    WHERE p.reversed_at IS NULL AND p.currency = k.currency
    GROUP BY p.case_id
), spent AS (
    SELECT case_id, sum(cost_minor) AS minor FROM contact GROUP BY case_id
)
SELECT k.id, k.currency, k.arm, k.furthest_stage, k.stage_rank, k.cured,
    CAST(k.opening_overdue_minor + coalesce(fell_due.minor, 0) AS BIGINT) AS entered_minor,
    CAST(coalesce(paid.minor, 0) AS BIGINT) AS recovered_minor,
    CAST(coalesce(spent.minor, 0) AS BIGINT) AS cost_minor
FROM kase k
LEFT JOIN fell_due ON fell_due.case_id = k.id
LEFT JOIN paid ON paid.case_id = k.id
LEFT JOIN spent ON spent.case_id = k.id
"""

# -- the figures -------------------------------------------------------------------------------------

HEADLINE_SQL = """
SELECT count(*) AS cases, count(*) FILTER (WHERE cured) AS cured,
       median(days_to_cure) AS median_days, avg(days_to_cure) AS mean_days
FROM kase
"""

STAGES_SQL = """
SELECT furthest_stage AS stage, count(*) AS cases, count(*) FILTER (WHERE cured) AS cured,
       median(days_to_cure) AS median_days
FROM kase
GROUP BY furthest_stage, stage_rank
ORDER BY stage_rank, furthest_stage
"""

CURE_CURVES_SQL = """
SELECT k.arm, d.day, count(*) AS cases,
       count(*) FILTER (WHERE k.cured AND floor(k.days_to_cure) <= d.day) AS cured
FROM kase k CROSS JOIN generate_series(0, $horizon) AS d(day)
GROUP BY k.arm, d.day
ORDER BY k.arm, d.day
"""

PROMISES_SQL = """
SELECT count(*) AS made,
       count(*) FILTER (WHERE p.status = 'kept') AS kept,
       count(*) FILTER (WHERE p.status IN ('kept', 'broken')) AS resolved,
       count(DISTINCT p.case_id) AS cases_with_promise
FROM promises p JOIN kase k ON k.id = p.case_id
"""

CHANNELS_SQL = """
SELECT channel, count(*) AS attempts, count(*) FILTER (WHERE delivered) AS delivered
FROM contact GROUP BY channel
"""

CHANNEL_COST_SQL = """
SELECT channel, currency, CAST(sum(cost_minor) AS BIGINT) AS cost_minor
FROM contact GROUP BY channel, currency ORDER BY channel, currency
"""

#: Right-party contact (``DEFINITIONS["right_party_contact"]``): one row per agent task.
RIGHT_PARTY_SQL = """
WITH task AS (
    SELECT o.task_key, bool_or(list_contains($connected, o.outcome)) AS reached
    FROM outcomes o JOIN kase k ON k.id = o.case_id
    WHERE o.outcome <> 'cancelled'
    GROUP BY o.task_key
)
SELECT count(*) AS tasks, count(*) FILTER (WHERE reached) AS reached FROM task
"""

RECOVERY_ALL_SQL = """
SELECT 'all' AS track, currency, count(*) AS cases,
       CAST(sum(entered_minor) AS BIGINT) AS entered, CAST(sum(recovered_minor) AS BIGINT) AS recovered
FROM case_money GROUP BY currency ORDER BY currency
"""

RECOVERY_STAGE_SQL = """
SELECT 'stage:' || furthest_stage AS track, currency, count(*) AS cases,
       CAST(sum(entered_minor) AS BIGINT) AS entered, CAST(sum(recovered_minor) AS BIGINT) AS recovered
FROM case_money GROUP BY furthest_stage, stage_rank, currency ORDER BY stage_rank, furthest_stage, currency
"""

#: A hand-off starts at the instant of the compliance decision that ran it (the workflow's clock;
#: the placement's own row has the worker's clock, which a time-skipping replay leaves behind),
#: else at its row's instant. A recall recorded before that start comes from such a clock too and
#: is not believed: the placement then runs to the case's end.
_HAND_OFF_START = "coalesce((SELECT min(d.decided_at) FROM decisions d WHERE d.run_key = h.idempotency_key), h.{at})"

RECOVERY_AGENCY_SQL = f"""
WITH placed AS (
    SELECT row_number() OVER () AS placement_id, h.case_id, h.agency, h.amount_minor, k.currency,
           h.workflow_id || '-placement-' || ({_CONTACT_KEY_ANCHOR.replace('idempotency_key', 'h.idempotency_key')}) AS child_id,
           {_HAND_OFF_START.format(at='placed_at')} AS started_at
    FROM placements h JOIN kase k ON k.id = h.case_id
), placement AS (
    SELECT p.*, (SELECT min(e.recorded_at) FROM hand_offs e WHERE e.child_workflow_id = p.child_id
                 AND e.status = 'recalled' AND e.recorded_at >= p.started_at) AS ended_at
    FROM placed p
), recovered AS (
    SELECT p.placement_id, coalesce(sum(y.applied_minor), 0) AS minor
    FROM placement p LEFT JOIN payments y ON y.case_id = p.case_id AND y.reversed_at IS NULL
        AND y.currency = p.currency AND coalesce(y.value_at, y.paid_at) >= p.started_at
        AND (p.ended_at IS NULL OR coalesce(y.value_at, y.paid_at) < p.ended_at)
    GROUP BY p.placement_id
)
SELECT 'agency:' || p.agency AS track, p.currency, count(DISTINCT p.case_id) AS cases,
       CAST(sum(p.amount_minor) AS BIGINT) AS entered, CAST(sum(r.minor) AS BIGINT) AS recovered
FROM placement p JOIN recovered r USING (placement_id)
GROUP BY p.agency, p.currency ORDER BY p.agency, p.currency
"""

RECOVERY_LEGAL_SQL = f"""
WITH referral AS (
    SELECT row_number() OVER () AS referral_id, h.case_id, h.amount_minor, k.currency,
           {_HAND_OFF_START.format(at='filed_at')} AS started_at
    FROM referrals h JOIN kase k ON k.id = h.case_id
), recovered AS (
    SELECT r.referral_id, coalesce(sum(y.applied_minor), 0) AS minor
    FROM referral r LEFT JOIN payments y ON y.case_id = r.case_id AND y.reversed_at IS NULL
        AND y.currency = r.currency AND coalesce(y.value_at, y.paid_at) >= r.started_at
    GROUP BY r.referral_id
)
SELECT 'legal' AS track, r.currency, count(DISTINCT r.case_id) AS cases,
       CAST(sum(r.amount_minor) AS BIGINT) AS entered, CAST(sum(x.minor) AS BIGINT) AS recovered
FROM referral r JOIN recovered x USING (referral_id)
GROUP BY r.currency ORDER BY r.currency
"""

#: Per currency: cost of the cases' contacts over their cures (rounded half up), and what they recovered.
COST_PER_CURE_SQL = """
SELECT currency, CAST(sum(cost_minor) AS BIGINT) AS cost, count(*) FILTER (WHERE cured) AS cures,
       CAST(sum(recovered_minor) AS BIGINT) AS recovered,
       CASE WHEN count(*) FILTER (WHERE cured) > 0
            THEN CAST((2 * sum(cost_minor) + count(*) FILTER (WHERE cured)) // (2 * count(*) FILTER (WHERE cured)) AS BIGINT)
       END AS cost_per_cure
FROM case_money GROUP BY currency ORDER BY currency
"""

ARMS_SQL = """
SELECT arm, min(experiment_id) AS experiment_id,
       CASE WHEN count(DISTINCT treatment) = 1 THEN min(treatment) END AS treatment,
       coalesce(min(strategy_arm), 'none') AS arm_name, count(*) AS cases, count(*) FILTER (WHERE cured) AS cured
FROM kase GROUP BY arm
"""

ARM_MONEY_SQL = """
SELECT arm, currency, CAST(sum(recovered_minor) AS BIGINT) AS recovered, CAST(sum(cost_minor) AS BIGINT) AS cost,
       CASE WHEN count(*) FILTER (WHERE cured) > 0
            THEN CAST((2 * sum(cost_minor) + count(*) FILTER (WHERE cured)) // (2 * count(*) FILTER (WHERE cured)) AS BIGINT)
       END AS cost_per_cure
FROM case_money GROUP BY arm, currency ORDER BY arm, currency
"""

ARM_PROMISES_SQL = """
SELECT k.arm, count(*) FILTER (WHERE p.status = 'kept') AS kept,
       count(*) FILTER (WHERE p.status IN ('kept', 'broken')) AS resolved
FROM promises p JOIN kase k ON k.id = p.case_id GROUP BY k.arm
"""

# -- roll rates ----------------------------------------------------------------------------------

#: What ended a loan for good, and when: its write-off, or a case outcome that leaves the loan
#: out of the book (``store.writer.LOAN_STATUS_AFTER``).
LOAN_ENDINGS_SQL = """
SELECT loan_id, min(ended) AS ended_at, arg_min(status, ended) AS status FROM (
    SELECT loan_id, closed_at AS ended, outcome AS status FROM cases
    WHERE list_contains($final, outcome) AND closed_at IS NOT NULL
    UNION ALL
    SELECT loan_id, written_off_at AS ended, 'written_off' AS status FROM write_offs WHERE loan_id IS NOT NULL
) GROUP BY loan_id
"""

#: Each snapshot's column: closed once the loan ended for good, current at DPD 0, else its bucket.
SNAPSHOT_STATE_SQL = """
CREATE TABLE snapshot_state AS
SELECT s.*, CASE WHEN s.status <> 'active' THEN 'closed' WHEN s.days_past_due <= 0 THEN 'current'
    ELSE (SELECT b.name FROM bucket b WHERE s.days_past_due >= b.min_days
          AND (b.max_days IS NULL OR s.days_past_due <= b.max_days)) END AS state
FROM snapshots s
"""

#: ``DEFINITIONS["roll_rates"]``: loans by their bucket at one month-end and their column at the next.
ROLL_SQL = """
SELECT a.state AS from_state, b.state AS to_state, count(*) AS loans,
       CAST(sum(count(*)) OVER (PARTITION BY a.state) AS BIGINT) AS row_loans,
       count(*) / sum(count(*)) OVER (PARTITION BY a.state) AS share
FROM snapshot_state a
JOIN snapshot_state b ON b.loan_id = a.loan_id AND b.month_index = a.month_index + 1
WHERE a.state IN (SELECT name FROM bucket)
GROUP BY a.state, b.state
"""

ROLL_MONTHS_SQL = """
SELECT DISTINCT a.month FROM snapshot_state a
JOIN snapshot_state b ON b.loan_id = a.loan_id AND b.month_index = a.month_index + 1
ORDER BY a.month
"""

#: Loans in the first bucket at a month-end that are in a later bucket at the next.
ROLL_FORWARD_SQL = """
SELECT count(*) AS loans, count(*) FILTER (WHERE nb.ordinal > 0) AS rolled
FROM snapshot_state a
JOIN snapshot_state b ON b.loan_id = a.loan_id AND b.month_index = a.month_index + 1
LEFT JOIN bucket nb ON nb.name = b.state
WHERE a.state = (SELECT name FROM bucket WHERE ordinal = 0)
"""

# -- whatif ------------------------------------------------------------------------------------------

WHATIF_SQL = """
SELECT (SELECT count(*) FROM kase) AS cases,
       (SELECT count(*) FILTER (WHERE cured) FROM kase) AS cures,
       count(*) FILTER (WHERE delivered AND channel IN ('sms', 'email')) AS messages,
       count(*) FILTER (WHERE delivered AND channel = 'letter') AS letters,
       count(*) FILTER (WHERE delivered AND channel = 'agent_task') AS agent_tasks,
       count(*) FILTER (WHERE delivered AND channel IN ('agency', 'legal')) AS hand_offs
FROM contact
"""

WHATIF_MONEY_SQL = """
SELECT currency, CAST(sum(recovered_minor) AS BIGINT) AS recovered, CAST(sum(cost_minor) AS BIGINT) AS cost
FROM case_money GROUP BY currency ORDER BY currency
"""


# ---------------------------------------------------------------------------------------------------


def compute_kpis(engine: Engine, policy: CollectionPolicy, filters: Filters | None = None, *,
                 now: datetime | None = None) -> KpiReport:
    """The KPI report of the cases ``filters`` select (default: all), from the product's tables
    on ``engine`` (SQLite or PostgreSQL), with ``policy``'s DPD buckets (``[reporting]``), unit
    costs (``[unit_costs]``), ladders (stage order) and experiments (champions). ``now`` (default:
    the clock) is the report's instant: the last month-end roll rates use is the last one before
    it, and open cases count instalments due by then. Each figure's definition is in the report.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database failed.
    """
    filters = filters or Filters()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with _warehouse(engine, policy, filters, now) as (con, connection):
        top = _one(con, HEADLINE_SQL)
        roll_rates = _roll_rates(con, connection, policy, filters, now)
        promises = _promises(con, top["cases"])
        channels = _channels(con)
        recovery = _recovery(con)
        return KpiReport(
            generated_at=now,
            filters=filters,
            cases=top["cases"],
            headline=_headline(con, top, roll_rates, promises, channels, recovery),
            roll_rates=roll_rates,
            stages=_stages(con),
            cure_curves=_cure_curves(con, policy),
            promises=promises,
            channels=channels,
            recovery=recovery,
            arms=_arms(con, policy),
            comparisons=_comparisons(con, policy),
            definitions=dict(DEFINITIONS),
        )


def whatif_run(engine: Engine, policy: CollectionPolicy, *, policy_path: str, loans: int) -> WhatIfRun:
    """The totals of a simulation database (``simulate --policy``): its cases and cures, amount
    recovered and contact cost per currency, and the contacts delivered (messages: SMS and email;
    letters; agent tasks; hand-offs: agency placements and legal referrals), with the same
    definitions as ``compute_kpis`` over all cases. ``loans``: how many loans were replayed.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database failed.
    """
    with _warehouse(engine, policy, Filters(), datetime.now(UTC)) as (con, _):
        totals = _one(con, WHATIF_SQL)
        money = _all(con, WHATIF_MONEY_SQL)
    return WhatIfRun(policy_version=policy.version, policy_path=policy_path, loans=loans, cases=totals["cases"],
                     cures=totals["cures"], recovered_minor={r["currency"]: r["recovered"] for r in money},
                     messages=totals["messages"], letters=totals["letters"], agent_tasks=totals["agent_tasks"],
                     hand_offs=totals["hand_offs"], cost_minor={r["currency"]: r["cost"] for r in money})


# -- the warehouse: the tables in DuckDB ------------------------------------------------------------


@contextmanager
def _warehouse(engine: Engine, policy: CollectionPolicy, filters: Filters,
               now: datetime) -> Iterator[tuple[duckdb.DuckDBPyConnection, Connection]]:
    """An in-memory DuckDB database with the product's tables (``SOURCES``), each fact given its
    case (``ATTRIBUTION``), the policy's tables (stage order, buckets, unit costs) and the cases
    of ``filters`` (``scope``, ``kase``) with their contacts and money. Yields it with the
    SQLAlchemy connection it was read on (the loan book is read on it too)."""
    con = duckdb.connect(":memory:")
    try:
        with _reading(engine) as connection:
            inspector = inspect(connection)
            for name, (source, columns) in SOURCES.items():
                _register(con, f"src_{name}", _read(connection, inspector, source, columns), columns)
            con.execute("ALTER TABLE src_cases RENAME TO cases")
            for name, (episode, instant) in ATTRIBUTION.items():
                con.execute(ATTRIBUTION_SQL.format(name=name, episode=episode, instant=instant))
            con.execute("ALTER TABLE src_hand_offs RENAME TO hand_offs")
            con.execute("ALTER TABLE src_write_offs RENAME TO write_offs")
            _policy_tables(con, policy)
            params = {**filters.model_dump(), "now": _naive(now), "delivered": list(DELIVERED)}
            for sql in (CASE_BASE_SQL, SCOPE_SQL, KASE_SQL, CONTACT_SQL, CASE_MONEY_SQL):
                _run(con, sql, params)
            yield con, connection
    finally:
        con.close()


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads see one state of the database: on PostgreSQL a read-only
    REPEATABLE READ transaction (one snapshot for every table); SQLite reads as it is."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with connection.begin():
            yield connection


def _naive(value: datetime) -> datetime:
    """An instant as naive UTC, DuckDB's ``TIMESTAMP``."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def _read(connection: Connection, inspector: Any, source: str, columns: dict[str, str]) -> dict[str, np.ndarray]:
    """``source``'s ``columns`` as arrays; a column (or table) the database lacks is all NULL."""
    present = {c["name"] for c in inspector.get_columns(source)} if inspector.has_table(source) else set()
    names = [name for name in columns if name in present]
    rows = connection.execute(select(*[column(name) for name in names]).select_from(table(source))).all() if names else []
    found = {name: [_naive(value) if isinstance(value, datetime) else value for value in values]
             for name, values in zip(names, zip(*rows))}
    return {name: _array(found.get(name, [None] * len(rows))) for name in columns}


def _array(values: Sequence[Any]) -> np.ndarray:
    """``values`` as a one-dimensional object array, which DuckDB scans (strings, instants, NULLs)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _register(con: duckdb.DuckDBPyConnection, name: str, data: dict[str, np.ndarray], columns: dict[str, str]) -> None:
    """Put ``data`` in DuckDB as table ``name`` with ``columns``' types (an empty or all-NULL
    column keeps its type)."""
    con.register(f"raw_{name}", data)
    casts = ", ".join(f'CAST("{c}" AS {kind}) AS "{c}"' for c, kind in columns.items())
    con.execute(f"CREATE TABLE {name} AS SELECT {casts} FROM raw_{name}")
    con.unregister(f"raw_{name}")


def _columns(rows: Sequence[dict[str, Any]], columns: dict[str, str]) -> dict[str, np.ndarray]:
    """Rows (dicts) as one array per column."""
    return {name: _array([row[name] for row in rows]) for name in columns}


def _policy_tables(con: duckdb.DuckDBPyConnection, policy: CollectionPolicy) -> None:
    """``stage_order`` (step, rank), ``bucket`` (name, min_days, max_days, ordinal) and
    ``unit_cost`` (currency, action, cost_minor) from ``policy``."""
    stages = [{"step": step, "rank": rank} for rank, step in enumerate(ladder.stage_order(policy))]
    _register(con, "stage_order", _columns(stages, {"step": "VARCHAR", "rank": "INTEGER"}),
              {"step": "VARCHAR", "rank": "INTEGER"})
    buckets = [{"name": b.name, "min_days": b.min_days, "max_days": b.max_days, "ordinal": i}
               for i, b in enumerate(dpd_buckets(policy))]
    bucket_columns = {"name": "VARCHAR", "min_days": "INTEGER", "max_days": "INTEGER", "ordinal": "INTEGER"}
    _register(con, "bucket", _columns(buckets, bucket_columns), bucket_columns)
    costs = [{"currency": currency, "action": action, "cost_minor": minor}
             for currency, actions in (getattr(policy, "unit_costs", None) or {}).items()
             for action, minor in actions.items()]
    cost_columns = {"currency": "VARCHAR", "action": "VARCHAR", "cost_minor": "BIGINT"}
    _register(con, "unit_cost", _columns(costs, cost_columns), cost_columns)


def dpd_buckets(policy: CollectionPolicy) -> Sequence[Any]:
    """The policy's roll-rate buckets (``[reporting] dpd_buckets``; policies before them: 1-29,
    30-59, 60-89, 90+)."""
    reporting = getattr(policy, "reporting", None)
    return tuple(getattr(reporting, "dpd_buckets", None) or DEFAULT_BUCKETS)


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
    """Execute ``sql`` with the ``$name`` parameters it uses, taken from ``params``."""
    names = set(re.findall(r"\$([a-z_]+)", sql))
    return con.execute(sql, {name: (params or {})[name] for name in names})


def _all(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    cursor = _run(con, sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return _all(con, sql, params)[0]


def _rate(numerator: int, denominator: int, *, interval: bool = True) -> Rate:
    """``numerator / denominator`` with its Wilson 95 % interval (``interval``: a proportion)."""
    bounds = stats.wilson(numerator, denominator) if interval else None
    return Rate(numerator=numerator, denominator=denominator, value=numerator / denominator if denominator else None,
                low=bounds[0] if bounds else None, high=bounds[1] if bounds else None)


# -- the figures -----------------------------------------------------------------------------------


def _roll_rates(con: duckdb.DuckDBPyConnection, connection: Connection, policy: CollectionPolicy, filters: Filters,
                now: datetime) -> RollRateMatrix:
    """The month-on-month matrix (``DEFINITIONS["roll_rates"]``): snapshots of the loans of the
    scope at the month-ends in range, bucketed and paired in SQL."""
    buckets = [b.name for b in dpd_buckets(policy)]
    columns = ["current", *buckets, "closed"]
    loans = {row["loan_id"] for row in _all(con, "SELECT DISTINCT loan_id FROM scope ORDER BY loan_id")}
    if not (filters.policy_version or filters.strategy_arm or filters.segment or filters.channel):
        loans |= _book_loans(connection, filters.jurisdiction)  # the whole book, cases or not
    book = read_book(connection, loans)
    first_due = min((line.due_date for entry in book for line in entry.instalments), default=None)
    last_opened = _one(con, "SELECT max(opened_at) AS last FROM scope")["last"]
    months = _months(filters, first_due, last_opened, now)
    ended = {row["loan_id"]: (row["ended_at"].replace(tzinfo=UTC), row["status"])
             for row in _all(con, LOAN_ENDINGS_SQL, {"final": list(LOAN_STATUS_AFTER)})}
    snapshots = month_end_snapshots(book, policy, months, now=now, ended=ended) if months else []
    snapshot_columns = {"loan_id": "VARCHAR", "month": "VARCHAR", "month_index": "INTEGER", "days_past_due": "INTEGER",
                        "overdue_minor": "BIGINT", "status": "VARCHAR"}
    _register(con, "snapshots", _columns([vars(s) for s in snapshots], snapshot_columns), snapshot_columns)
    con.execute(SNAPSHOT_STATE_SQL)
    cells = {(r["from_state"], r["to_state"]): r for r in _all(con, ROLL_SQL)}
    counts = [[cells[(row, col)]["loans"] if (row, col) in cells else 0 for col in columns] for row in buckets]
    totals = {row: next((r["row_loans"] for (f, _), r in cells.items() if f == row), 0) for row in buckets}
    rates = [[(cells[(row, col)]["share"] if (row, col) in cells else 0.0) if totals[row] else None for col in columns]
             for row in buckets]
    cure = {row: _rate(cells[(row, "current")]["loans"] if (row, "current") in cells else 0, totals[row])
            for row in buckets}
    return RollRateMatrix(definition=DEFINITIONS["roll_rates"],
                          months=[r["month"] for r in _all(con, ROLL_MONTHS_SQL)],
                          rows=buckets, columns=columns, counts=counts, rates=rates, cure_rate_by_bucket=cure)


def _book_loans(connection: Connection, jurisdiction: str | None) -> set[str]:
    """Every loan of the loan book (of ``jurisdiction``): roll rates are the book's, not only of
    the loans that had a case."""
    loans = table("loans", column("id"), column("jurisdiction"))
    query = select(loans.c.id)
    if jurisdiction is not None:
        query = query.where(loans.c.jurisdiction == jurisdiction)
    return {row[0] for row in connection.execute(query)}


def _months(filters: Filters, first_due: date | None, last_opened: datetime | None, now: datetime) -> list[Month]:
    """The months whose last day is in the opening-date range, from the month the first instalment
    of the loans in scope fell due (at most ``ROLL_RATE_MONTHS`` before the month the last of their
    cases opened) to the month of ``now`` (each loan's snapshot waits for its month-end in its own
    zone)."""
    if first_due is None or last_opened is None:
        return []
    last = Month.of(now.date())
    first = max(Month.of(first_due), months_back(Month.of(last_opened.date()), ROLL_RATE_MONTHS - 1),
                key=lambda m: m.index)
    if filters.opened_from is not None and Month.of(filters.opened_from).index > first.index:
        first = Month.of(filters.opened_from)
    if filters.opened_to is not None:
        end = Month.of(filters.opened_to)
        if end.last_day != filters.opened_to:  # that month ends after the range
            end = end.preceding
        if end.index < last.index:
            last = end
    return months_from(first, last)


def _stages(con: duckdb.DuckDBPyConnection) -> list[StageFigure]:
    return [StageFigure(stage=r["stage"], cases=r["cases"], cured=_rate(r["cured"], r["cases"]),
                        median_days_to_cure=r["median_days"]) for r in _all(con, STAGES_SQL)]


def _cure_curves(con: duckdb.DuckDBPyConnection, policy: CollectionPolicy) -> list[CureCurve]:
    rows = _all(con, CURE_CURVES_SQL, {"horizon": CURE_CURVE_DAYS})
    arms = sorted({r["arm"] for r in rows}, key=_arm_order(policy))
    return [CureCurve(arm=arm, cases=next(r["cases"] for r in rows if r["arm"] == arm),
                      days=[r["day"] for r in rows if r["arm"] == arm],
                      cured_share=[r["cured"] / r["cases"] for r in rows if r["arm"] == arm])
            for arm in arms]


def _promises(con: duckdb.DuckDBPyConnection, cases: int) -> dict[str, Rate]:
    row = _one(con, PROMISES_SQL)
    return {
        "kept": _rate(row["kept"], row["resolved"]),
        "made_per_case": _rate(row["made"], cases, interval=False),
        "cases_with_promise": _rate(row["cases_with_promise"], cases),
    }


def _channels(con: duckdb.DuckDBPyConnection) -> list[ChannelFigure]:
    costs = _all(con, CHANNEL_COST_SQL)
    right_party = _one(con, RIGHT_PARTY_SQL, {"connected": list(CONNECTED_OUTCOMES)})
    figures = []
    for row in sorted(_all(con, CHANNELS_SQL), key=lambda r: _channel_key(r["channel"])):
        agent = row["channel"] == Channel.AGENT_TASK.value
        figures.append(ChannelFigure(
            channel=row["channel"], attempts=row["attempts"], delivered=row["delivered"],
            right_party_contact=_rate(right_party["reached"], right_party["tasks"]) if agent else None,
            cost_minor={c["currency"]: c["cost_minor"] for c in costs if c["channel"] == row["channel"]},
        ))
    return figures


def _channel_key(channel: str) -> tuple[int, str]:
    return (CHANNEL_ORDER.index(channel) if channel in CHANNEL_ORDER else len(CHANNEL_ORDER), channel)


def _recovery(con: duckdb.DuckDBPyConnection) -> list[RecoveryFigure]:
    rows = [r for sql in (RECOVERY_ALL_SQL, RECOVERY_STAGE_SQL, RECOVERY_AGENCY_SQL, RECOVERY_LEGAL_SQL)
            for r in _all(con, sql)]
    return [RecoveryFigure(track=r["track"], currency=r["currency"], cases=r["cases"], entered_minor=r["entered"],
                           recovered_minor=r["recovered"], rate=r["recovered"] / r["entered"] if r["entered"] else None)
            for r in rows]


def _arm_order(policy: CollectionPolicy) -> Callable[[str], tuple[bool, str, int, str]]:
    """A sort key of arm labels: by experiment, each experiment's arms in the policy's order
    (the champion first), others by name, ``none`` last."""
    rank = {f"{e.id}:{a.name}": i for e in (getattr(policy, "experiments", None) or ()) for i, a in enumerate(e.arms)}

    def key(arm: str) -> tuple[bool, str, int, str]:
        experiment, _, name = arm.rpartition(":")
        return (arm == NO_EXPERIMENT, experiment, rank.get(arm, len(rank)), name)

    return key


def _arms(con: duckdb.DuckDBPyConnection, policy: CollectionPolicy) -> list[ArmFigure]:
    money = _all(con, ARM_MONEY_SQL)
    promises = {r["arm"]: r for r in _all(con, ARM_PROMISES_SQL)}
    figures = []
    order = _arm_order(policy)
    for row in sorted(_all(con, ARMS_SQL), key=lambda r: order(r["arm"])):
        arm = row["arm"]
        kept = promises.get(arm, {"kept": 0, "resolved": 0})
        mine = [m for m in money if m["arm"] == arm]
        figures.append(ArmFigure(
            arm=arm, experiment_id=row["experiment_id"], treatment=row["treatment"], cases=row["cases"],
            cured=_rate(row["cured"], row["cases"]), promise_kept=_rate(kept["kept"], kept["resolved"]),
            recovered_minor={m["currency"]: m["recovered"] for m in mine},
            cost_minor={m["currency"]: m["cost"] for m in mine},
            cost_per_cure_minor={m["currency"]: m["cost_per_cure"] for m in mine},
        ))
    return figures


def _comparisons(con: duckdb.DuckDBPyConnection, policy: CollectionPolicy) -> list[ArmComparison]:
    """Every challenger with cases against its experiment's champion with cases
    (``DEFINITIONS["comparisons"]``). The champion is the experiment's first arm in ``policy``;
    for an experiment the policy no longer has, the arm with the most cases."""
    rows = [r for r in _all(con, ARMS_SQL) if r["experiment_id"] is not None]
    champions = {e.id: e.arms[0].name for e in (getattr(policy, "experiments", None) or ())}
    comparisons = []
    for experiment in sorted({r["experiment_id"] for r in rows}):
        arms = sorted((r for r in rows if r["experiment_id"] == experiment), key=lambda r: (-r["cases"], r["arm_name"]))
        name = champions.get(experiment, arms[0]["arm_name"])
        champion = next((r for r in arms if r["arm_name"] == name), None)
        if champion is None:
            continue
        for challenger in sorted((r for r in arms if r is not champion), key=lambda r: r["arm_name"]):
            test = stats.two_proportion_test(champion["cured"], champion["cases"], challenger["cured"], challenger["cases"])
            comparisons.append(ArmComparison(
                experiment_id=experiment, champion=champion["arm"], challenger=challenger["arm"],
                difference=test.difference, low=test.low, high=test.high, p_value=test.p_value,
                verdict=verdict(test, champion=champion["arm_name"], challenger=challenger["arm_name"],
                                champion_rate=champion["cured"] / champion["cases"],
                                cases=min(champion["cases"], challenger["cases"])),
            ))
    return comparisons


def _p(p_value: float) -> str:
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}" if p_value < 0.01 else f"p = {p_value:.2f}"


def _named(role: str, name: str) -> str:
    return name if name == role else f"{role} {name}"


def _about(count: int) -> str:
    """``count`` to two significant digits, with thousands separators (``1,300``)."""
    if count < 100:
        return f"{count:,}"
    digits = len(str(count)) - 2
    return f"{round(count, -digits):,}"


def verdict(test: stats.ProportionTest, *, champion: str, challenger: str, champion_rate: float, cases: int) -> str:
    """What the comparison supports, in words: ``challenger b cures more than champion a (p =
    0.01)``, or no difference yet with about how many more cases per arm (beyond the smaller arm's
    ``cases``) would show a 5-point difference from ``champion_rate`` (``stats.sample_size_per_arm``)."""
    if test.p_value is not None and test.p_value < stats.ALPHA and test.difference:
        direction = "more" if test.difference > 0 else "less"
        return f"{_named('challenger', challenger)} cures {direction} than {_named('champion', champion)} ({_p(test.p_value)})"
    step = DETECTABLE_DIFFERENCE if champion_rate + DETECTABLE_DIFFERENCE <= 1 else -DETECTABLE_DIFFERENCE
    needed = stats.sample_size_per_arm(champion_rate, step) - cases
    points = round(DETECTABLE_DIFFERENCE * 100)
    evidence = _p(test.p_value) if test.p_value is not None else (
        "no case of either arm cured yet" if champion_rate == 0 else "every case of both arms was cured")
    if needed <= 0:
        return (f"no difference shown ({evidence}; with {cases:,} cases per arm a {points}-point difference "
                "would have shown, so any difference is smaller)")
    return f"no difference shown yet ({evidence}; about {_about(needed)} more cases per arm would show a {points}-point difference)"


def _headline(con: duckdb.DuckDBPyConnection, top: dict[str, Any], roll_rates: RollRateMatrix,
              promises: dict[str, Rate], channels: list[ChannelFigure], recovery: list[RecoveryFigure]) -> list[Figure]:
    """The figures a manager reads first; money per currency."""
    first = roll_rates.rows[0] if roll_rates.rows else None
    rolled = _one(con, ROLL_FORWARD_SQL)
    agent = next((c.right_party_contact for c in channels if c.right_party_contact is not None), None)
    figures = [
        Figure(name="Cases", value=top["cases"], unit="cases", definition="Collection cases opened, in the filters."),
        Figure(name="Cure rate", value=_rate(top["cured"], top["cases"]).value, unit="share",
               definition="Cases cured over cases opened (open cases count as not cured yet). " + DEFINITIONS["cure"]),
        Figure(name="Median days to cure", value=top["median_days"], unit="days", definition=DEFINITIONS["time_to_cure"]
               + " The median over cured cases."),
        Figure(name="Mean days to cure", value=top["mean_days"], unit="days", definition=DEFINITIONS["time_to_cure"]
               + " The mean over cured cases."),
    ]
    if first is not None:
        figures.append(Figure(name=f"Roll rate out of {first}", value=_rate(rolled["rolled"], rolled["loans"]).value,
                              unit="share", definition=f"Loans at DPD {first} at a month-end that are in a later DPD "
                                                       "bucket at the next."))
    figures += [
        Figure(name="Promises kept", value=promises["kept"].value, unit="share",
               definition="Promises to pay kept, over promises kept or broken."),
        Figure(name="Right-party contact rate", value=agent.value if agent else None, unit="share",
               definition=DEFINITIONS["right_party_contact"]),
    ]
    for row in _all(con, COST_PER_CURE_SQL):
        currency = row["currency"]
        overall = next(r for r in recovery if r.track == "all" and r.currency == currency)
        figures += [
            Figure(name=f"Recovery rate ({currency})", value=overall.rate, unit="share",
                   definition=f"Payments applied to the debt of the cases in {currency} and not reversed, over their "
                              "overdue amount at opening plus the instalments that fell due while they ran."),
            Figure(name=f"Recovered ({currency})", value=row["recovered"], unit=f"minor units {currency}",
                   definition=f"Payments applied to the debt of cases in {currency}, not reversed."),
            Figure(name=f"Cost ({currency})", value=row["cost"], unit=f"minor units {currency}",
                   definition=DEFINITIONS["cost"]),
            Figure(name=f"Cost per cure ({currency})", value=row["cost_per_cure"], unit=f"minor units {currency}",
                   definition=f"Cost of the contacts of cases in {currency} over their cures ({row['cures']:,})."),
        ]
    return figures
