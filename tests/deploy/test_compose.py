"""The compose file is checked by a real parser (Docker itself cannot run here)."""

import os
import shutil
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _config() -> dict[str, object]:
    env = {**os.environ, "CALLMESH_API_TOKEN": "test-token"}
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose (Debian package) is needed to validate deploy/compose.yaml"
    result = subprocess.run(
        [compose, "-f", str(DEPLOY / "compose.yaml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


def test_compose_file_is_valid_and_complete() -> None:
    services = _config()["services"]
    assert isinstance(services, dict)
    assert set(services) == {
        "rabbitmq",
        "redis",
        "routing",
        "registrar",
        "health",
        "postgres",
        "accounting",
        "edge-a",
        "edge-b",
    }
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        if name not in ("rabbitmq", "redis", "postgres"):
            needs = {"rabbitmq", "redis"} | ({"postgres"} if name == "accounting" else set())
            assert service["depends_on"] == {
                each: {"condition": "service_healthy"} for each in needs
            }
            assert service["build"]["dockerfile"].endswith("Dockerfile")
            assert service["environment"]["CALLMESH_API_TOKEN"] == "test-token"
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3-management")
    database = services["accounting"]["environment"]["CALLMESH_ACCOUNTING_DATABASE_URL"]
    assert database.startswith("postgresql://") and database.endswith("@postgres:5432/callmesh")
    assert "appendonly yes" in (DEPLOY / "redis.conf").read_text()


def test_compose_refuses_to_run_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CALLMESH_API_TOKEN"}
    result = subprocess.run(
        ["docker-compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "CALLMESH_API_TOKEN" in result.stderr
