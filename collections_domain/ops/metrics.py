"""The product's own counters, emitted through the Temporal SDK's metric meter.

They appear on the same Prometheus endpoint as the SDK's metrics (``METRICS_BIND_ADDRESS``, see
``collections_domain.ops.observability``). Workflow code counts through ``workflow.metric_meter()``
(``count_in_workflow``): nothing is emitted while a history replays, and no command is added,
so counting never changes a workflow's history. Activities count through
``activity.metric_meter()`` (``count_in_activity``).

Labels are low-cardinality values only (jurisdiction, currency, step, action, outcome...):
never a loan, borrower or signal id, and never personal data. The SDK adds ``namespace``,
``task_queue`` and ``workflow_type`` (workflows) or ``activity_type`` (activities), and the
Prometheus exporter adds ``service_name``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from temporalio import activity, workflow
from temporalio.common import MetricMeter

CASES_OPENED = "collections_cases_opened"
CASES_CLOSED = "collections_cases_closed"
STEPS_TAKEN = "collections_steps_taken"
PROMISES_KEPT = "collections_promises_kept"
PROMISES_BROKEN = "collections_promises_broken"
SIGNALS_REJECTED = "collections_signals_rejected"
UPDATES_REJECTED = "collections_updates_rejected"
CONTACT_DELIVERIES = "collections_contact_deliveries"

#: Every product counter with its help text (and its labels, for the README and the tests).
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    CASES_OPENED: ("Collections cases opened", ("jurisdiction", "currency")),
    CASES_CLOSED: ("Collections cases ended, by outcome (cured, settled, written_off, closed_*)", ("outcome", "jurisdiction")),
    STEPS_TAKEN: (
        "Ladder step actions taken: one per action of a step, with the compliance decision and the result",
        ("step", "action", "channel", "decision", "status", "jurisdiction"),
    ),
    PROMISES_KEPT: ("Promises to pay kept", ("jurisdiction",)),
    PROMISES_BROKEN: ("Promises to pay broken", ("jurisdiction",)),
    SIGNALS_REJECTED: ("Signals rejected and recorded, by signal and field", ("signal", "field")),
    UPDATES_REJECTED: ("Updates refused by the case, by update and field", ("update", "field")),
    CONTACT_DELIVERIES: ("Contact activity deliveries, by channel, back-end and result", ("action", "channel", "backend", "result")),
}

_FIELD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]{0,63})\s*:")


def rejected_field(reason: str) -> str:
    """The field a rejection names (reasons read ``"<field>: <rule>"``), or ``other``."""
    match = _FIELD.match(reason or "")
    return match.group(1) if match else "other"


def _add(meter: MetricMeter, name: str, labels: Mapping[str, object], value: int) -> None:
    description, _ = COUNTERS[name]
    meter.create_counter(name, description).add(value, {key: str(val) for key, val in labels.items()})


def count_in_workflow(name: str, value: int = 1, **labels: object) -> None:
    """Add ``value`` to counter ``name`` from workflow code (skipped during replay)."""
    _add(workflow.metric_meter(), name, labels, value)


def count_in_activity(name: str, value: int = 1, **labels: object) -> None:
    """Add ``value`` to counter ``name`` from an activity (a no-op meter in ``ActivityEnvironment``)."""
    try:
        meter = activity.metric_meter()
    except RuntimeError:
        return  # not in an activity, or a non-threaded sync activity: nothing to count with
    _add(meter, name, labels, value)
