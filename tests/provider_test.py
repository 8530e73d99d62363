"""The stand-in providers behave as real ones would towards a client that dies mid-request."""

from __future__ import annotations

import json
import socket

import httpx

from tests.provider import IdempotentProvider


def test_a_body_cut_short_by_a_dying_client_is_refused_and_delivers_nothing():
    provider = IdempotentProvider()
    try:
        body = json.dumps({"loan_id": "L-1", "step": "dpd_3", "action": "sms"}).encode()
        with socket.create_connection(provider.server.server_address) as conn:
            conn.sendall(
                b"POST /sms HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k-1\r\n"
                + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body[: len(body) // 2]
            )
            conn.shutdown(socket.SHUT_WR)  # the worker was killed half-way through the body
            conn.recv(4096)
        whole = httpx.post(f"{provider.url}/sms", json={"loan_id": "L-1", "step": "dpd_3", "action": "sms"},
                           headers={"Idempotency-Key": "k-1"})
        assert whole.status_code == 200 and whole.headers.get("Idempotent-Replayed") is None
        assert provider.refused == ["sms"]
        assert list(provider.messages()) == [("L-1", "dpd_3", "sms")]
        assert provider.repeats() == {}
    finally:
        provider.close()
