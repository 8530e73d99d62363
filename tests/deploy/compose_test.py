"""docker-compose.yml is valid Compose and agrees with the code: settings, search attributes,
task queue, scripts and the worker image."""

import subprocess
import sys
from pathlib import Path

import yaml

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
    assert f"{port}:{port}" in api["ports"] and f":{port}/readyz" in " ".join(api["healthcheck"]["test"])
    worker = COMPOSE["services"]["worker"]
    metrics_port = worker["environment"]["METRICS_BIND_ADDRESS"].rpartition(":")[2]
    assert metrics_port in worker["expose"] and f":{metrics_port}/metrics" in " ".join(worker["healthcheck"]["test"])
    assert "7233:7233" in COMPOSE["services"]["temporal"]["ports"]
    assert Settings.model_fields["api_port"].default == int(port)


def test_registered_search_attributes_are_the_contracts():
    declared = COMPOSE["services"]["temporal-search-attributes"]["environment"]["SEARCH_ATTRIBUTES"].split()
    assert dict(pair.split("=") for pair in declared) == CLI_TYPES


def test_mounted_scripts_and_image_sources_exist():
    for service in COMPOSE["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("collections_domain", "workflows", "activities", "api", "worker.py", "starter.py"):
        assert package in dockerfile
    assert "'.[postgres]'" in dockerfile
