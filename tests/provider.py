"""A real local HTTP server standing in for an SMS/email/letter provider (not a mocked transport).

It answers each request with the next status of a script (then 200), and records every request
with its headers and JSON body so tests can count deliveries per idempotency key.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ProviderRequest:
    """One request the provider received."""

    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class FakeProvider:
    """A provider on 127.0.0.1 with a scripted list of answers: a status code, or a status code and
    the headers to send with it (``(429, {"Retry-After": "60"})``); then 200."""

    script: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[ProviderRequest] = field(default_factory=list)
    #: The JSON body of error answers (a provider that echoes the request can be scripted here).
    error_body: dict = field(default_factory=lambda: {"error": "scripted"})

    def __post_init__(self) -> None:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                provider.requests.append(ProviderRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                answer = provider.script.pop(0) if provider.script else 200
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                payload = json.dumps({"id": f"prov-{len(provider.requests)}"} if status < 300 else provider.error_body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *args) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Base URL of the provider."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def keys(self) -> list[str]:
        """The Idempotency-Key header of every request, in order."""
        return [r.headers.get("idempotency-key", "") for r in self.requests]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@dataclass
class ProviderDelivery:
    """One request an ``IdempotentProvider`` received, and how it answered it."""

    channel: str  # the path without its slash: sms, email, agent_task, letter, agency, legal
    idempotency_key: str
    body: dict
    #: ``time.monotonic()`` when it arrived.
    received_at: float
    #: The reference answered (``id``): a repeated key gets its first delivery's again.
    answer_id: str
    #: Whether the key had been delivered before (answered with the first result, not acted on).
    replayed: bool


@dataclass
class IdempotentProvider:
    """A provider that behaves like a real one towards retries: the first request with an
    ``Idempotency-Key`` is acted on (one message sent) and answered ``{"id": "prov-<n>"}``; any
    later request with the same key is answered with that first result (``Idempotent-Replayed:
    true``) and sends nothing. A request without a key is refused (400 ``missing_idempotency_key``).

    Every request is recorded (``deliveries``), so a test can count messages per key and per
    ``(loan_id, step, action)`` of the body. A body that is cut short (the client died while
    sending it) or is not a JSON object is refused with 400 ``malformed_body`` and acted on by
    nobody, as a real provider would. ``latency_seconds``: how long each answer takes
    after the request was recorded (a provider that acted, then was slow to answer: a client
    killed in between retries with the same key). ``port`` 0 takes any free port.
    """

    latency_seconds: float = 0.0
    port: int = 0
    deliveries: list[ProviderDelivery] = field(default_factory=list)
    #: The channels of requests refused unread (a body cut short or not a JSON object): nothing sent.
    refused: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        import time

        provider = self
        self._lock = threading.Lock()
        self._first: dict[str, str] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if len(raw) == length else None
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    # A real provider acts on nothing it could not read whole: a client killed
                    # while sending leaves a truncated body, refused and not delivered.
                    with provider._lock:
                        provider.refused.append(self.path.strip("/"))
                    self._answer(400, {"error": "malformed_body"})
                    return
                key = self.headers.get("Idempotency-Key", "")
                if not key:
                    self._answer(400, {"error": "missing_idempotency_key"})
                    return
                with provider._lock:
                    replayed = key in provider._first
                    if not replayed:
                        provider._first[key] = f"prov-{len(provider._first) + 1}"
                    answer_id = provider._first[key]
                    provider.deliveries.append(
                        ProviderDelivery(self.path.strip("/"), key, body,
                                         time.monotonic(), answer_id, replayed)
                    )
                if provider.latency_seconds:
                    time.sleep(provider.latency_seconds)
                self._answer(200, {"id": answer_id}, replayed=replayed)

            def _answer(self, status: int, payload: dict, replayed: bool = False) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if replayed:
                    self.send_header("Idempotent-Replayed", "true")
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client died waiting
                    pass

            def log_message(self, *args) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Base URL of the provider."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def snapshot(self) -> list[ProviderDelivery]:
        """The deliveries so far, in arrival order (a copy)."""
        with self._lock:
            return list(self.deliveries)

    def by_key(self) -> dict[str, list[ProviderDelivery]]:
        """Every request per idempotency key, in arrival order."""
        keys: dict[str, list[ProviderDelivery]] = {}
        for delivery in self.snapshot():
            keys.setdefault(delivery.idempotency_key, []).append(delivery)
        return keys

    def messages(self) -> dict[tuple[str, str, str], set[str]]:
        """The idempotency keys seen per ``(loan_id, step, action)`` of the request bodies (a
        hand-off's notices have no step: ``""``)."""
        seen: dict[tuple[str, str, str], set[str]] = {}
        for delivery in self.snapshot():
            body = delivery.body
            what = (str(body.get("loan_id", "")), str(body.get("step") or ""), str(body.get("action", "")))
            seen.setdefault(what, set()).add(delivery.idempotency_key)
        return seen

    def repeats(self) -> dict[str, int]:
        """Keys delivered more than once, with the number of repeats (answered with the first
        result, nothing sent again)."""
        return {key: len(items) - 1 for key, items in self.by_key().items() if len(items) > 1}

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
