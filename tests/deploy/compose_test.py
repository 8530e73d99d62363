"""docker-compose.yml is valid Compose and agrees with the code: settings, search attributes,
task queue, scripts and the worker image; and it is secured: Temporal speaks only mTLS and
requires client certificates, every client has its own certificate from deploy/tls/generate.py
(which makes a working set), the UI signs operators in with OIDC and decodes through the API's
/codec, nothing is published beyond 127.0.0.1 and no secret is in the file."""

import socket
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from collections_domain.case.contract import DEFAULT_TASK_QUEUE
from collections_domain.case.search_attributes import CLI_TYPES
from collections_domain.ops.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_specification():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_services_are_all_there():
    services = COMPOSE["services"]
    assert {"postgresql", "temporal-schema", "temporal", "temporal-search-attributes", "temporal-ui",
            "collections-migrate", "worker", "api"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] >= 2
    for name in ("postgresql", "temporal", "worker", "api"):
        assert "healthcheck" in services[name], name
    for name in ("worker", "api"):
        assert services[name]["depends_on"]["collections-migrate"]["condition"] == "service_completed_successfully"


COLLECTIONS_SERVICES = ("collections-migrate", "worker", "api")


def test_collections_environment_names_only_real_settings():
    known = {name.upper() for name in Settings.model_fields}
    for name in COLLECTIONS_SERVICES:
        env = COMPOSE["services"][name]["environment"]
        assert set(env) <= known, (name, set(env) - known)
        assert env["TEMPORAL_TASK_QUEUE"] == DEFAULT_TASK_QUEUE
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
        Settings(**{key.lower(): value for key, value in env.items() if "${" not in str(value)})  # values parse


def test_commands_are_real_entry_points():
    import starter

    commands = {command.name for command in starter.app.registered_commands}
    for name in COLLECTIONS_SERVICES:
        command = COMPOSE["services"][name]["command"]
        assert command[0] == "python" and (ROOT / command[1]).exists(), command
        if command[1] == "starter.py":
            assert command[2] in commands, command


def test_ports_and_health_checks_agree_with_the_settings():
    api = COMPOSE["services"]["api"]
    port = api["environment"]["API_PORT"]
    assert f"127.0.0.1:{port}:{port}" in api["ports"] and f":{port}/readyz" in " ".join(api["healthcheck"]["test"])
    worker = COMPOSE["services"]["worker"]
    metrics_port = worker["environment"]["METRICS_BIND_ADDRESS"].rpartition(":")[2]
    assert metrics_port in worker["expose"] and f":{metrics_port}/metrics" in " ".join(worker["healthcheck"]["test"])
    assert "7233" in COMPOSE["services"]["temporal"]["expose"] and "ports" not in COMPOSE["services"]["temporal"]
    assert Settings.model_fields["api_port"].default == int(port)


def test_registered_search_attributes_are_the_contracts():
    declared = COMPOSE["services"]["temporal-search-attributes"]["environment"]["SEARCH_ATTRIBUTES"].split()
    assert dict(pair.split("=") for pair in declared) == CLI_TYPES


def test_mounted_scripts_and_image_sources_exist(generated):
    for service in COMPOSE["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./deploy/tls/"):  # never committed: made by generate.py
                assert (generated / source.removeprefix("./deploy/tls/")).is_file(), source
            elif source.startswith("./"):
                assert (ROOT / source).exists(), source
        for env_file in service.get("env_file", []):
            assert (ROOT / (env_file["path"] + ".example")).is_file(), env_file  # the operator copies it
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("collections_domain", "workflows", "activities", "api", "worker.py", "starter.py"):
        assert package in dockerfile
    assert "'.[postgres]'" in dockerfile
    # The image runs as nobody, who cannot write __pycache__ under /app: the bytecode is built in
    # the image, before USER, or the sandbox compiles the workflow module again for each case.
    assert dockerfile.index("compileall -q /app") < dockerfile.index("USER nobody")


# -- security ------------------------------------------------------------------------------------

