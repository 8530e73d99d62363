"""Transport and identity to Temporal: TLS, mTLS and API keys (``ops/connection.py``).

The dev server (``temporal server start-dev``) has no TLS flags, so the test puts a
TLS-terminating proxy in front of it, as a load balancer or a secured frontend would be: it requires
a client certificate signed by the test CA (``CERT_REQUIRED``), speaks ALPN ``h2``, and pipes bytes
to the plain dev server. Certificates are generated here with ``cryptography``: a CA, a server
certificate for ``localhost``/127.0.0.1, a client certificate from the CA, and an untrusted CA with
a client certificate of its own.

Proved: ``worker.py`` and ``starter.py`` (real processes, ``TEMPORAL_TLS_*`` environment variables)
connect through mTLS and run a case to its first step; without TLS, without a client certificate,
with the untrusted certificate, or with no server, both exit non-zero within 15 s with one line
naming what is wrong and no traceback. ``tls_config`` refuses unusable files and contradictory
settings with a ``TlsSettingsError`` naming the setting; the API key is sent, and only over TLS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from collections_domain.client import connect
from collections_domain.ops.connection import (
    TemporalConnectionError,
    TlsSettingsError,
    tls_config,
)
from collections_domain.ops.settings import Settings
from collections_domain.rules import calendar
from collections_domain.store.db import make_engine
from tests.databases import fresh_database_url
from tests.e2e.conftest import start_dev_server, zone_in_contact_window
from tests.helpers import seed_borrower
from tests.keys import TEST_PAYLOAD_KEYS

ROOT = Path(__file__).resolve().parents[2]
#: How long a refused or unreachable process may take to say so.
FAIL_WITHIN_SECONDS = 15.0


# -- certificates ------------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key, password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(common_name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(_name(common_name)).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(ca_cert, ca_key, common_name: str, *, server: bool, days: float = 1, start_days: float = 0):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=start_days) - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


@dataclass
class Pki:
    folder: Path

    def __getattr__(self, name: str) -> Path:  # pki.ca_pem, pki.client_key ... -> the file
        if name.startswith("_"):
            raise AttributeError(name)
        return self.folder / name.replace("_key", ".key").replace("_pem", ".pem")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")

    def write(name: str, cert, key=None) -> None:
        (folder / f"{name}.pem").write_bytes(_cert_pem(cert))
        if key is not None:
            (folder / f"{name}.key").write_bytes(_key_pem(key))
            (folder / f"{name}.key").chmod(0o600)

    ca, ca_key = make_ca("collections test CA")
    write("ca", ca, ca_key)
    write("server", *make_leaf(ca, ca_key, "localhost", server=True))
    write("client", *make_leaf(ca, ca_key, "collections-worker", server=False))
    expired, expired_key = make_leaf(ca, ca_key, "expired-worker", server=False, days=-1, start_days=-2)
    write("expired", expired, expired_key)
    rogue_ca, rogue_ca_key = make_ca("untrusted CA")
    write("rogue_ca", rogue_ca)
    write("rogue", *make_leaf(rogue_ca, rogue_ca_key, "intruder", server=False))
    encrypted = ec.generate_private_key(ec.SECP256R1())
    (folder / "encrypted.key").write_bytes(_key_pem(encrypted, b"secret"))
    (folder / "not-pem.txt").write_text("hello\n")
    return Pki(folder)


def mtls(pki: Pki, **overrides) -> dict:
    """Settings (field names) for mTLS with the trusted client certificate."""
    return {"temporal_tls": True, "temporal_tls_ca_path": pki.ca_pem, "temporal_tls_cert_path": pki.client_pem,
            "temporal_tls_key_path": pki.client_key, "temporal_tls_server_name": "localhost", **overrides}


# -- tls_config: the settings are checked before anything is sent ---------------------------


def test_plain_unless_asked_and_mtls_when_asked(pki):
    assert tls_config(Settings()) is False
    config = tls_config(Settings(**mtls(pki)))
    assert config.server_root_ca_cert == pki.ca_pem.read_bytes()
    assert config.client_cert == pki.client_pem.read_bytes() and config.client_private_key == pki.client_key.read_bytes()
    assert config.domain == "localhost"
    # Any TLS file (or an API key) turns TLS on; the system's roots when no CA is given.
    assert tls_config(Settings(temporal_tls_ca_path=pki.ca_pem)).server_root_ca_cert == pki.ca_pem.read_bytes()
    assert tls_config(Settings(temporal_tls=True)).server_root_ca_cert is None


@pytest.mark.parametrize(
    ("change", "setting", "rule"),
    [
        ({"temporal_tls_ca_path": "missing-ca.pem"}, "TEMPORAL_TLS_CA_PATH", "No such file"),
        ({"temporal_tls_cert_path": "missing-cert.pem"}, "TEMPORAL_TLS_CERT_PATH", "No such file"),
        ({"temporal_tls_key_path": "missing.key"}, "TEMPORAL_TLS_KEY_PATH", "No such file"),
        ({"temporal_tls_ca_path": "."}, "TEMPORAL_TLS_CA_PATH", "is a folder"),
        ({"temporal_tls_ca_path": "not-pem.txt"}, "TEMPORAL_TLS_CA_PATH", "not a PEM file"),
        ({"temporal_tls_ca_path": "client.key"}, "TEMPORAL_TLS_CA_PATH", "holds no PEM certificate"),
        ({"temporal_tls_cert_path": "client.key"}, "TEMPORAL_TLS_CERT_PATH", "holds no PEM certificate"),
        ({"temporal_tls_key_path": "client.pem"}, "TEMPORAL_TLS_KEY_PATH", "holds no PEM private key"),
        ({"temporal_tls_key_path": "rogue.key"}, "TEMPORAL_TLS_KEY_PATH", "is not the key of the certificate"),
        ({"temporal_tls_key_path": "encrypted.key"}, "TEMPORAL_TLS_KEY_PATH", "is encrypted"),
        ({"temporal_tls_cert_path": "expired.pem", "temporal_tls_key_path": "expired.key"}, "TEMPORAL_TLS_CERT_PATH", "expired on"),
        ({"temporal_tls_key_path": None}, "TEMPORAL_TLS_CERT_PATH, TEMPORAL_TLS_KEY_PATH", "give both (mTLS) or neither"),
        ({"temporal_tls_cert_path": None}, "TEMPORAL_TLS_CERT_PATH, TEMPORAL_TLS_KEY_PATH", "only TEMPORAL_TLS_KEY_PATH is set"),
    ],
)
def test_unusable_tls_files_are_refused_naming_the_setting(pki, change, setting, rule):
    change = {key: (None if value is None else pki.folder / value) for key, value in change.items()}
    with pytest.raises(TlsSettingsError) as refused:
        tls_config(Settings(**mtls(pki, **change)))
    message = str(refused.value)
    assert message.startswith(setting + ":") and rule in message, message
    assert "\n" not in message


def test_the_api_key_is_only_sent_over_tls(pki):
    # An API key alone turns TLS on (Temporal Cloud); an explicit TEMPORAL_TLS=false with a key is refused.
    assert tls_config(Settings(temporal_api_key="k")) is not False
    with pytest.raises(TlsSettingsError, match=r"^TEMPORAL_TLS=false with TEMPORAL_API_KEY: .*never sent in clear"):
        tls_config(Settings(temporal_tls=False, temporal_api_key="k"))
    with pytest.raises(TlsSettingsError, match=r"^TEMPORAL_TLS=false with TEMPORAL_TLS_CA_PATH, TEMPORAL_TLS_CERT_PATH"):
        tls_config(Settings(**mtls(pki, temporal_tls=False)))
    # The same from the environment, as the processes read it.
    env = {"TEMPORAL_TLS": "false", "TEMPORAL_API_KEY": "k"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        with pytest.raises(TlsSettingsError, match="TEMPORAL_API_KEY"):
            tls_config(Settings())
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)


# -- the TLS front: a proxy that requires a client certificate, before the dev server ---------


class TlsFront:
    """A TLS-terminating proxy on its own thread: mTLS (the test CA, ``CERT_REQUIRED``, ALPN h2)
    in front of ``upstream`` (the plain dev server). Counts the handshakes it accepted."""

    def __init__(self, pki: Pki, upstream: str):
        self.upstream = upstream
        self.accepted = 0
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(pki.server_pem, pki.server_key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(pki.ca_pem)
        self.context.set_alpn_protocols(["h2"])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tls-front", daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context), self.loop
        ).result(10)
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1  # the handshake (with a trusted client certificate) succeeded
        host, _, port = self.upstream.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def front(pki):
    env = await start_dev_server("--headless")
    proxy = TlsFront(pki, env.client.service_client.config.target_host)
    try:
        yield proxy
    finally:
        proxy.close()
        await env.shutdown()


def tls_env(pki: Pki, front: TlsFront, tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    """The environment of a worker or CLI process reaching ``front`` with mTLS (``overrides``:
    ``None`` removes a variable)."""
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("TEMPORAL_")},
        "TEMPORAL_ADDRESS": front.address,
        "TEMPORAL_TLS": "true",
        "TEMPORAL_TLS_CA_PATH": str(pki.ca_pem),
        "TEMPORAL_TLS_CERT_PATH": str(pki.client_pem),
        "TEMPORAL_TLS_KEY_PATH": str(pki.client_key),
        "TEMPORAL_TLS_SERVER_NAME": "localhost",
        "TEMPORAL_TASK_QUEUE": f"tls-{uuid.uuid4().hex[:8]}",
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": fresh_database_url(tmp_path, "tls"),
        "PAYLOAD_KEYS": TEST_PAYLOAD_KEYS,
        "METRICS_BIND_ADDRESS": "",
        "COLUMNS": "250",
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


async def run(env: dict[str, str], *args: str, timeout: float = 60.0) -> tuple[int, str, float]:
    """Run a project script (``worker.py`` or ``starter.py ...``); exit status, output, seconds."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / args[0]), *args[1:], env=env, cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        return -9, output.decode(errors="replace"), time.monotonic() - started
    return process.returncode, output.decode(errors="replace"), time.monotonic() - started


