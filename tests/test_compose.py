"""docker-compose.yml and the Dockerfile, checked statically: no Docker engine runs here.

What a parse can prove: the services, images, ports, start order and health gates are there;
the environment the containers get is one core.config.Settings accepts in production; the
commands name files and factories that exist; secrets can only come from the env file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import Env, Settings
from core.temporal import SEARCH_ATTRIBUTE_TYPES

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("POSTGRES_PASSWORD", "IVR_JWT_SECRET", "IVR_WEBHOOK_TOKEN", "IVR_ADMIN_PASSWORD")
APP_SERVICES = ("api", "worker", "migrate")
SAMPLE_SECRETS = {
    "POSTGRES_PASSWORD": "pgpw-4f9a1c2e7b",
    "IVR_JWT_SECRET": "Qm9zc2EgbW92YSBub3ZhIGtvZGEgMTIzNDU2Nzg5MA",
    "IVR_WEBHOOK_TOKEN": "wh-8c1d2e3f4a5b6c7d8e9f0a1b",
    "IVR_ADMIN_PASSWORD": "Adm1n-Str0ng-Pass",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise LookupError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    out = re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:[-?])([^}]*))?\}", one, value)
    return out.replace("$$", "$")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


def test_every_process_is_a_service(services: dict[str, Any]) -> None:
    assert {
        "postgres",
        "redis",
        "temporal",
        "temporal-ui",
        "api",
        "worker",
        "dashboard",
        "migrate",
    } <= set(services)


def test_official_images(services: dict[str, Any]) -> None:
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")


def test_temporal_persists_in_postgres(services: dict[str, Any]) -> None:
    env = environment(services["temporal"])
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgres"
    assert env["DB_PORT"] == "5432"
    assert env["POSTGRES_USER"] == environment(services["postgres"])["POSTGRES_USER"]
    assert "${POSTGRES_PASSWORD:?" in env["POSTGRES_PWD"]
    assert environment(services["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_published_ports(services: dict[str, Any]) -> None:
    assert "8000:8000" in services["api"]["ports"]
    assert "8501:8501" in services["dashboard"]["ports"]
    assert "8233:8080" in services["temporal-ui"]["ports"]
    # A host's own PostgreSQL/Redis may hold 5432/6379: ours stay on the compose network.
    assert "ports" not in services["postgres"]
    assert "ports" not in services["redis"]


def test_app_services_share_one_image_built_here(services: dict[str, Any]) -> None:
    images = set()
    for name in (*APP_SERVICES, "dashboard"):
        assert services[name]["build"] == ".", name
        images.add(services[name]["image"])
    assert len(images) == 1


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_environment_is_valid_production_settings(
    services: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = environment(services[name])
    for required in (
        "DATABASE_URL",
        "REDIS_URL",
        "TEMPORAL_ADDRESS",
        "IVR_ENV",
        "IVR_JWT_SECRET",
        "IVR_WEBHOOK_TOKEN",
        "IVR_ADMIN_PASSWORD",
    ):
        assert required in raw, f"{name} lacks {required}"
    resolved = {k: interpolate(v, SAMPLE_SECRETS) for k, v in raw.items()}
    for key, value in resolved.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.env == Env.production
    assert settings.database_url.startswith("postgresql://postgres:pgpw-4f9a1c2e7b@postgres:5432/")
    assert settings.redis_url.startswith("redis://redis:6379/")
    assert settings.temporal_address == "temporal:7233"
    assert settings.jwt_secret.get_secret_value() == SAMPLE_SECRETS["IVR_JWT_SECRET"]


def test_secrets_have_no_defaults(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in SECRETS:
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses, secret
        assert all(use.startswith(":?") for use in uses), (secret, uses)
    # ...so compose refuses to start without them (as our interpolation does).
    api_env = environment(compose["services"]["api"])
    missing = {k: v for k, v in SAMPLE_SECRETS.items() if k != "IVR_JWT_SECRET"}
    with pytest.raises(LookupError, match="IVR_JWT_SECRET"):
        interpolate(api_env["IVR_JWT_SECRET"], missing)


def test_dashboard_gets_no_secrets(services: dict[str, Any]) -> None:
    env = environment(services["dashboard"])
    assert env["IVR_API_URL"] == "http://api:8000"
    assert not {"DATABASE_URL", *SECRETS} & set(env)


def test_commands(services: dict[str, Any]) -> None:
    assert services["api"]["command"] == [
        "uvicorn",
        "api.main:create_app",
        "--factory",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    assert services["worker"]["command"] == ["python", "worker.py"]
    dashboard = services["dashboard"]["command"]
    assert dashboard[:3] == ["streamlit", "run", "dashboard/app.py"]
    assert dashboard[dashboard.index("--server.port") + 1] == "8501"
    assert dashboard[dashboard.index("--server.address") + 1] == "0.0.0.0"
    script = " ".join(services["migrate"]["command"])
    assert re.search(r"ivr db upgrade\s*&&\s*ivr seed", script), script


def test_commands_name_things_that_exist() -> None:
    assert (ROOT / "worker.py").is_file()
    assert (ROOT / "dashboard" / "app.py").is_file()
    assert re.search(r"^def create_app\(", (ROOT / "api" / "main.py").read_text(), re.M)
    scripts = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^ivr = "cli\.main:app"', scripts, re.M)


def test_start_order_and_health_gates(services: dict[str, Any]) -> None:
    assert depends(services["temporal"]) == {"postgres": "service_healthy"}
    assert depends(services["temporal-ui"]) == {"temporal": "service_healthy"}
    assert depends(services["migrate"])["postgres"] == "service_healthy"
    for name in ("api", "worker"):
        deps = depends(services[name])
        assert deps["postgres"] == "service_healthy", name
        assert deps["redis"] == "service_healthy", name
        assert deps["temporal"] == "service_healthy", name
        assert deps["migrate"] == "service_completed_successfully", name
        assert deps["temporal-setup"] == "service_completed_successfully", name
    assert depends(services["dashboard"]) == {"api": "service_healthy"}


def test_health_gates_are_backed_by_healthchecks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for target, condition in depends(service).items():
            assert target in services, (name, target)
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits on {target}'s health"
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} must be one-shot"
    assert "/health" in " ".join(services["api"]["healthcheck"]["test"])


def test_search_attributes_match_the_code(services: dict[str, Any]) -> None:
    script = " ".join(services["temporal-setup"]["command"])
    registered = dict(
        re.findall(r"\b([A-Z][A-Za-z]+)=(Int|Keyword|Text|Double|Bool|Datetime)\b", script)
    )
    assert registered == SEARCH_ATTRIBUTE_TYPES


def test_dockerfile_builds_a_non_root_image_of_the_project() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    assert stages and all(stage.startswith("python:3.11-slim") for stage in stages)
    assert re.search(r"^RUN pip install \.$", dockerfile, re.M)
    final = stages[-1]
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users and users[-1] not in ("root", "0"), users
    assert "useradd" in final


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".env", ".venv/", ".ivr/", ".git/"):
        assert entry in ignored, entry


def _compose_cli() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _compose_cli(), reason="no `docker compose` CLI on this machine")
def test_docker_compose_config_accepts_the_file() -> None:
    """Where the Compose CLI exists, let it validate the file too (needs no engine)."""
    env = {**SAMPLE_SECRETS, "PATH": "/usr/bin:/bin:/usr/local/bin"}
    result = subprocess.run(
        ["docker", "compose", "config", "--quiet"], cwd=ROOT, env=env, capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()
