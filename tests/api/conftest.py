"""Fixtures of the API's fault and attack tests: a free port, settings on a fresh SQLite file with
Temporal pointed at a closed port, an app served by a real uvicorn in a thread, and the shared
dev server of the end-to-end tests (``tests/e2e/conftest.py``) for the tests that need one."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from collections_domain.ops.settings import Settings
from tests.e2e.conftest import local_env  # noqa: F401  (the session's dev server, for parallel_open_test)
from tests.keys import TEST_PAYLOAD_KEYS


def free_port() -> int:
    """A TCP port nothing listens on now (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_settings(tmp_path: Path, **overrides) -> Settings:
    """Settings on ``tmp_path/collections.db`` whose Temporal address is a closed port."""
    return Settings(database_url=f"sqlite:///{tmp_path / 'collections.db'}", data_dir=tmp_path,
                    temporal_address=f"127.0.0.1:{free_port()}", payload_keys=TEST_PAYLOAD_KEYS, **overrides)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return api_settings(tmp_path)


class ServedApp:
    """``app`` served by uvicorn (h11, lifespan on) on 127.0.0.1:``port`` in a thread."""

    def __init__(self, app, port: int):
        self.port = port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http="h11",
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def serve() -> Iterator:
    """``serve(app)``: a started ``ServedApp`` on a free port, stopped after the test."""
    served: list[ServedApp] = []

    def start(app) -> ServedApp:
        server = ServedApp(app, free_port()).__enter__()
        served.append(server)
        return server

    yield start
    for server in served:
        server.__exit__(None, None, None)