async def test_the_worker_and_the_cli_run_a_case_over_mtls(pki, front, tmp_path):
    env = tls_env(pki, front, tmp_path)
    engine = make_engine(env["DATABASE_URL"])
    seed_borrower(engine, "B-tls", locale="en")
    engine.dispose()
    accepted_before = front.accepted
    worker = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "worker.py"), env=env, cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        tz = zone_in_contact_window()
        today = calendar.local_date(dt.datetime.now(dt.UTC), tz)
        loan = f"L-tls-{uuid.uuid4().hex[:6]}"
        code, out, _ = await run(
            env, "starter.py", "start-case", "--loan-id", loan, "--borrower-id", "B-tls", "--portfolio", "no-accrual",
            "--principal-due-minor", "250000", "--oldest-due-date", (today - dt.timedelta(days=5)).isoformat(), "--timezone", tz,
        )
        assert code == 0 and "Case open" in out, out
        status: dict = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            code, out, _ = await run(env, "starter.py", "status", loan, "--json")
            if code == 0:
                status = json.loads(out)
                if status["steps_done"]:
                    break
            assert worker.returncode is None, (await worker.stderr.read()).decode()
            await asyncio.sleep(0.5)
        assert status.get("steps_done"), out  # the worker took the case's first step (DPD 5: the DPD 3 reminder)
        assert status["steps_done"][0]["days_past_due"] >= 3 and status["days_past_due"] == 5
        # The client in this process, from the same settings, also through the TLS front.
        client = await connect(Settings(**mtls(pki, temporal_address=front.address, payload_keys=TEST_PAYLOAD_KEYS,
                                                   data_dir=tmp_path)))
        described = await client.get_workflow_handle(f"collection-{loan}").describe()
        assert described.task_queue == env["TEMPORAL_TASK_QUEUE"]
        assert front.accepted > accepted_before  # every one of them went through the mTLS front
    finally:
        worker.terminate()
        await worker.wait()