GENERATE = ROOT / "deploy" / "tls" / "generate.py"
#: Every service that calls Temporal, and the certificate (deploy/tls/<name>.pem) it presents.
TEMPORAL_CLIENTS = {"collections-migrate": "migrate", "worker": "worker", "api": "api",
                    "temporal-ui": "ui", "temporal-search-attributes": "admin"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tls") / "tls"
    result = subprocess.run([sys.executable, str(GENERATE), "--out", str(out)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> host source of a service's read-only bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        if source.startswith("./"):
            assert mode == ["ro"], volume  # configuration and certificates are mounted read-only
            mounts[target] = source
    return mounts


def _published(service: dict) -> list[str]:
    return [str(port) for port in service.get("ports", [])]


def test_nothing_is_published_on_all_interfaces_and_temporal_not_at_all():
    for name, service in COMPOSE["services"].items():
        for port in _published(service):
            assert port.startswith("127.0.0.1:"), (name, port)  # host_ip:host:container, this host only
            assert not port.endswith(":7233") and port.split(":")[1] != "7233", (name, port)
    assert "ports" not in COMPOSE["services"]["temporal"]


def test_temporal_requires_client_certificates_on_every_connection():
    temporal = COMPOSE["services"]["temporal"]
    env, mounts = temporal["environment"], _mounts(temporal)
    assert env["TEMPORAL_TLS_REQUIRE_CLIENT_AUTH"] == "true"
    for variable, file in (("TEMPORAL_TLS_SERVER_CA_CERT", "ca.pem"), ("TEMPORAL_TLS_CLIENT1_CA_CERT", "ca.pem"),
                           ("TEMPORAL_TLS_SERVER_CERT", "temporal.pem"), ("TEMPORAL_TLS_SERVER_KEY", "temporal.key"),
                           ("TEMPORAL_TLS_FRONTEND_CERT", "temporal.pem"), ("TEMPORAL_TLS_FRONTEND_KEY", "temporal.key")):
        assert mounts[env[variable]] == f"./deploy/tls/{file}", variable
    assert env["TEMPORAL_TLS_FRONTEND_SERVER_NAME"] == env["TEMPORAL_TLS_INTERNODE_SERVER_NAME"] == "temporal"
    assert env["TEMPORAL_TLS_FRONTEND_DISABLE_HOST_VERIFICATION"] == env["TEMPORAL_TLS_INTERNODE_DISABLE_HOST_VERIFICATION"] == "false"
    assert not any("ca/" in source for source in mounts.values())  # the CA's key is never mounted


def test_every_client_of_temporal_uses_mtls_with_its_own_certificate():
    for name, cert in TEMPORAL_CLIENTS.items():
        service = COMPOSE["services"][name]
        env, mounts = service["environment"], _mounts(service)
        assert env["TEMPORAL_ADDRESS"] == "temporal:7233", name
        if name in COLLECTIONS_SERVICES:
            assert env["TEMPORAL_TLS"] == "true" and env["TEMPORAL_TLS_SERVER_NAME"] == "temporal", name
            paths = (env["TEMPORAL_TLS_CA_PATH"], env["TEMPORAL_TLS_CERT_PATH"], env["TEMPORAL_TLS_KEY_PATH"])
        elif name == "temporal-ui":
            assert env["TEMPORAL_TLS_ENABLE_HOST_VERIFICATION"] == "true" and env["TEMPORAL_TLS_SERVER_NAME"] == "temporal"
            paths = (env["TEMPORAL_TLS_CA"], env["TEMPORAL_TLS_CERT"], env["TEMPORAL_TLS_KEY"])
        else:  # the admin-tools job: deploy/search-attributes.sh passes them as --tls-* flags
            assert env["TLS_SERVER_NAME"] == "temporal"
            paths = (env["TLS_CA_PATH"], env["TLS_CERT_PATH"], env["TLS_KEY_PATH"])
            assert "--tls-cert-path" in (ROOT / "deploy" / "search-attributes.sh").read_text()
        assert [mounts[path] for path in paths] == ["./deploy/tls/ca.pem", f"./deploy/tls/{cert}.pem", f"./deploy/tls/{cert}.key"], name
    assert len(set(TEMPORAL_CLIENTS.values())) == len(TEMPORAL_CLIENTS)


def _env_file_names(path: Path) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {name: value for name, value in pairs}


def test_the_ui_signs_operators_in_with_oidc_and_decodes_through_the_api():
    ui = COMPOSE["services"]["temporal-ui"]
    env = ui["environment"]
    assert env["TEMPORAL_AUTH_ENABLED"] == "true" and env["TEMPORAL_AUTH_TYPE"] == "oidc"
    assert [entry["path"] for entry in ui["env_file"]] == ["./deploy/temporal-ui.env"] and ui["env_file"][0]["required"] is True
    example = _env_file_names(ROOT / "deploy" / "temporal-ui.env.example")
    for name in ("TEMPORAL_AUTH_PROVIDER_URL", "TEMPORAL_AUTH_CLIENT_ID", "TEMPORAL_AUTH_CLIENT_SECRET",
                 "TEMPORAL_AUTH_CALLBACK_URL", "TEMPORAL_AUTH_SCOPES"):
        assert name in example and name not in env, name  # the operator's file, not this one
    assert example["TEMPORAL_AUTH_CALLBACK_URL"].endswith("/auth/sso/callback")
    assert "TEMPORAL_AUTH_ENABLED" not in example  # compose pins it: no file can turn sign-in off
    # The codec: the API's /codec (POST /codec/encode, /codec/decode), with the API's codec_key
    # cookie (credentials), not the OIDC token (the API knows its own keys only).
    default = env["TEMPORAL_CODEC_ENDPOINT"].removeprefix("${TEMPORAL_CODEC_ENDPOINT:-").removesuffix("}")
    api = COMPOSE["services"]["api"]["environment"]
    assert default == f"http://localhost:{api['API_PORT']}/codec"
    assert env["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true" and env["TEMPORAL_CODEC_PASS_ACCESS_TOKEN"] == "false"
    # Only the UI's page may call the codec from a browser.
    assert api["API_CODEC_ALLOWED_ORIGINS"] == "${TEMPORAL_UI_ORIGIN:-http://localhost:8080}"
    assert "api_codec_allowed_origins" in Settings.model_fields
    from api.routes.codec import router

    assert {"/codec/decode", "/codec/encode"} <= {route.path for route in router.routes}


def test_secrets_come_from_the_operators_file_not_this_one():
    known = {name.upper() for name in Settings.model_fields}
    example = _env_file_names(ROOT / "deploy" / "collections.env.example")
    assert "PAYLOAD_KEYS" in example and set(example) <= known, set(example) - known
    for name in COLLECTIONS_SERVICES:
        service = COMPOSE["services"][name]
        assert service["env_file"] == [{"path": "./deploy/collections.env", "required": True}], name
        for secret in ("PAYLOAD_KEYS", "PAYLOAD_KEYS_FILE", "DELIVERY_HTTP_TOKEN", "TEMPORAL_API_KEY"):
            assert secret not in service["environment"], (name, secret)  # environment would override the file
    text = (ROOT / "docker-compose.yml").read_text()
    assert "BEGIN " not in text and "PAYLOAD_KEYS:" not in text


def test_certificates_and_env_files_are_never_committed():
    paths = ["deploy/tls/ca.pem", "deploy/tls/ca/ca.key", "deploy/tls/worker.key", "deploy/tls/temporal.pem",
             "deploy/collections.env", "deploy/temporal-ui.env"]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True, check=False)
    assert ignored.stdout.split() == paths, ignored.stdout + ignored.stderr
    for kept in ("deploy/tls/generate.py", "deploy/temporal-ui.env.example", "deploy/collections.env.example"):
        assert subprocess.run(["git", "check-ignore", "-q", kept], cwd=ROOT, check=False).returncode == 1, kept


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_generated_certificates_form_one_working_mtls_set(generated):
    ca = _load(generated / "ca.pem")
    assert stat.S_IMODE((generated / "ca" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(generated.stat().st_mode) == 0o700
    server = _load(generated / "temporal.pem")
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"temporal", "localhost"} <= set(names.get_values_for_type(x509.DNSName))
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)  # frontend and internode
    for client in set(TEMPORAL_CLIENTS.values()):
        cert = _load(generated / f"{client}.pem")
        cert.verify_directly_issued_by(ca)
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert cert.subject.rfc4514_string().startswith(f"CN=collections-{client}")
    # A real handshake: the server requires a client certificate from the CA; the worker's passes.
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(generated / "temporal.pem", generated / "temporal.key")
    server_ctx.load_verify_locations(generated / "ca.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(generated / "ca.pem"))
    client_ctx.load_cert_chain(generated / "worker.pem", generated / "worker.key")
    left, right = socket.socketpair()
    left.settimeout(10)
    right.settimeout(10)
    seen: list = []

    def serve() -> None:
        with server_ctx.wrap_socket(left, server_side=True) as conn:
            seen.append(conn.getpeercert())
            conn.recv(1)  # the client's byte, then close

    thread = threading.Thread(target=serve)
    thread.start()
    with client_ctx.wrap_socket(right, server_hostname="temporal") as conn:
        conn.sendall(b"x")
        thread.join(10)
    assert seen and dict(part[0] for part in seen[0]["subject"])["commonName"] == "collections-worker"


def test_generate_keeps_what_exists_and_rotates_on_request(generated, tmp_path):
    out = tmp_path / "tls"
    run = lambda *args: subprocess.run([sys.executable, str(GENERATE), "--out", str(out), *args],
                                       capture_output=True, text=True, check=True).stdout
    run()
    first = {name: (out / name).read_bytes() for name in ("ca.pem", "worker.pem")}
    assert "nothing to do" in run()
    assert {name: (out / name).read_bytes() for name in first} == first
    assert "force-recreate" in run("--rotate", "leaves")
    assert (out / "ca.pem").read_bytes() == first["ca.pem"] and (out / "worker.pem").read_bytes() != first["worker.pem"]
    _load(out / "worker.pem").verify_directly_issued_by(_load(out / "ca.pem"))
    run("--rotate", "all", "--server-name", "temporal.example.internal")
    assert (out / "ca.pem").read_bytes() != first["ca.pem"]
    _load(out / "worker.pem").verify_directly_issued_by(_load(out / "ca.pem"))
    names = _load(out / "temporal.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "temporal.example.internal" in names.get_values_for_type(x509.DNSName)
