"""Request smuggling: a request with both ``Content-Length`` and ``Transfer-Encoding`` is refused
(400 problem+json, ``Connection: close``) and the connection closed, so a second request hidden
in the same bytes never runs. Raw sockets against a real uvicorn server (h11)."""

import socket

from prometheus_client import generate_latest

from api.app import create_app
from collections_domain.store.db import make_engine


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send ``raw`` on one connection and read until the server closes it (or ``timeout`` s of
    silence: a connection kept open after the answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            received += b"\n<<still open>>"
    return received


def smuggling(first_line: bytes, body: bytes, hidden: bytes) -> bytes:
    """A POST framed both ways: chunked says it ends after ``0``, Content-Length says it goes on
    over ``hidden`` (the classic TE.CL desync)."""
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    return (first_line + b"\r\nHost: api\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % (len(chunked) + len(hidden))
            + chunked + hidden)


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(settings, serve):
    app = create_app(settings, engine=make_engine(settings.resolved_database_url))
    server = serve(app)
    hidden = b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n"
    answer = exchange(server.port, smuggling(b"POST /v1/cases HTTP/1.1", b'{"loan_id": "L-1"}', hidden))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    headers = head.lower()
    assert b"content-type: application/problem+json" in headers and b"connection: close" in headers, answer
    assert b"ambiguous-framing" in body and b"header.Transfer-Encoding" in body, answer
    assert answer.count(b"HTTP/1.1 ") == 1 and b"<<still open>>" not in answer, answer
    # The hidden request never ran: no /healthz was counted.
    assert b'route="/healthz"' not in generate_latest(app.state.metrics.registry)


def test_two_different_content_lengths_are_refused(settings, serve):
    """(h11 itself refuses these; identical repeated values are one header, as RFC 9110 allows.)"""
    server = serve(create_app(settings, engine=make_engine(settings.resolved_database_url)))
    raw = (b"POST /v1/cases HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
           b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
    answer = exchange(server.port, raw)
    assert answer.startswith(b"HTTP/1.1 400") and answer.count(b"HTTP/1.1 ") == 1, answer


def test_a_plain_keep_alive_pipeline_still_works(settings, serve):
    """The refusal is for ambiguous framing only: two pipelined GETs get two answers."""
    server = serve(create_app(settings, engine=make_engine(settings.resolved_database_url)))
    raw = b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\nGET /healthz HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n"
    answer = exchange(server.port, raw)
    assert answer.count(b"HTTP/1.1 200") == 2, answer
