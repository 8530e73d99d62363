"""Metrics endpoint and log context for the worker (and any process with a Temporal client).

- ``configure_runtime(settings)``: a Temporal ``Runtime`` whose Prometheus exporter serves
  ``http://<METRICS_BIND_ADDRESS>/metrics``: the SDK's own metrics (``temporal_*``: workflow and
  activity completions, failures, latencies, poller and slot gauges...) and the product's
  counters (``collections_*``, see ``collections_domain.ops.metrics``). Pass it to
  ``client.connect(settings, runtime=...)``; every worker built on that client reports there.
- ``LogContextInterceptor``: binds ``loan_id``, ``workflow_id``, ``run_id``, ``activity`` and
  ``attempt`` into structlog's context for the duration of each activity, so every log line the
  activity (or the SDK's ``activity.logger``) writes carries them.

An HTTP app (the API) that wants the same text format on its own ``/metrics`` route has two
choices: give its own client a runtime from ``configure_runtime`` with another
``METRICS_BIND_ADDRESS`` (one bind address per process) and let Prometheus scrape that port, or
serve ``await scrape_text(address)`` (the runtime's exposition, fetched on localhost) followed
by its own counters (e.g. ``prometheus_client.generate_latest()``) from its route.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import structlog
from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from collections_domain.ops.settings import Settings
from collections_domain.store.faults import database_fault

#: The content type of Prometheus' text exposition format.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_RUNTIMES: dict[str, Runtime] = {}
#: The SDK core's own log lines (Rust) go to this stdlib logger when logs are JSON.
CORE_LOGGER = "temporalio.core"


def configure_runtime(settings: Settings, *, bind_address: str | None = None) -> Runtime | None:
    """The process's Temporal runtime exporting Prometheus metrics on ``bind_address``
    (default ``settings.metrics_bind_address``; empty: no metrics).

    With ``LOG_JSON=true`` the runtime also forwards the SDK core's own log lines (warnings and
    errors) to the stdlib logger ``temporalio.core``, so they come out as JSON like the rest
    (otherwise the core prints them as text). Returns ``None`` when there is nothing to
    configure (no metrics, text logs): clients then use the SDK's default runtime.

    One runtime per address and process: calling again with the same address returns the same
    runtime (a second exporter could not bind the port).

    Raises:
        ValueError: the address cannot be bound (in use, or not ``host:port``).
    """
    address = (settings.metrics_bind_address if bind_address is None else bind_address).strip()
    forward_logs = bool(settings.log_json)
    if not address and not forward_logs:
        return None
    key = address or "(no metrics)"
    runtime = _RUNTIMES.get(key)
    if runtime is None:
        logging_config = LoggingConfig.default
        if forward_logs:
            logging_config = LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger(CORE_LOGGER)),
            )
        runtime = Runtime(
            telemetry=TelemetryConfig(
                logging=logging_config,
                metrics=PrometheusConfig(bind_address=address) if address else None,
            )
        )
        _RUNTIMES[key] = runtime
    return runtime


def metrics_url(bind_address: str) -> str:
    """``http://<host>:<port>/metrics`` for a bind address (``0.0.0.0`` is scraped on localhost)."""
    host, _, port = bind_address.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/metrics"


async def scrape_text(bind_address: str, *, timeout: float = 5.0) -> str:
    """The Prometheus text the runtime on ``bind_address`` serves (for an app's own route)."""
    async with httpx.AsyncClient(timeout=timeout) as http:
        response = await http.get(metrics_url(bind_address))
        response.raise_for_status()
        return response.text


def _loan_id_of(args: Any) -> str | None:
    for arg in args or ():
        loan_id = getattr(arg, "loan_id", None)
        if isinstance(loan_id, str) and loan_id:
            return loan_id
    return None


class _ActivityLogContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        context = {
            "workflow_id": info.workflow_id,
            "run_id": info.workflow_run_id,
            "workflow_type": info.workflow_type,
            "activity": info.activity_type,
            "attempt": info.attempt,
        }
        loan_id = _loan_id_of(input.args)
        if loan_id:
            context["loan_id"] = loan_id
        context = {key: value for key, value in context.items() if value is not None}
        # Synchronous activities run in the thread pool with a copy of this task's context.
        with structlog.contextvars.bound_contextvars(**context):
            try:
                return await self.next.execute_activity(input)
            except SQLAlchemyError as err:
                # Never the statement or its values: they reach the history and the log.
                raise database_fault(err, info.attempt) from None


class LogContextInterceptor(Interceptor):
    """Worker interceptor: each activity's log lines carry its loan, workflow and attempt, and a
    database error leaves an activity as ``store.faults.database_fault`` (a code and the table,
    retried after a delay), never as SQLAlchemy's message with the statement and its values."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityLogContext(next)
