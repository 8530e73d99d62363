"""Delivery back-ends: ``record`` (store and log, offline) and ``http`` (JSON POST to a provider).

The http back-end classifies failures for Temporal's retry policy: 5xx, 408, 425, 429 and network
errors or timeouts raise ``DeliveryRetryableError`` (retried, after the provider's ``Retry-After``
when it sends one); any other 4xx raises a non-retryable ``ApplicationError`` (the workflow then
records the failure and falls back).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from temporalio.exceptions import ApplicationError

from collections_domain.ops.logs import get_logger

log = get_logger("delivery")

RETRYABLE_STATUS = {408, 425, 429}
#: The longest ``Retry-After`` honoured: a provider asking for more is tried again after this.
MAX_RETRY_AFTER = timedelta(hours=1)


class DeliveryRetryableError(Exception):
    """A delivery that may succeed if tried again (5xx, 408/429, timeout, connection error).

    ``retry_after`` is the wait the provider asked for (its ``Retry-After`` header, at most
    ``MAX_RETRY_AFTER``), or ``None`` when it asked for none."""

    def __init__(self, message: str, retry_after: timedelta | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_of(value: str | None, now: datetime | None = None) -> timedelta | None:
    """The wait a ``Retry-After`` header asks for (RFC 9110 10.2.3: delay-seconds or an
    HTTP-date), between 0 and ``MAX_RETRY_AFTER``; ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        wait = timedelta(seconds=int(value[:7]))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        wait = when - (now or datetime.now(UTC))
    return max(timedelta(0), min(wait, MAX_RETRY_AFTER))


@dataclass(frozen=True)
class Delivery:
    """One thing to deliver on ``channel``; ``payload`` holds the rendered content and target."""

    idempotency_key: str
    channel: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class DeliveryReceipt:
    """The back-end's acknowledgement: ``status`` (``sent``/``recorded``) and its reference."""

    status: str
    provider_reference: str | None


class DeliveryBackend(Protocol):
    """Sends a ``Delivery``; raises ``DeliveryRetryableError`` or ``ApplicationError``."""

    name: str

    def deliver(self, delivery: Delivery) -> DeliveryReceipt: ...

    def close(self) -> None: ...


class RecordDelivery:
    """Stores nothing outside the database: the activity keeps the rendered message; this logs it."""

    name = "record"

    def deliver(self, delivery: Delivery) -> DeliveryReceipt:
        reference = "rec-" + hashlib.sha256(delivery.idempotency_key.encode()).hexdigest()[:16]
        log.info("delivery.recorded", channel=delivery.channel, idempotency_key=delivery.idempotency_key)
        return DeliveryReceipt(status="recorded", provider_reference=reference)

    def close(self) -> None:
        return None


class HttpDelivery:
    """POSTs JSON to ``<base_url>/<channel>`` with a bearer token and an ``Idempotency-Key``."""

    name = "http"

    def __init__(self, base_url: str, token: str | None, timeout_seconds: float = 10.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout_seconds)

    def deliver(self, delivery: Delivery) -> DeliveryReceipt:
        try:
            response = self._client.post(
                delivery.channel,
                json=delivery.payload,
                headers={"Idempotency-Key": delivery.idempotency_key},
            )
        except httpx.TimeoutException as err:
            raise DeliveryRetryableError(f"{delivery.channel}: provider timed out: {err!r}") from err
        except httpx.TransportError as err:
            raise DeliveryRetryableError(f"{delivery.channel}: provider unreachable: {err!r}") from err
        status = response.status_code
        if status >= 500 or status in RETRYABLE_STATUS:
            raise DeliveryRetryableError(f"{delivery.channel}: provider answered {status}",
                                         retry_after_of(response.headers.get("Retry-After")))
        if status >= 400:
            # The message goes into the workflow history: never the provider's body, which may echo
            # the recipient's details; only its error code when it is a plain token.
            log.debug("delivery.rejected", channel=delivery.channel, status=status, body=response.text[:500])
            code = _provider_error_code(response)
            raise ApplicationError(
                f"{delivery.channel}: provider rejected the request with {status}" + (f" ({code})" if code else ""),
                type="DeliveryRejected",
                non_retryable=True,
            )
        reference = None
        try:
            body = response.json()
            if isinstance(body, dict):
                reference = str(body.get("id") or body.get("reference") or "") or None
        except ValueError:
            pass
        log.info("delivery.sent", channel=delivery.channel, idempotency_key=delivery.idempotency_key, status=status)
        return DeliveryReceipt(status="sent", provider_reference=reference)

    def close(self) -> None:
        self._client.close()


def backend_from_settings(settings: Any) -> DeliveryBackend:
    """The back-end ``settings.delivery_backend`` names.

    Raises:
        ValueError: ``http`` without ``DELIVERY_HTTP_URL``.
    """
    if settings.delivery_backend == "http":
        if not settings.delivery_http_url:
            raise ValueError("DELIVERY_HTTP_URL: required when DELIVERY_BACKEND=http")
        return HttpDelivery(
            settings.delivery_http_url, settings.delivery_http_token, settings.delivery_http_timeout_seconds
        )
    return RecordDelivery()


def _provider_error_code(response: httpx.Response) -> str | None:
    """A provider's error code from a JSON body (``code``, ``error`` or ``error_code``) when it is
    a short token of letters, digits, ``.``, ``_`` or ``-``; ``None`` otherwise."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for key in ("code", "error_code", "error"):
        value = body.get(key)
        if isinstance(value, str | int) and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", str(value)):
            return str(value)
    return None
