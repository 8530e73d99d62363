"""Structured logging (structlog): stable event names with ids, never personal data at info.

``configure_logging`` sends structlog's events and the standard library's records (the Temporal
SDK's ``temporalio.*`` loggers, ``workflow.logger``, ``activity.logger``) through one handler,
so with ``LOG_JSON=true`` every line on stderr is one JSON object with the same fields:

- ``timestamp`` (UTC, ISO 8601), ``level``, ``event``, ``logger``/``component``;
- inside an activity: ``workflow_id``, ``run_id``, ``workflow_type``, ``activity`` (the activity
  type), ``attempt`` and ``loan_id`` (bound by ``observability.LogContextInterceptor`` from the
  activity's input, or read from ``temporalio.activity.info()``);
- from workflow code (``workflow.logger``, not logged while a history replays): ``workflow_id``,
  ``run_id``, ``workflow_type`` and ``loan_id``.

Personal data is redacted at INFO and above (``redact_personal_data``): values under personal
keys (``name``, ``phone``, ``email``, ``address``, ``body``...) become ``"[redacted]"``, and
email addresses and phone numbers anywhere in a value are masked. DEBUG events are left as they
are: ``contact.rendered`` carries the rendered message on purpose, for a developer's debugging.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"
#: Keys whose values are personal data (compared lower-cased). Technical addresses are named
#: for what they are (``temporal_address``, ``metrics_address``) and are not in this list.
PERSONAL_KEYS = frozenset(
    {
        "name", "full_name", "first_name", "last_name", "borrower_name", "attorney_name",
        "phone", "phone_number", "mobile", "borrower_phone",
        "email", "email_address", "borrower_email",
        "address", "postal_address", "home_address", "borrower_address",
        "destination", "to", "recipient",
        "body", "subject", "rendered", "rendered_message", "message_body", "note", "notes",
    }
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONES = (
    # International: +86 138 0000 0000, +1 (415) 555-0100, +447700900123
    re.compile(r"\+\d[\d\s().-]{6,}\d"),
    # North American grouping: (415) 555-0100, 415-555-0100, 415.555.0100
    re.compile(r"(?<![\w-])\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?![\w-])"),
    # National with a trunk 0: 07700 900123, 020 7946 0018, 010-1234-5678
    re.compile(r"(?<![\w:/.-])0\d{2,4}[\s-]?\d{3,4}[\s-]?\d{3,4}(?![\w-])"),
    # Mainland China mobiles: 13800000000
    re.compile(r"(?<![\w.-])1[3-9]\d{9}(?![\w-])"),
)
#: Levels at which personal data is left as is (structlog's level names).
_UNREDACTED_LEVELS = frozenset({"debug", "notset"})


def mask_text(text: str) -> str:
    """``text`` with email addresses and phone numbers replaced by ``[email]`` / ``[phone]``."""
    text = _EMAIL.sub("[email]", text)
    for pattern in _PHONES:
        text = pattern.sub("[phone]", text)
    return text


def _is_personal(key: object) -> bool:
    if not isinstance(key, str):
        return False
    return key.lower() in PERSONAL_KEYS


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if depth > 6:
        return value
    if isinstance(value, Mapping):
        return {k: (REDACTED if _is_personal(k) and v is not None else _scrub(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_scrub(item, depth + 1) for item in value]
    return value


def redact_personal_data(_logger: Any, _method: str, event_dict: dict) -> dict:
    """structlog processor: at INFO and above, redact personal keys and mask emails/phones."""
    if str(event_dict.get("level", _method)).lower() in _UNREDACTED_LEVELS:
        return event_dict
    return {
        key: (REDACTED if _is_personal(key) and value is not None else _scrub(value))
        for key, value in event_dict.items()
    }


def loan_id_from_workflow_id(workflow_id: str | None) -> str | None:
    """The loan id in a case's workflow id (``collection-<loan>``) or a child's
    (``collection-<loan>-plan-<id>``, ``-placement-<date>``, ``-legal-<date>``)."""
    from collections_domain.case.contract import WORKFLOW_ID_PREFIX

    if not workflow_id or not workflow_id.startswith(WORKFLOW_ID_PREFIX):
        return None
    rest = workflow_id[len(WORKFLOW_ID_PREFIX):]
    for marker in ("-plan-", "-placement-", "-legal-"):
        head, found, _ = rest.rpartition(marker)
        if found and head:
            return head
    return rest or None


def add_temporal_context(_logger: Any, _method: str, event_dict: dict) -> dict:
    """structlog processor: the workflow/activity fields, from the SDK's ``temporal_workflow`` /
    ``temporal_activity`` log extras or, inside an activity, from ``activity.info()``.

    Never overrides a field the event already has (bound context or the call's own keys).
    """
    event_dict.pop("temporal_log", None)  # the core's raw record (forwarded core logs): not JSON
    # Attributes another handler's formatter left on a stdlib record (ExtraAdder copies them).
    if event_dict.get("message") == event_dict.get("event"):
        event_dict.pop("message", None)
    event_dict.pop("asctime", None)
    details = event_dict.pop("temporal_activity", None)
    if details is None:
        try:
            from temporalio import activity

            if activity.in_activity():
                info = activity.info()
                details = {
                    "activity_type": info.activity_type,
                    "attempt": info.attempt,
                    "workflow_id": info.workflow_id,
                    "workflow_run_id": info.workflow_run_id,
                    "workflow_type": info.workflow_type,
                }
        except Exception:  # noqa: BLE001 - logging must never fail the caller
            details = None
    if isinstance(details, Mapping):
        event_dict.setdefault("workflow_id", details.get("workflow_id"))
        event_dict.setdefault("run_id", details.get("workflow_run_id"))
        event_dict.setdefault("workflow_type", details.get("workflow_type"))
        event_dict.setdefault("activity", details.get("activity_type"))
        event_dict.setdefault("attempt", details.get("attempt"))
    workflow_details = event_dict.pop("temporal_workflow", None)
    if isinstance(workflow_details, Mapping):
        for key in ("workflow_id", "run_id", "workflow_type"):
            if key in workflow_details:
                event_dict.setdefault(key, workflow_details[key])
        for key in ("update_id", "update_name"):
            if key in workflow_details:
                event_dict.setdefault(key, workflow_details[key])
    if "loan_id" not in event_dict and event_dict.get("workflow_id"):
        loan_id = loan_id_from_workflow_id(str(event_dict["workflow_id"]))
        if loan_id:
            event_dict["loan_id"] = loan_id
    return event_dict


def _drop_none_context(_logger: Any, _method: str, event_dict: dict) -> dict:
    for key in ("workflow_id", "run_id", "workflow_type", "activity", "attempt"):
        if key in event_dict and event_dict[key] is None:
            del event_dict[key]
    return event_dict


#: Activity failures that are business outcomes the workflow handles (a fallback task, a refused
#: input): logged as one line with their type and message, without a traceback.
EXPECTED_FAILURES = frozenset({"NoContactDetails", "DeliveryRejected", "ContactWindowClosed", "InvalidCaseInput"})


class ExpectedFailureFilter(logging.Filter):
    """Drop the traceback of a log record whose exception is one of ``EXPECTED_FAILURES`` (the
    SDK logs every failed activity with one); the record keeps its message and level."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and getattr(error, "type", None) in EXPECTED_FAILURES:
            record.exc_info = None
            record.exc_text = None
            record.msg = f"{record.msg} ({error.type}: {getattr(error, 'message', error)})"
        return True


def configure_logging(level: str = "INFO", json: bool = False, *, stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to ``stream`` (stderr), as JSON lines or readable
    console lines, with the Temporal context fields and personal data redacted at INFO+."""
    level_no = logging.getLevelName(level.upper())
    if not isinstance(level_no, int):
        level_no = logging.INFO
    renderer = structlog.processors.JSONRenderer(default=str) if json else structlog.dev.ConsoleRenderer(colors=False)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    # Applied to the standard library's records (the SDK's loggers) before the shared tail.
    foreign_pre_chain = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        timestamper,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign_pre_chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            add_temporal_context,
            _drop_none_context,
            structlog.processors.format_exc_info,
            redact_personal_data,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("collections")
    handler.addFilter(ExpectedFailureFilter())
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != "collections"] + [handler]
    root.setLevel(level_no)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Not cached: a reconfiguration (tests, a second entry point) applies to module loggers too.
        cache_logger_on_first_use=False,
    )
    if json:
        # The context is in the JSON fields; keep the SDK's messages to their text.
        from temporalio import activity, workflow

        workflow.logger.workflow_info_on_message = False
        activity.logger.activity_info_on_message = False


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger bound to ``component=name``.

    Until an entry point calls ``configure_logging``, only warnings and errors are printed, so
    that a library user never sees debug events (which may carry rendered messages).
    """
    if not structlog.is_configured():
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return structlog.get_logger(component=name)