async def test_the_api_key_is_sent_over_tls(pki, front, tmp_path):
    client = await connect(Settings(**mtls(pki, temporal_address=front.address, temporal_api_key="test-api-key",
                                           payload_keys=TEST_PAYLOAD_KEYS, data_dir=tmp_path)))
    assert client.service_client.config.api_key == "test-api-key"  # the SDK sends it as "authorization: Bearer ..."
    assert client.service_client.config.tls is not False
    await client.workflow_service.get_system_info(GetSystemInfoRequest())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


FAILURES = {
    # name: (environment overrides, what the one line must say)
    "plain client, TLS server": ({"TEMPORAL_TLS": None, "TEMPORAL_TLS_CA_PATH": None, "TEMPORAL_TLS_CERT_PATH": None,
                                  "TEMPORAL_TLS_KEY_PATH": None, "TEMPORAL_TLS_SERVER_NAME": None},
                                 ["TLS required", "TEMPORAL_TLS=true"]),
    "no client certificate": ({"TEMPORAL_TLS_CERT_PATH": None, "TEMPORAL_TLS_KEY_PATH": None},
                              ["certificate refused", "requires a client certificate", "TEMPORAL_TLS_CERT_PATH"]),
    "untrusted client certificate": ({"TEMPORAL_TLS_CERT_PATH": "rogue.pem", "TEMPORAL_TLS_KEY_PATH": "rogue.key"},
                                     ["certificate refused", "CN=intruder, issued by CN=untrusted CA"]),
    "server certificate from another CA": ({"TEMPORAL_TLS_CA_PATH": "rogue_ca.pem"},
                                           ["server certificate not trusted", "TEMPORAL_TLS_CA_PATH"]),
    "no server": ({"TEMPORAL_ADDRESS": "unreachable"}, ["server unreachable", "TEMPORAL_ADDRESS"]),
    "missing CA file": ({"TEMPORAL_TLS_CA_PATH": "no-such-ca.pem"}, ["TEMPORAL_TLS_CA_PATH", "No such file"]),
}


