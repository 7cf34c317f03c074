"""The `geo-service` command: database, boundaries and the web server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from geo_service import db
from geo_service.embedded import EmbeddedError, redact
from geo_service.settings import Settings

app = typer.Typer(
    help="Open map service of the human rights cities and territories movement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The PostGIS database: embedded cluster and migrations.", no_args_is_help=True)
boundaries_app = typer.Typer(help="Load and inspect administrative boundaries.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(boundaries_app, name="boundaries")

out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    return Settings()


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _dsn(settings: Settings) -> str:
    try:
        return db.database_url(settings)
    except EmbeddedError as exc:
        raise _fail(str(exc)) from exc


# --------------------------------------------------------------------------- db
@db_app.command("start")
def db_start() -> None:
    """Initialise (first use) and start the embedded PostGIS cluster."""
    settings = _settings()
    if not settings.embedded:
        out.print("DATABASE_URL is set: using that PostGIS, nothing to start.")
        return
    try:
        status = db.cluster(settings).start()
    except EmbeddedError as exc:
        raise _fail(str(exc)) from exc
    out.print(f"embedded PostGIS running on 127.0.0.1:{status.port} (data in {status.pgdata})")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostGIS cluster."""
    settings = _settings()
    if not settings.embedded:
        out.print("DATABASE_URL is set: the embedded cluster is not in use.")
        return
    stopped = db.cluster(settings).stop()
    out.print("stopped" if stopped else "not running")


@db_app.command("status")
def db_status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Say which database is in use and whether the embedded cluster runs."""
    settings = _settings()
    if not settings.embedded:
        info = {"mode": "external", "url": redact(db.database_url(settings, start=False))}
    else:
        status = db.cluster(settings).status()
        info = {
            "mode": "embedded",
            "initialised": status.initialised,
            "running": status.running,
            "port": status.port,
            "pgdata": str(status.pgdata),
            "socket_dir": str(status.socket_dir),
            "pg_version": status.pg_version,
        }
    if as_json:
        out.print_json(json.dumps(info))
    else:
        for key, value in info.items():
            out.print(f"{key}: {value}", highlight=False)
    if info.get("mode") == "embedded" and not info.get("running"):
        raise typer.Exit(3)


@db_app.command("url")
def db_url() -> None:
    """Print a DSN usable by psql and GDAL (starts the embedded cluster if needed)."""
    settings = _settings()
    print(_dsn(settings))


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Alembic revision to reach.")) -> None:
    """Apply the schema migrations."""
    dsn = _dsn(_settings())
    db.upgrade(dsn, revision)
    out.print(f"schema at {db.current_revision(dsn)}")


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


