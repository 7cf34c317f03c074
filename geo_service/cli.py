"""The `geo-service` command: database, boundaries and the web server."""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
import typer
from rich.console import Console

from geo_service import db, roles
from geo_service.embedded import EmbeddedCluster, EmbeddedError, EmbeddedReplica, redact
from geo_service.errors import LoadError
from geo_service.settings import Settings

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

    from geo_service.campaign.rows import ImportResult
    from geo_service.load.pipeline import LoadResult, Reporter

# The loading pipeline and the importers (pandas, geopandas, GDAL, shapely, pyproj...) are
# imported inside the commands that use them: `geo-service --help`, `db url` and the other
# light commands start in a fraction of the time (2.2 s of imports before, each run).

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
IncludeEngagement = Annotated[bool, typer.Option(
    help="Count engagement-only rows too (not human rights territories).")]

app = typer.Typer(
    help="Open map service of the human rights cities and territories movement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # a docstring's wrapped lines make one paragraph
)
db_app = typer.Typer(help="The PostGIS database: embedded cluster and migrations.", no_args_is_help=True)
boundaries_app = typer.Typer(help="Load and inspect administrative boundaries.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(boundaries_app, name="boundaries")

out = Console()
err = Console(stderr=True, soft_wrap=True)


def _settings() -> Settings:
    return Settings()


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _table(*headers: str) -> Table:
    from rich.table import Table

    return Table(*headers)


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
    primary = db.cluster(settings)
    for replica in _replicas(primary):  # a replica left running would outlive its checkout
        if replica.stop():
            out.print(f"replica {replica.name} stopped", highlight=False)
    stopped = primary.stop()
    out.print("stopped" if stopped else "not running")


@db_app.command("status")
def db_status(as_json: JsonFlag = False) -> None:
    """Say which database is in use and whether the embedded cluster runs."""
    settings = _settings()
    info: dict[str, str | bool | int | None]
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
def db_url(role: Annotated[str, typer.Option(
        help="owner: what the CLI writes with; reader: what the web server reads with (SELECT "
             "only); admin: the embedded cluster's superuser.")] = "owner") -> None:
    """Print a DSN usable by psql and GDAL (starts the embedded cluster if needed)."""
    settings = _settings()
    if role not in ("owner", "reader", "admin"):
        err.print(f"error: --role {role!r}: owner, reader or admin", highlight=False, markup=False)
        raise typer.Exit(2)
    if role == "admin" and not settings.embedded:
        err.print("error: DATABASE_URL is set: its superuser is not ours to print", style="red")
        raise typer.Exit(2)
    try:
        url = {"owner": db.database_url, "reader": db.read_url, "admin": db.admin_url}[role](
            settings)
    except EmbeddedError as exc:
        err.print(f"error: {exc}", style="red", highlight=False, markup=False)
        raise typer.Exit(1) from None
    print(url)


replica_app = typer.Typer(
    help="A streaming replica of the embedded cluster on this machine (a hot standby on its own "
         "loopback port), for the web server to read from: GEO_READ_DATABASE_URL=\"$(geo-service "
         "db replica url)\".", no_args_is_help=True)
db_app.add_typer(replica_app, name="replica")
ReplicaName = Annotated[str, typer.Option(
    "--name", help="Which replica (several may run, each on its own port).")]


def _replicas(primary: EmbeddedCluster) -> list[EmbeddedReplica]:
    folder = primary.root / "replicas"
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return [EmbeddedReplica(primary, name) for name in names]


def _replica(name: str) -> EmbeddedReplica:
    settings = _settings()
    if not settings.embedded:
        raise _fail("DATABASE_URL is set: replicate that PostGIS with its own tools "
                    "(docker-compose.yml's scale profile shows one way)", 2)
    try:
        return EmbeddedReplica(db.cluster(settings), name)
    except EmbeddedError as exc:
        raise _fail(str(exc), 2) from exc


@replica_app.command("start")
def replica_start(name: ReplicaName = "replica") -> None:
    """Clone the embedded cluster into a hot standby (first use: pg_basebackup -R, a copy of
    every database) and start it; idempotent. It streams every change the primary makes."""
    replica = _replica(name)
    try:
        if not replica.initialised:
            out.print(f"cloning the embedded cluster into {replica.pgdata} ...", highlight=False)
        status = replica.start()
    except EmbeddedError as exc:
        raise _fail(f"{exc}\n(log: {replica.log_file})") from exc
    if replica.recloned:
        out.print(f"replica {name} had fallen beyond catching up (its slot on the primary is "
                  "gone): cloned afresh", highlight=False)
    out.print(f"replica {name} running on 127.0.0.1:{status.port} (data in {status.pgdata}); "
              f"read from it with GEO_READ_DATABASE_URL=\"$(geo-service db replica url"
              f"{'' if name == 'replica' else ' --name ' + name})\"", highlight=False)


@replica_app.command("stop")
def replica_stop(
    name: ReplicaName = "replica",
    remove: Annotated[bool, typer.Option(
        "--remove", help="Also delete the replica's folder and its slot on the primary (the "
                         "next start clones afresh).")] = False,
) -> None:
    """Stop the replica (the primary keeps the WAL it has yet to replay, up to 2 GB)."""
    replica = _replica(name)
    if remove:
        out.print("removed" if replica.remove() else "no such replica")
        return
    out.print("stopped" if replica.stop() else "not running")


@replica_app.command("status")
def replica_status(name: ReplicaName = "replica", as_json: JsonFlag = False) -> None:
    """Whether the replica runs, is a standby, streams from the primary, how many bytes of WAL
    it has yet to replay, and its slot on the primary (lost: it fell more than 2 GB behind, and
    `start` clones it afresh). Exit code 3 when it is not running."""
    status = _replica(name).replication()
    info = {"name": status.name, "initialised": status.initialised, "running": status.running,
            "port": status.port, "pgdata": str(status.pgdata), "standby": status.in_recovery,
            "streaming": status.streaming, "behind_bytes": status.behind_bytes,
            "slot": status.slot}
    if as_json:
        out.print_json(json.dumps(info))
    else:
        for key, value in info.items():
            out.print(f"{key}: {value}", highlight=False)
    if not status.running:
        raise typer.Exit(3)


@replica_app.command("url")
def replica_url(name: ReplicaName = "replica", role: Annotated[str, typer.Option(
        help="reader: what the web server reads with (SELECT only); admin: the superuser.")]
        = "reader") -> None:
    """Print the replica's DSN (the reader role by default), for GEO_READ_DATABASE_URL."""
    if role not in ("reader", "admin"):
        raise _fail(f"--role {role!r}: reader or admin (a replica takes no writes)", 2)
    replica = _replica(name)
    if not replica.initialised:
        raise _fail(f"no replica {name!r}: run `geo-service db replica start`")
    try:
        print(replica.url(role=None if role == "admin" else "reader"))
    except EmbeddedError as exc:
        raise _fail(str(exc)) from exc


@db_app.command("roles")
def db_roles(
    admin_url: Annotated[str, typer.Argument(
        help="A superuser's URL of the service's database on your PostGIS, e.g. "
             "postgresql://postgres@db.example.org/geo_service (used once, not stored).")],
    owner: Annotated[str, typer.Option(help="Name of the owner role.")] = roles.OWNER,
    reader: Annotated[str, typer.Option(help="Name of the reader role.")] = roles.READER,
    owner_password: Annotated[str | None, typer.Option(
        envvar="GEO_OWNER_PASSWORD", help="The owner's password (default: a new random one).")] = None,
    reader_password: Annotated[str | None, typer.Option(
        envvar="GEO_READER_PASSWORD", help="The reader's password (default: a new random one).")] = None,
) -> None:
    """Set up least privilege on a PostGIS of your own: an owner role for the CLI (migrations,
    loads, imports) and a read-only role for the web server, with new passwords, and give the
    database to the owner. Prints DATABASE_URL and GEO_READ_DATABASE_URL to use. Idempotent;
    the embedded cluster does this by itself."""
    settings = _settings()
    owner_role = roles.Role(owner, owner_password or secrets.token_urlsafe(24))
    reader_role = roles.Role(reader, reader_password or secrets.token_urlsafe(24))
    dsn = db.libpq(admin_url)
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            roles.provision(conn, owner_role, reader_role, settings.db_statement_timeout_ms)
    except psycopg.Error as exc:
        err.print(f"error: {exc}", style="red", highlight=False, markup=False)
        raise typer.Exit(1) from None
    print(f"DATABASE_URL={roles.url_as(dsn, owner_role)}")
    print(f"GEO_READ_DATABASE_URL={roles.url_as(dsn, reader_role)}")


@db_app.command("backup")
def db_backup(file: Annotated[Path, typer.Argument(help="Backup file to write (pg_dump custom "
                                                       "format).")]) -> None:
    """Write a backup of the whole database in use (embedded or DATABASE_URL)."""
    try:
        size = db.backup(_dsn(_settings()), file)
    except db.BackupError as exc:
        err.print(f"error: {exc}", style="red", highlight=False, markup=False)
        raise typer.Exit(1) from None
    out.print(f"wrote {file}: {size:,} bytes", highlight=False, markup=False)


@db_app.command("restore")
def db_restore(file: Annotated[Path, typer.Argument(help="A file `db backup` wrote.")]) -> None:
    """Restore a backup into the database in use, which must be empty (a new embedded cluster,
    or a new database on an external PostGIS); one transaction."""
    try:
        db.restore(_dsn(_settings()), file)
    except db.BackupError as exc:
        err.print(f"error: {exc}", style="red", highlight=False, markup=False)
        raise typer.Exit(1) from None
    out.print(f"restored {file}", highlight=False, markup=False)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Alembic revision to reach.")) -> None:
    """Apply the schema migrations."""
    dsn = _dsn(_settings())
    db.upgrade(dsn, revision)
    out.print(f"schema at {db.current_revision(dsn)}")


# --------------------------------------------------------------------------- boundaries
def _bars(label: str, transient: bool = False) -> Progress:
    """A progress bar on stderr (rich's progress module is imported by the commands that show
    one, not by every command)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(SpinnerColumn(), TextColumn(label), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=transient)


def _reporter() -> Reporter:
    """Progress bars on stderr, one per stage (made here: the pipeline is imported by the
    commands that load, not by every command)."""
    from geo_service.load.pipeline import Reporter

    class RichReporter(Reporter):
        @contextmanager
        def stage(self, label: str, total: int | None = None
                  ) -> Iterator[Callable[[int], None]]:
            progress = _bars("{task.description:<40}")
            task = progress.add_task(label, total=total)
            with progress:
                yield lambda n: progress.advance(task, n)
                progress.update(task, completed=total or 1, total=total or 1)

        def note(self, message: str) -> None:
            err.print(f"[yellow]note:[/] {message}", highlight=False)

    return RichReporter()


def _report_problems(exc: LoadError, what: str = "load") -> typer.Exit:
    err.print(f"[bold red]{what} refused[/] ({len(exc.problems)} problem(s)); nothing was changed:")
    for problem in exc.problems[:200]:
        err.print(f"  - {problem}", highlight=False, markup=False)
    if len(exc.problems) > 200:
        err.print(f"  ... and {len(exc.problems) - 200} more")
    return typer.Exit(2)


@boundaries_app.command("load")
def boundaries_load(
    target: Annotated[str, typer.Argument(
        help="A manifest id (see `boundaries sources`), a manifest .toml, or any OGR-readable "
             "file (GeoPackage, Shapefile, GeoJSON, GeoParquet, FlatGeobuf).")],
    level: Annotated[str | None, typer.Option(help="country, region or municipality (files).")] = None,
    country: Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2 code of every feature.")] = None,
    code_field: Annotated[str | None, typer.Option(help="Attribute holding the unique code.")] = None,
    name_field: Annotated[str | None, typer.Option(help="Attribute holding the name.")] = None,
    layer: Annotated[str | None, typer.Option(help="Layer to read in a multi-layer file.")] = None,
    encoding: Annotated[str | None, typer.Option(help="Attribute encoding when not UTF-8.")] = None,
    source: Annotated[str | None, typer.Option(help="Source name to record (default: file stem).")] = None,
    strict: Annotated[bool, typer.Option(help="Reject invalid geometry instead of repairing it.")] = False,
    force: Annotated[bool, typer.Option(help="Reload even when the same input is in place.")] = False,
    derived: Annotated[bool, typer.Option(help="Rebuild datasets derived from this one.")] = True,
    title: Annotated[str | None, typer.Option(help="Title to record (files; default: file name).")] = None,
    licence: Annotated[str | None, typer.Option(
        help="Licence of the file's data, e.g. 'CC BY 4.0' (files; shown in credit lines).")] = None,
    attribution: Annotated[str | None, typer.Option(
        help="Attribution the licence asks for (files; shown in credit lines).")] = None,
) -> None:
    """Load a dataset: validate everything, then swap it in one transaction (or change nothing).

    Territories already placed are not moved: run `geo-service members rematch --dry-run` to see
    who would sit on the new boundaries, then without --dry-run to apply."""
    from geo_service.load.pipeline import LoadOptions, load_target

    dsn = _dsn(_settings())
    options = LoadOptions(level=level, country=country, code_field=code_field,
                          name_field=name_field, layer=layer, encoding=encoding, source=source,
                          strict=strict, force=force, derived=derived, title=title,
                          licence=licence, attribution=attribution)
    try:
        result = load_target(_settings(), dsn, target, options, _reporter())
    except LoadError as exc:
        raise _report_problems(exc) from exc
    _say_result(result)
    if not result.skipped:
        err.print("[yellow]note:[/] territories are not moved by a load; see who would be with "
                  "`geo-service members rematch --dry-run`", highlight=False)


@boundaries_app.command("remove")
def boundaries_remove(
    source: Annotated[str, typer.Argument(help="Source name, as `boundaries status` lists it.")],
    level: Annotated[str | None, typer.Option(help="Only this level of the source.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Show what would go and who would move; "
                                               "write nothing.")] = False,
) -> None:
    """Remove a source's boundaries in one transaction; territories placed on them are matched
    again (most fall back to a gazetteer point). Refused while another source's boundaries
    have their parent in it or a manual override pins a territory to it."""
    from geo_service.campaign.members import remove_boundaries
    from geo_service.load.pipeline import LoadOptions, load_target

    settings = _settings()
    try:
        result = remove_boundaries(_dsn(settings), source, level=level, dry_run=dry_run)
    except LoadError as exc:
        raise _report_problems(exc, "removal") from exc
    for replaced in result.redrawn:  # regions drawn from the removed municipalities: restored
        out.print(f"{source} redrew regions of {replaced}: "
                  f"{'would reload' if dry_run else 'reloading'} {replaced} to restore them",
                  highlight=False)
        if not dry_run:
            try:
                _say_result(load_target(settings, _dsn(settings), replaced,
                                        LoadOptions(force=True), _reporter()))
            except LoadError as exc:
                raise _report_problems(exc) from exc
    _say_changes(result.rematched)
    verb = "would remove (dry run, nothing written)" if dry_run else "removed"
    counts = ", ".join(f"{n:,} {lv}" for lv, n in result.removed.items())
    out.print(f"{source}: {verb} {counts}; {len(result.rematched)} territories "
              f"{'would move' if dry_run else 'moved'}", highlight=False)


def _say_changes(changes: list[dict]) -> None:
    if not changes:
        return
    table = _table("id", "name", "before", "after")
    for change in changes:
        table.add_row(change["id"], change["name"], _where(change["before"]),
                      _where(change["after"]))
    out.print(table)


def _where(placement: dict) -> str:
    if placement["boundary_code"]:
        return f"{placement['boundary_level']} {placement['boundary_code']} ({placement['match_method']})"
    return f"{placement['match_outcome']} ({placement['match_method'] or 'no method'})"


def _say_result(result: LoadResult) -> None:
    if result.skipped:
        out.print(f"{result.source} ({result.level}): same input already loaded, nothing to do")
    else:
        out.print(f"{result.source} ({result.level}): {result.features:,} features loaded "
                  f"in {result.seconds:.1f} s")


@boundaries_app.command("load-defaults")
def boundaries_load_defaults(
    force: Annotated[bool, typer.Option(help="Reload even the datasets already in place.")] = False,
) -> None:
    """Load every default dataset (countries, regions, Korean municipalities, gazetteer)."""
    from geo_service.load.pipeline import load_defaults

    settings = _settings()
    dsn = _dsn(settings)
    try:
        results = load_defaults(settings, dsn, _reporter(), force=force)
    except LoadError as exc:
        raise _report_problems(exc) from exc
    for result in results:
        _say_result(result)


@boundaries_app.command("sources")
def boundaries_sources() -> None:
    """List the source manifests in boundaries/."""
    from geo_service.manifests import all_manifests

    table = _table("id", "level", "title", "licence")
    for manifest in all_manifests(_settings()).values():
        table.add_row(manifest.id, manifest.level, manifest.title, manifest.licence)
    out.print(table)


@boundaries_app.command("status")
def boundaries_status(
    as_json: JsonFlag = False,
) -> None:
    """Per source and level: feature count, version and load time."""
    from geo_service.load import store

    rows = store.status(_dsn(_settings()))
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = _table("source", "level", "features", "version", "loaded_at")
    for row in rows:
        table.add_row(row["source"], row["level"], f"{row['features']:,}", row["version"] or "",
                      row["loaded_at"])
    out.print(table)


# --------------------------------------------------------------------------- campaign
members_app = typer.Typer(help="Territories of the movement (members).", no_args_is_help=True)
initiatives_app = typer.Typer(help="Initiatives of the territories.", no_args_is_help=True)
app.add_typer(members_app, name="members")
app.add_typer(initiatives_app, name="initiatives")

FileArg = Annotated[Path, typer.Argument(help="CSV, XLSX or JSON file.")]
DryRun = Annotated[bool, typer.Option(help="Validate, match and show what would change; write nothing.")]
SkipInvalid = Annotated[bool, typer.Option(help="Import the valid rows and report the others.")]
ReportOpt = Annotated[Path | None, typer.Option(help="Write one JSON object per input row here.")]
Delimiter = Annotated[str, typer.Option(help="CSV delimiter.")]
Sheet = Annotated[str | None, typer.Option(help="XLSX sheet to read (default: the first).")]


def _run_import(importer: Callable[..., ImportResult], file: Path, dry_run: bool,
                skip_invalid: bool, report: Path | None, delimiter: str, sheet: str | None,
                **extra: bool) -> None:
    from geo_service.campaign.rows import report_json

    dsn = _dsn(_settings())
    try:
        result = importer(dsn, file, dry_run=dry_run, skip_invalid=skip_invalid,
                          delimiter="\t" if delimiter == "\\t" else delimiter, sheet=sheet,
                          **extra)
    except LoadError as exc:
        if report:
            report.write_text(json.dumps([{"row": p.feature, "field": p.field, "outcome": "invalid",
                                           "errors": [p.message]} for p in exc.problems], indent=2))
        raise _report_problems(exc) from exc
    for note in result.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    for problem in result.problems:
        err.print(f"skipped: {problem}", style="yellow", highlight=False, markup=False)
    if report:
        report.write_text(report_json(result))
    if dry_run:
        for entry in result.report:
            if entry.get("change") in ("inserted", "updated"):
                fields = entry.get("changed_fields")
                detail = f" ({', '.join(fields)})" if fields else ""
                label = entry.get("name") or entry.get("title")
                out.print(f"  row {entry['row']}: would be {entry['change']}: {label}{detail}",
                          highlight=False, markup=False)
    verb = "would change (dry run, nothing written)" if dry_run else "imported"
    out.print(f"{file.name}: {verb}: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()),
              highlight=False)


@members_app.command("import")
def members_import(
    file: FileArg, dry_run: DryRun = False, skip_invalid: SkipInvalid = False,
    report: ReportOpt = None, delimiter: Delimiter = ",", sheet: Sheet = None,
    prune: Annotated[bool, typer.Option(
        help="The file is the whole roster: remove territories it does not name "
             "(kept in history). Removing more than 10 % of them (at most 20) needs --force; "
             "--dry-run lists who would go.")] = False,
    force: Annotated[bool, typer.Option(
        help="With --prune: remove however many the file leaves out.")] = False,
) -> None:
    """Import territories: every row validated first, matched to a boundary or a point, upserted
    on id (else name + country + kind); changed rows keep their previous version in history.

    Columns: name, country_iso2, level (municipality | metropolitan area | region-province-state |
    association), commitment_kind, source (URLs separated by ' ; '), confidence (high | medium |
    low); optional id, local_name, year, joined_on (YYYY-MM-DD), commitment, campaign_wave,
    status, website, sections (UCLG section slugs), boundary_code (ISO 3166-2, national code,
    Wikidata id or our code: a manual override), lon, lat."""
    from geo_service.campaign.members import import_members

    _run_import(import_members, file, dry_run, skip_invalid, report, delimiter, sheet, prune=prune,
                force=force)


@members_app.command("synthetic")
def members_synthetic(
    file: Annotated[Path, typer.Argument(help="The CSV file to write.")],
    count: Annotated[int, typer.Option(help="How many territories.")] = 10_000,
    seed: Annotated[int, typer.Option(help="The same seed and data give the same file.")] = 1,
) -> None:
    """Write a SYNTHETIC roster for load tests: COUNT made-up territories on real boundaries of
    this database (every country once the count allows, then municipalities where the data has
    them, else regions, and a few national associations), each with a boundary_code that matches
    exactly. Ids synthetic-00001..., names "Synthetic 00001 (Lyon)", sources under example.org,
    confidence low: never members. Nothing is imported: run `geo-service members import` on the
    file, in a database made for the test (see docs/scaling.md)."""
    from geo_service.campaign.synthetic import write_synthetic

    try:
        counts = write_synthetic(_dsn(_settings()), file, count=count, seed=seed)
    except LoadError as exc:
        raise _report_problems(exc, "synthetic roster") from exc
    summary = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "countries")
    out.print(f"{file}: {count} synthetic territories ({summary}) in "
              f"{counts['countries']} countries, seed {seed}", highlight=False)


@members_app.command("override")
def members_override(
    territory_id: Annotated[str, typer.Argument(help="The territory's id (see `members list`).")],
    boundary: Annotated[str | None, typer.Option(
        help="Boundary code to use (ISO 3166-2, national code, Wikidata id or our code).")] = None,
    clear: Annotated[bool, typer.Option(help="Remove the override and match again.")] = False,
) -> None:
    """Set or clear the manual boundary of a territory; re-imports keep it."""
    from geo_service.campaign.members import set_override

    if bool(boundary) == clear:
        raise _fail("give either --boundary CODE or --clear")
    dsn = _dsn(_settings())
    try:
        message = set_override(dsn, territory_id, None if clear else boundary)
    except LoadError as exc:
        raise _report_problems(exc) from exc
    out.print(message, highlight=False)


@members_app.command("rematch")
def members_rematch(
    country: Annotated[list[str] | None, typer.Option(
        help="Only territories of this ISO 3166-1 alpha-2 country (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Show who would move; write nothing.")] = False,
    report: Annotated[Path | None, typer.Option(
        help="Write the changes here as JSON (id, name, before, after).")] = None,
) -> None:
    """Match stored territories again against the boundaries now in place (after loading your
    own boundaries). Manual overrides and given coordinates are kept; every change keeps the
    previous version in history."""
    from geo_service.campaign.members import RematchResult, rematch

    try:
        result: RematchResult = rematch(_dsn(_settings()), countries=country, dry_run=dry_run)
    except LoadError as exc:
        raise _report_problems(exc, "re-match") from exc
    if report:
        report.write_text(json.dumps(result.changes, ensure_ascii=False, indent=2))
    _say_changes(result.changes)
    verb = "would move (dry run, nothing written)" if dry_run else "moved"
    out.print(f"{result.checked} territories checked; {len(result.changes)} {verb}",
              highlight=False)


@members_app.command("list")
def members_list(
    country: Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2 filter.")] = None,
    outcome: Annotated[str | None, typer.Option(
        help="matched, point, ambiguous, unmatched or implausible.")] = None,
) -> None:
    """List territories with how each was placed on the map."""
    with psycopg.connect(_dsn(_settings())) as conn:
        found = conn.execute(
            "SELECT id, name, iso3166_1, kind, commitment_kind, match_outcome, match_method, "
            "coalesce(boundary_code, '') FROM territories WHERE (%s::text IS NULL OR iso3166_1 = %s) "
            "AND (%s::text IS NULL OR match_outcome = %s) ORDER BY iso3166_1, name",
            (country and country.upper(), country and country.upper(), outcome, outcome)).fetchall()
    table = _table("id", "name", "country", "kind", "commitment", "outcome", "method", "boundary")
    for row in found:
        table.add_row(*(str(v) if v is not None else "" for v in row))
    out.print(table)


@members_app.command("coverage")
def members_coverage(
    as_json: JsonFlag = False,
    include_engagement: IncludeEngagement = False,
) -> None:
    """How many members sit on their own boundary (the level their kind states, or the
    first-level unit that is the city itself), on a larger unit, or on a point, by country."""
    from geo_service.query.stats import PLACEMENTS, coverage_query

    with psycopg.connect(_dsn(_settings())) as conn:
        found = conn.execute(coverage_query(include_engagement)).fetchall()
    by_country: dict[str, dict[str, int]] = {}
    for country, placement, count in found:
        by_country.setdefault(country, dict.fromkeys(PLACEMENTS, 0))[placement] = count
    totals = {p: sum(c[p] for c in by_country.values()) for p in PLACEMENTS}
    if as_json:
        print(json.dumps({"total": totals, "by_country": by_country}, indent=2))
        return
    table = _table("country", "own boundary", "larger unit", "point")
    for country, counts in by_country.items():
        table.add_row(country, *(str(counts[p]) for p in PLACEMENTS))
    table.add_row("all", *(str(totals[p]) for p in PLACEMENTS))
    out.print(table)


@members_app.command("imports")
def members_imports(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """List the imports (members, initiatives, restores): id, when, file, what changed, and how
    many earlier versions history keeps of them (what `members restore ID` can bring back)."""
    with psycopg.connect(_dsn(_settings())) as conn:
        found = conn.execute(
            "SELECT i.id, i.kind, to_char(i.imported_at, 'YYYY-MM-DD HH24:MI'), i.file_name, "
            "i.counts::text, (SELECT count(*) FROM history h WHERE h.import_id = i.id) "
            "FROM imports i ORDER BY i.id DESC LIMIT %s", (limit,)).fetchall()
    table = _table("id", "kind", "when (UTC)", "file", "counts", "kept in history")
    for row in found:
        table.add_row(*(str(v) for v in row))
    out.print(table)


@members_app.command("restore")
def members_restore(
    import_id: Annotated[int, typer.Argument(help="An import's id (see `members imports`).")],
    dry_run: DryRun = False,
) -> None:
    """Bring back what an import removed or changed (territories, and initiatives with their
    themes), as it was before; rows the import added stay. One transaction. The restore is kept
    as an import of its own, so it can be restored too."""
    from geo_service.campaign.restore import restore_import

    try:
        result = restore_import(_dsn(_settings()), import_id, dry_run=dry_run)
    except LoadError as exc:
        raise _report_problems(exc, "restore") from exc
    verb = "would restore (dry run, nothing written)" if dry_run else "restored"
    out.print(f"import {import_id}: {verb} {len(result.territories)} territories and "
              f"{len(result.initiatives)} initiatives"
              + (f" (restore is import {result.restore_id})" if result.restore_id else ""),
              highlight=False)
    for territory in result.territories:
        out.print(f"  territory {territory}", highlight=False, markup=False)
    if result.without_themes:
        err.print(f"note: {len(result.without_themes)} initiatives were kept in history without "
                  "their themes (before themes were kept): put back without them", style="yellow")


@initiatives_app.command("import")
def initiatives_import(file: FileArg, dry_run: DryRun = False, skip_invalid: SkipInvalid = False,
                       report: ReportOpt = None, delimiter: Delimiter = ",",
                       sheet: Sheet = None) -> None:
    """Import initiatives (each names a known territory and its rights themes)."""
    from geo_service.campaign.initiatives import import_initiatives

    _run_import(import_initiatives, file, dry_run, skip_invalid, report, delimiter, sheet)


@app.command("stats")
def stats(
    as_json: JsonFlag = False,
    include_engagement: IncludeEngagement = False,
) -> None:
    """Campaign progress against 10, 100 and 1000, by section, kind, commitment, theme, year."""
    import asyncio

    from geo_service.query.stats import stats as read_stats

    async def read() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(_dsn(_settings())) as conn:
            return await read_stats(conn, include_engagement)

    result = asyncio.run(read())
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    out.print(f"{result['territories']} territories, {result['initiatives']} initiatives "
              f"({result['note']})", highlight=False)
    for m in result["milestones"]:
        out.print(f"  {m['target']:>5}: {'reached' if m['reached'] else str(m['remaining']) + ' to go'}")
    for key in ("by_uclg_section", "by_kind", "by_commitment_kind", "by_rights_theme"):
        out.print(f"{key.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in result[key].items()),
                  highlight=False)
    out.print("by year: " + ", ".join(f"{y['year']} +{y['new']} ({y['cumulative']})"
                                      for y in result["by_year"]) + f"; undated {result['undated']}")


@app.command("load-defaults")
def load_all_defaults(
    force: Annotated[bool, typer.Option(help="Reload what is already in place.")] = False,
) -> None:
    """Default boundaries, then the sample campaign data (what `make run` loads on first start)."""
    from geo_service.campaign.sample import load_sample
    from geo_service.load.pipeline import load_defaults

    settings = _settings()
    dsn = _dsn(settings)
    try:
        for result in load_defaults(settings, dsn, _reporter(), force=force):
            _say_result(result)
        for kind, imported in load_sample(settings, dsn, force=force):
            if imported is None:
                out.print(f"sample {kind}: same file already imported, nothing to do")
                continue
            for problem in imported.problems:
                err.print(f"skipped: {problem}", style="yellow", highlight=False, markup=False)
            out.print(f"sample {kind}: " + ", ".join(f"{k} {v}" for k, v in imported.counts.items()),
                      highlight=False)
    except LoadError as exc:
        raise _report_problems(exc) from exc


# --------------------------------------------------------------------------- tiles
tiles_app = typer.Typer(help="Vector tiles: the prebuilt archive of low zooms.", no_args_is_help=True)
app.add_typer(tiles_app, name="tiles")


@tiles_app.command("build")
def tiles_build(
    max_zoom: Annotated[int, typer.Option(min=0, max=10, help="Highest zoom to prebuild.")] = 6,
    force: Annotated[bool, typer.Option(
        help="Render every tile, even if the archives are current or could be updated.")] = False,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Database connections.")] = 3,
) -> None:
    """Prebuild the `map` tileset (all layers, each language) for zooms 0..max-zoom into PMTiles
    archives under tiles/. The server uses them while they hold the current data version and
    renders live otherwise; a no-op when they are already current.

    Incremental: when the archives were built from this database to this zoom and no boundary
    was loaded, removed or redrawn since, only the tiles whose members changed are rendered and
    the rest are copied from the old archives (the result equals a full build). The last line
    says which it did: "re-rendered N of M tiles; the rest kept from the archives of data
    version V", or "full build (why)". Each archive is replaced whole when written: stopped
    midway, the old one stays in place."""
    import asyncio

    from geo_service.render import tiles as tilestore

    settings = _settings()
    dsn = _dsn(settings)
    progress = _bars("tiles z0–z" + str(max_zoom), transient=True)
    task = progress.add_task("tiles", total=None)
    with progress:
        result = asyncio.run(tilestore.build(
            dsn, settings.tiles_dir, max_zoom=max_zoom, workers=workers, force=force,
            progress=lambda done, total: progress.update(task, completed=done, total=total)))
    if result.skipped:
        out.print(f"tiles: archives already hold data version {result.version} to z{max_zoom}, "
                  "nothing to do")
        return
    out.print(f"tiles: {result.tiles} non-empty map tiles per language, z0–z{result.max_zoom}, "
              f"in {result.seconds:.1f} s; largest {result.largest:,} bytes; archives "
              + ", ".join(f"{lang} {size / 1e6:.1f} MB" for lang, size in result.sizes.items())
              + f" (data version {result.version})", highlight=False)
    out.print(f"tiles: full build ({result.full_because})" if result.full_because else
              f"tiles: re-rendered {result.rendered} of {result.grid} tiles; the rest kept from "
              f"the archives of data version {result.base}", highlight=False)


# --------------------------------------------------------------------------- publish
@app.command("publish")
def publish_site(
    directory: Annotated[Path, typer.Argument(
        help="Folder to write the site into: new, empty or a previous publish.")],
    lang: Annotated[list[str] | None, typer.Option(
        "--lang", help="A language to publish (repeat it); the first one's pages are at the "
                       "top (index.html), the others in their own folder. Default: en, fr, es.")
                    ] = None,
    max_zoom: Annotated[int, typer.Option(
        min=0, max=10, help="Deepest zoom of the tile archives (beyond it the browser scales "
                            "the deepest tiles); 8 draws municipalities. An archive is about "
                            "5 MB at 6, 9 MB at 7, 27 MB at 8.")] = 6,
    build: Annotated[bool, typer.Option(
        help="Build the tile archives when they are missing or out of date (else fail).")] = True,
    force: Annotated[bool, typer.Option(
        help="Replace DIR whole even if it is not empty and not a previous publish.")] = False,
    service_url: Annotated[str | None, typer.Option(
        help="The live service's address (https://...): the credit links to its /about page. "
             "Default: the site's own data/sources.txt.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Database connections for a "
                                                              "tile build.")] = 3,
) -> None:
    """Write the visitors' map as a static site any static host or CDN can serve.

    /map as DIR/index.html and /embed as DIR/embed.html in each language, their scripts and
    styles, the members as GeoJSON and the base as PMTiles archives read with HTTP range requests
    (the host must answer Range requests, as nginx, Apache, S3 and the usual CDNs do). The site
    is built beside DIR and moved in place whole. No Download control and no territory pages:
    they need the app."""
    import asyncio

    from geo_service.render import publish

    settings = _settings()
    dsn = _dsn(settings)
    if service_url and not service_url.startswith(("https://", "http://")):
        raise _fail(f"--service-url {service_url!r} is not an http(s) address")
    progress = _bars("tiles z0–z" + str(max_zoom), transient=True)
    task = progress.add_task("tiles", total=None)
    try:
        with progress:
            result = asyncio.run(publish.publish(
                dsn, directory, tiles_dir=settings.tiles_dir, node_modules=settings.node_modules,
                langs=tuple(lang or publish.i18n.LANGS), max_zoom=max_zoom, build=build,
                force=force, service_url=service_url, workers=workers,
                progress=lambda done, total: progress.update(task, completed=done, total=total)))
    except (publish.PublishError, ValueError) as exc:
        raise _fail(str(exc)) from None
    out.print(f"published {result.directory}: {len(result.pages)} pages "
              f"({', '.join(result.langs)}), {result.members} members, tiles z0–z{result.max_zoom}"
              f"{' (built now)' if result.tiles_built else ''}; {result.files} files, "
              f"{result.bytes / 1e6:.1f} MB (archives "
              + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in result.archive_bytes.items())
              + f") in {result.seconds:.1f} s, data version {result.version}",
              highlight=False, markup=False)


# --------------------------------------------------------------------------- export
@app.command("export")
def export_image(
    region: Annotated[str, typer.Option(
        help="world, a UCLG section slug (europe), ISO 3166-1 (FR) or ISO 3166-2 (KR-29).")] = "world",
    fmt: Annotated[str | None, typer.Option(
        "--format", help="png, svg or pdf (default: from --out's suffix, else png).")] = None,
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="File to write (default map-REGION.FORMAT).")] = None,
    theme: Annotated[str | None, typer.Option(help="Rights theme slug.")] = None,
    section: Annotated[str | None, typer.Option(help="UCLG section slug (filter).")] = None,
    kind: Annotated[str | None, typer.Option(help="municipality, metropolitan-area, region, "
                                                  "association.")] = None,
    commitment_kind: Annotated[str | None, typer.Option(help="campaign-signatory, declared, ...")
                               ] = None,
    lang: Annotated[str, typer.Option(help="en, fr or es.")] = "en",
    title: Annotated[str | None, typer.Option(help="Title (default: the movement and region).")
                     ] = None,
    subtitle: Annotated[str | None, typer.Option(help="Subtitle (default: the count).")] = None,
    legend: Annotated[bool, typer.Option(help="Draw the legend.")] = True,
    labels: Annotated[bool, typer.Option(help="Member names (small sets only).")] = False,
    preset: Annotated[str | None, typer.Option(
        help="slide-16x9 (default), slide-4k, slide-4x3, a4-landscape or square.")] = None,
    width: Annotated[int | None, typer.Option(help="Pixels (instead of a preset).")] = None,
    height: Annotated[int | None, typer.Option(help="Pixels (instead of a preset).")] = None,
    dpi: Annotated[int | None, typer.Option(help="Dots per inch (instead of a preset).")] = None,
    transparent: Annotated[bool, typer.Option(help="No background.")] = False,
    dark: Annotated[bool, typer.Option(help="Dark colours.")] = False,
) -> None:
    """Draw a presentation map (PNG, SVG or PDF) for slides and print, as GET /export/map.FORMAT."""
    from geo_service.errors import ClientError
    from geo_service.render import mapimage

    chosen = fmt or (out_path.suffix.lstrip(".").lower() if out_path and out_path.suffix else "png")
    params = {k: v for k, v in {
        "region": region, "theme": theme, "section": section, "kind": kind,
        "commitment_kind": commitment_kind, "lang": lang, "title": title, "subtitle": subtitle,
        "legend": legend, "labels": labels, "preset": preset, "width": width, "height": height,
        "dpi": dpi, "transparent": transparent, "dark": dark}.items() if v is not None}
    try:
        wanted = mapimage.parse(params, chosen)
        data, version = mapimage.render(_dsn(_settings()), wanted)
    except ClientError as exc:
        err.print(f"error: {exc}", style="red", highlight=False, markup=False)
        raise typer.Exit(2) from None
    target = out_path or Path(f"map-{wanted.region.lower()}.{chosen}")
    target.write_bytes(data)
    out.print(f"wrote {target}: {wanted.width}×{wanted.height} px at {wanted.dpi} dpi, "
              f"{len(data):,} bytes (data version {version})", highlight=False, markup=False)


# --------------------------------------------------------------------------- serve
@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Serve the map and the API."""
    import uvicorn

    from geo_service.web.app import create_app

    settings = _settings()
    settings = settings.model_copy(update={"host": host or settings.host,
                                           "port": port or settings.port})
    db.read_url(settings)  # start the embedded cluster (if it is the one) before the app's pool
    # libuv's loop and the C parser, named so a missing one fails at start rather than
    # silently serving on the slower pure-Python pair
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                loop="uvloop", http="httptools", limit_concurrency=settings.http_max_concurrency,
                timeout_keep_alive=settings.http_keep_alive_s,
                timeout_graceful_shutdown=settings.http_shutdown_s)


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn,
            psycopg.errors.UndefinedFunction) as exc:
        # the database lacks the service's tables, or has an older schema: nothing was written
        # (the statement failed), and the fix is one command
        first = str(exc).splitlines()[0]
        err.print(f"[bold red]error:[/] the database has no service schema or an older one "
                  f"({first}): run `geo-service db upgrade` first", highlight=False)
        sys.exit(1)


