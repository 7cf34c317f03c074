"""Domain errors: what went wrong, where (file, feature, field), separate from how it is shown."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg_pool import PoolTimeout


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: file, feature (1-based) or row, field, and what."""

    file: str
    feature: int | str | None
    field: str | None
    message: str
    unit: str = "feature"  # what `feature` counts: features of a layer, rows of a table

    def __str__(self) -> str:
        where = [self.file]
        if self.feature is not None:
            where.append(f"{self.unit} {self.feature}")
        if self.field:
            where.append(f"field {self.field}")
        return f"{', '.join(where)}: {self.message}"


def RowProblem(file: str, row: int | str | None, field: str | None, message: str) -> Problem:
    """A problem in a row of a table (CSV, XLSX, JSON roster)."""
    return Problem(file, row, field, message, unit="row")


class LoadError(Exception):
    """A load was refused; nothing was written. Carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ClientError(ValueError):
    """A request the client must change (a bad parameter, an unknown region): a 400."""


class NotFound(LookupError):
    """An unknown collection, feature, tileset or page: a 404."""


class Overloaded(RuntimeError):
    """Too much work of one kind is queued already (map images): retry later, a 429."""


class NoDatabase(RuntimeError):
    """None of the databases the web server reads from answers (replicas and fallback): a 503
    the client may retry. Its message names no host."""


class TooSlow(RuntimeError):
    """A piece of work ran past its time limit (a map image): a 503 the client may retry."""


# How each error reaches an HTTP client: status and title of its problem details (RFC 9457).
# The web layer registers one handler for all of them (and maps FastAPI's own parameter
# validation to 400 and Starlette's HTTP errors to their status). The database being down or
# out of connections is a 503 the client may retry; its detail is only the error's type, as
# its message can name hosts.
HTTP_STATUS: dict[type[Exception], tuple[int, str]] = {
    ClientError: (400, "Bad Request"),
    NotFound: (404, "Not Found"),
    Overloaded: (429, "Too Many Requests"),
    TooSlow: (503, "Took too long"),
    psycopg.OperationalError: (503, "Database unavailable"),
    # a value the database refuses (an impossible date, a bad LIKE pattern...): the client's
    psycopg.errors.DataError: (400, "Invalid value"),
    PoolTimeout: (503, "Database unavailable"),
    NoDatabase: (503, "Database unavailable"),
}
RETRY_AFTER_S = 5  # what a 429 or 503 tells the client to wait
# the messages of these may name hosts: their detail is the error's type alone
QUIET = (psycopg.OperationalError, PoolTimeout)


def http_status(exc: Exception) -> tuple[int, str]:
    """The status and title of an error in HTTP_STATUS (or of its nearest listed base class)."""
    for kind in type(exc).__mro__:
        if kind in HTTP_STATUS:
            return HTTP_STATUS[kind]
    raise KeyError(type(exc).__name__)


def public_detail(exc: Exception) -> str:
    """What a client is told about an error: a database error's primary message only (not the
    statement or its context), the type alone where the message can name hosts."""
    if isinstance(exc, QUIET):
        return type(exc).__name__
    if isinstance(exc, psycopg.Error):
        return (exc.diag.message_primary if exc.diag else None) or type(exc).__name__
    return str(exc)
