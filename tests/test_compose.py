"""docker-compose.yml parses and wires PostGIS (with a pg_isready healthcheck), a one-shot set-up
(roles, migrations, default data, tiles) and the app, which reads as the read-only role."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_sets_up_least_privilege_and_waits_for_each_step() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "setup", "app"}
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
