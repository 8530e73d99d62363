"""docker-compose.yml is valid Compose and agrees with the code: settings, search attributes,
task queue, scripts and the worker image."""

import subprocess
import sys
from pathlib import Path

import yaml

from collections_domain.case import DEFAULT_TASK_QUEUE
from collections_domain.search_attributes import CLI_TYPES
from collections_domain.settings import Settings

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
    assert {"postgresql", "temporal-schema", "temporal", "temporal-search-attributes", "temporal-ui", "worker"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] >= 2
    for name in ("postgresql", "temporal", "worker"):
        assert "healthcheck" in services[name], name


def test_worker_environment_names_only_real_settings():
    known = {name.upper() for name in Settings.model_fields}
    env = COMPOSE["services"]["worker"]["environment"]
    assert set(env) <= known, set(env) - known
    assert env["TEMPORAL_TASK_QUEUE"] == DEFAULT_TASK_QUEUE
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://")


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
    for package in ("collections_domain", "workflows", "activities", "worker.py"):
        assert package in dockerfile
    assert "'.[postgres]'" in dockerfile
