"""The HTTP API against its own OpenAPI document, with Schemathesis: generated valid and invalid
requests (coverage, fuzzing and stateful phases) on a real uvicorn server, the real Temporal dev
server and a worker. No 5xx on any input; every response matches the schema (status codes,
content types, headers, bodies); invalid input is refused; auth is enforced.

One check is left out: ``positive_data_acceptance`` expects every schema-valid request to
succeed, but the domain has rules a schema cannot state (a loan with no case answers 404, a time
zone must exist, a page token must be one the API issued). Those answers are 4xx problems, checked
by the other checks and by ``api_test.py``.

``SCHEMATHESIS_SEED`` and ``SCHEMATHESIS_MAX_EXAMPLES`` change the run (defaults: a fixed seed,
50 examples per operation); the summary is printed with ``pytest -s``.
"""

import asyncio
import os
import socket
import sys
from pathlib import Path


from api import keys
from api.app import create_app
from tests.helpers import ServedInLoop

SEED = os.environ.get("SCHEMATHESIS_SEED", "20261130")
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "50")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_the_api_meets_its_own_openapi_schema(local_env, harness_factory, tmp_path):
    harness = harness_factory(local_env)
    admin_key = keys.create_api_key(harness.engine, "schemathesis", ["admin"])[1]
    # The schema is served for this test only (API_DOCS_ENABLED is off by default), and the
    # generated requests with made-up keys must not get the runner's own address throttled.
    settings = harness.settings.model_copy(update={"api_docs_enabled": True, "api_auth_failures_per_minute": 1_000_000})
    app = create_app(settings, client=harness.client, engine=harness.engine)
    port = free_port()
    served = ServedInLoop(app, port, lifespan="on")
    async with harness.worker:
        await served.start()
        try:
            report = tmp_path / "schemathesis.txt"
            process = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "schemathesis"), "run", f"http://127.0.0.1:{port}/openapi.json",
                "--header", f"Authorization: Bearer {admin_key}",
                "--checks", "all", "--exclude-checks", "positive_data_acceptance",
                # The codec server speaks Temporal's protocol, whose bodies the 64 KB limit cuts with
                # a 413 that the negative-data check does not expect: tests/ops/codec_server_test.py.
                "--exclude-path-regex", "^/codec/",
                "--max-examples", MAX_EXAMPLES, "--seed", SEED, "--workers", "1",
                "--request-timeout", "30", "--no-color",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
            )
            output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
        finally:
            await served.stop()
            # Cases the generated requests opened: end them so nothing runs on after the test.
            async for execution in harness.client.list_workflows('ExecutionStatus="Running"'):
                if execution.task_queue == harness.task_queue:
                    harness.handles.append(harness.client.get_workflow_handle(execution.id))
    text = output.decode(errors="replace")
    report.write_text(text)
    summary = text[text.rfind("SUMMARY"):] if "SUMMARY" in text else text[-3000:]
    print(summary)
    assert process.returncode == 0, text[-12000:]
    assert "Test cases:" in text and " passed" in text
