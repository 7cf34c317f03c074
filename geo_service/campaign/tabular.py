"""Reading roster files (CSV, XLSX, JSON) into rows of text cells, with row-level errors."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geo_service.errors import LoadError, Problem, RowProblem

MAX_CELL = 100_000  # characters; a longer cell is an error, not a silent truncation
DELIMITERS = (",", ";", "\t", "|")
csv.field_size_limit(64 * 1024 * 1024)  # read oversized cells so they can be reported by row


@dataclass
class Table:
    """Rows of a roster file: header name -> cell text, with the row number each came from."""

    file: str
    rows: list[dict[str, str]]
    row_numbers: list[int]
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip()


def _check_header(file: str, header: list[str], expected: set[str], delimiter: str) -> None:
    if expected & set(header):
        return
    for other in DELIMITERS:
        if other != delimiter and any(expected & set(h.split(other)) for h in header):
            shown = "\\t" if other == "\t" else other
            raise LoadError([RowProblem(file, 1, None,
                                     f"the header is not split by {delimiter!r}: this file uses "
                                     f"{shown!r} (pass --delimiter '{shown}')")])
    raise LoadError([RowProblem(file, 1, None,
                             "no header row: the first row must name the columns (expected "
                             f"some of: {', '.join(sorted(expected))}); got {header[:6]}")])


def _rows_from_matrix(file: str, matrix: list[list[Any]], expected: set[str], delimiter: str,
                      first_row: int = 1) -> Table:
    if not matrix:
        raise LoadError([RowProblem(file, None, None, "the file has no rows")])
    header = [_text(h) for h in matrix[0]]
    _check_header(file, header, expected, delimiter)
    duplicated = sorted({h for h in header if h and header.count(h) > 1})
    if duplicated:
        raise LoadError([RowProblem(file, first_row, None,
                                 f"column(s) named twice in the header: {', '.join(duplicated)}")])
    table = Table(file, [], [])
    for offset, values in enumerate(matrix[1:], start=1):
        number = first_row + offset
        cells = [_text(v) for v in values]
        if not any(cells):
            continue
        if len(cells) > len(header) and any(cells[len(header):]):
            table.problems.append(RowProblem(file, number, None,
                                          f"{len(cells)} cells but the header has {len(header)}"))
        row = {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(header) if h}
        for name, value in row.items():
            if len(value) > MAX_CELL:
                table.problems.append(RowProblem(file, number, name,
                                              f"cell is {len(value):,} characters long; the limit "
                                              f"is {MAX_CELL:,}"))
                row[name] = value[:200]
        table.rows.append(row)
        table.row_numbers.append(number)
    return table


def _read_csv(path: Path, expected: set[str], delimiter: str) -> Table:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LoadError([RowProblem(str(path), line, None,
                                 f"not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as "
                                 "UTF-8 (CSV UTF-8 in spreadsheet programs)")]) from exc
    try:
        matrix = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise LoadError([RowProblem(str(path), None, None, f"unreadable CSV: {exc}")]) from exc
    return _rows_from_matrix(str(path), matrix, expected, delimiter)


def _read_xlsx(path: Path, expected: set[str], sheet: str | None) -> Table:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, OSError, KeyError, ValueError) as exc:
        raise LoadError([RowProblem(str(path), None, None, f"unreadable XLSX: {exc}")]) from exc
    names = book.sheetnames
    if sheet is not None and sheet not in names:
        raise LoadError([RowProblem(str(path), None, None,
                                 f"no sheet {sheet!r}; sheets are: {', '.join(names)}")])
    chosen = sheet or names[0]
    matrix = [list(r) for r in book[chosen].iter_rows(values_only=True)]
    book.close()
    table = _rows_from_matrix(f"{path} [sheet {chosen}]", matrix, expected, ",")
    if len(names) > 1:
        table.notes.append(f"read sheet {chosen!r} of {len(names)} ({', '.join(names)}); "
                           "choose another with --sheet")
    return table


def _read_json(path: Path, expected: set[str]) -> Table:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LoadError([RowProblem(str(path), None, None, f"unreadable JSON: {exc}")]) from exc
    if isinstance(data, dict):
        data = next((data[k] for k in ("rows", "territories", "members", "initiatives", "data")
                     if isinstance(data.get(k), list)), None)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise LoadError([RowProblem(str(path), None, None,
                                 "expected a list of objects (or {\"rows\": [...]})")])
    header: list[str] = []
    for record in data:
        header += [k for k in record if k not in header]
    matrix: list[list[Any]] = [header]
    for record in data:
        matrix.append([";".join(map(str, v)) if isinstance(v, list) else v
                       for v in (record.get(h) for h in header)])
    return _rows_from_matrix(str(path), matrix, expected, ",", first_row=0)


def read_table(path: Path, expected: set[str], *, delimiter: str = ",",
               sheet: str | None = None) -> Table:
    """Rows of a CSV, XLSX or JSON file; `expected` are the column names a header should have."""
    if not path.exists():
        raise LoadError([RowProblem(str(path), None, None, "no such file")])
    if path.stat().st_size == 0:
        raise LoadError([RowProblem(str(path), None, None, "the file is empty")])
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(path, expected, sheet)
    if suffix == ".json":
        return _read_json(path, expected)
    return _read_csv(path, expected, delimiter)
