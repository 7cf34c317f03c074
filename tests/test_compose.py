"""docker-compose.yml parses and wires PostGIS (with a pg_isready healthcheck) to the app."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_names_both_services_and_waits_for_a_healthy_database() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "app"}
    assert services["db"]["image"].startswith("postgis/postgis:")
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["app"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["app"]["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert "@db:5432/" in services["app"]["environment"]["DATABASE_URL"]
    dockerfile = (ROOT / services["app"]["build"] / "Dockerfile").read_text()
    assert "geo-service db upgrade" in dockerfile  # the app runs migrations before serving