@pytest.mark.parametrize("case", list(FAILURES))
async def test_the_worker_and_the_cli_fail_fast_with_one_clear_line(pki, front, tmp_path, case):
    overrides, phrases = FAILURES[case]
    overrides = dict(overrides)
    for key in ("TEMPORAL_TLS_CA_PATH", "TEMPORAL_TLS_CERT_PATH", "TEMPORAL_TLS_KEY_PATH"):
        if overrides.get(key):
            overrides[key] = str(pki.folder / overrides[key])
    if overrides.get("TEMPORAL_ADDRESS") == "unreachable":
        overrides["TEMPORAL_ADDRESS"] = f"127.0.0.1:{_free_port()}"
    env = tls_env(pki, front, tmp_path, **overrides)
    (worker_code, worker_out, worker_seconds), (cli_code, cli_out, cli_seconds) = await asyncio.gather(
        run(env, "worker.py", timeout=FAIL_WITHIN_SECONDS + 15),
        run(env, "starter.py", "status", "L-anything", timeout=FAIL_WITHIN_SECONDS + 15),
    )
    for who, code, out, seconds in (("worker", worker_code, worker_out, worker_seconds), ("cli", cli_code, cli_out, cli_seconds)):
        lines = [line for line in out.splitlines() if line.strip()]
        assert code not in (0, -9), (who, code, out)
        assert seconds <= FAIL_WITHIN_SECONDS, (who, seconds, out)
        assert "Traceback" not in out and len(lines) == 1, (who, out)
        assert all(phrase in lines[0] for phrase in phrases), (who, phrases, lines[0])


async def test_a_client_in_process_names_the_problem(pki, front, tmp_path):
    """``connect`` itself (the API's way) raises one ``TemporalConnectionError`` line."""
    base = {"temporal_address": front.address, "payload_keys": TEST_PAYLOAD_KEYS, "data_dir": tmp_path}
    with pytest.raises(TemporalConnectionError, match="certificate refused"):
        await connect(Settings(**mtls(pki, **base, temporal_tls_cert_path=pki.rogue_pem, temporal_tls_key_path=pki.rogue_key)))
    with pytest.raises(TemporalConnectionError, match="not valid for 'temporal' \\(it holds localhost, 127.0.0.1\\)"):
        await connect(Settings(**mtls(pki, **base, temporal_tls_server_name="temporal")))
    with pytest.raises(TemporalConnectionError, match="TLS required"):
        await connect(Settings(**base))


def test_a_host_that_does_not_resolve_is_named_so():
    """Found by a newcomer trial: a DNS failure read "nothing accepts connections there"."""
    from collections_domain.ops.connection import connection_problem
    from collections_domain.ops.settings import Settings

    sdk = RuntimeError('Failed client connect: Server connection error: tonic::transport::Error(Transport, ConnectError('
                       'ConnectError("dns error", Custom { kind: Uncategorized, error: "failed to lookup address '
                       'information: Name or service not known" })))')
    message = connection_problem(Settings(temporal_address="garbage.invalid:7233"), sdk, probe_server=False)
    assert "host name does not resolve" in message
    refused = RuntimeError('Failed client connect: Server connection error: tonic::transport::Error(Transport, ConnectError('
                           'ConnectError("tcp connect error", 127.0.0.1:7597, Os { code: 111, kind: ConnectionRefused })))')
    assert "nothing accepts connections" in connection_problem(Settings(), refused, probe_server=False)
