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
    """A provider on 127.0.0.1 with a scripted list of status codes to answer with."""

    script: list[int] = field(default_factory=list)
    requests: list[ProviderRequest] = field(default_factory=list)
    #: The JSON body of error answers (a provider that echoes the request can be scripted here).
    error_body: dict = field(default_factory=lambda: {"error": "scripted"})

    def __post_init__(self) -> None:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                provider.requests.append(ProviderRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = provider.script.pop(0) if provider.script else 200
                payload = json.dumps({"id": f"prov-{len(provider.requests)}"} if status < 300 else provider.error_body)
                self.send_response(status)
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
