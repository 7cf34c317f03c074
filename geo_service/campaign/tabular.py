"""Reading roster files (CSV, XLSX, JSON) into rows of text cells, with row-level errors.

A roster comes from a partner, by mail or a shared folder: the reader treats it as hostile. It
reads in bounded time and memory whatever the file holds (size and row caps from the settings,
an XLSX checked as a zip package before it is parsed, rows streamed, never padded to a declared
sheet size) and refuses, naming file, row and field, what no roster holds: control characters,
spreadsheet formulas given as text, XML entity definitions, thousands of columns."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

from geo_service.errors import LoadError, Problem, RowProblem
from geo_service.settings import Settings

MAX_CELL = 100_000  # characters; a longer cell is an error, not a silent truncation
MAX_COLUMNS = 200  # a roster has about 15
MAX_SHARED_STRINGS = 500_000  # distinct texts of an XLSX
MAX_PARTS = 1_000  # files inside an XLSX package
MAX_OTHER_PART = 4 * 1024 * 1024  # styles, workbook, theme...: whole-tree parsed
UNPACKED_FACTOR = 2  # an XLSX may unpack to this many times the roster size cap
DELIMITERS = (",", ";", "\t", "|")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
csv.field_size_limit(64 * 1024 * 1024)  # read oversized cells so they can be reported by row
MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """How much of a roster is read: bytes on disk, rows, and what an XLSX may unpack to."""

    max_bytes: int
    max_rows: int

    @property
    def max_unpacked(self) -> int:
        return self.max_bytes * UNPACKED_FACTOR

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Limits:
        settings = settings or Settings()
        return cls(settings.roster_max_mb * MB, settings.roster_max_rows)


@dataclass
class Table:
    """Rows of a roster file: header name -> cell text, with the row number each came from."""

    file: str
    rows: list[dict[str, str]]
    row_numbers: list[int]
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _refuse(file: str, message: str, row: int | None = None) -> LoadError:
    return LoadError([RowProblem(file, row, None, message)])


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
            raise _refuse(file, f"the header is not split by {delimiter!r}: this file uses "
                                f"{shown!r} (pass --delimiter '{shown}')", 1)
    raise _refuse(file, "no header row: the first row must name the columns (expected some of: "
                        f"{', '.join(sorted(expected))}); got {header[:6]}", 1)


def _cell_problem(value: str) -> str | None:
    """What is wrong with a cell no roster holds, or None."""
    if len(value) > MAX_CELL:
        return f"cell is {len(value):,} characters long; the limit is {MAX_CELL:,}"
    bad = CONTROL.search(value)
    if bad:
        return (f"holds a control character (U+{ord(bad.group()):04X}) at position "
                f"{bad.start() + 1}; remove it")
    if value.startswith("="):
        return (f"starts with '=': a spreadsheet formula ({value[:40]!r}), not a value; "
                "give the value it computes")
    return None


def _build_table(file: str, rows: Iterable[tuple[int, list[Any]]], expected: set[str],
                 delimiter: str, limits: Limits) -> Table:
    """A table from (row number, cells) pairs, the header first, streamed: caps are checked
    as rows come, so a hostile file stops early."""
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        raise _refuse(file, "the file has no rows")
    header_row, values = first
    if len(values) > MAX_COLUMNS:
        raise _refuse(file, f"the header has {len(values):,} columns; a roster has at most "
                            f"{MAX_COLUMNS}", header_row)
    header = [_text(h) for h in values]
    _check_header(file, header, expected, delimiter)
    duplicated = sorted({h for h in header if h and header.count(h) > 1})
    if duplicated:
        raise _refuse(file, f"column(s) named twice in the header: {', '.join(duplicated)}",
                      header_row)
    for name in header:
        problem = _cell_problem(name)
        if problem:
            raise LoadError([RowProblem(file, header_row, name[:40], problem)])
    named = [(i, h) for i, h in enumerate(header) if h]
    table = Table(file, [], [])
    for number, values in iterator:
        if len(values) > MAX_COLUMNS:
            raise _refuse(file, f"{len(values):,} cells; a roster has at most {MAX_COLUMNS} "
                                "columns", number)
        cells = [_text(v) for v in values]
        if not any(cells):
            continue
        if len(table.rows) == limits.max_rows:
            raise _refuse(file, f"more than {limits.max_rows:,} rows (GEO_ROSTER_MAX_ROWS); "
                                "split the roster or raise the limit", number)
        if len(cells) > len(header) and any(cells[len(header):]):
            table.problems.append(RowProblem(file, number, None,
                                             f"{len(cells)} cells but the header has "
                                             f"{len(header)}"))
        row = {h: (cells[i] if i < len(cells) else "") for i, h in named}
        for name, value in row.items():
            problem = _cell_problem(value)
            if problem:
                table.problems.append(RowProblem(file, number, name, problem))
                row[name] = CONTROL.sub("", value[:200])
        table.rows.append(row)
        table.row_numbers.append(number)
    return table


def _decode(file: str, raw: bytes, hint: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _refuse(file, f"not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
                            f"{hint}", line) from exc


def _read_csv(path: Path, expected: set[str], delimiter: str, limits: Limits) -> Table:
    text = _decode(str(path), path.read_bytes(), " (CSV UTF-8 in spreadsheet programs)")

    def rows() -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            for values in reader:
                yield reader.line_num, values
        except csv.Error as exc:
            raise _refuse(str(path), f"unreadable CSV: {exc}", reader.line_num) from exc

    return _build_table(str(path), rows(), expected, delimiter, limits)


# --- XLSX ----------------------------------------------------------------------------------------

def _check_package(path: Path, limits: Limits) -> None:
    """Refuse an XLSX before any XML parser sees it if it is not a sane zip package: too many
    parts, unpacking past the cap (a zip bomb; zipfile never inflates a part past the size it
    declares), a DTD (entity bombs, external entities), or too many shared strings."""
    file = str(path)
    try:
        package = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _refuse(file, f"not an XLSX file (not a zip package: {exc})") from exc
    with package:
        parts = package.infolist()
        if len(parts) > MAX_PARTS:
            raise _refuse(file, f"the package holds {len(parts):,} files; an XLSX holds a few "
                                f"dozen (at most {MAX_PARTS:,} are read)")
        unpacked = sum(p.file_size for p in parts)
        if unpacked > limits.max_unpacked:
            raise _refuse(file, f"unpacks to {unpacked / MB:,.0f} MB; the limit is "
                                f"{limits.max_unpacked / MB:,.0f} MB ({UNPACKED_FACTOR} × "
                                "GEO_ROSTER_MAX_MB): a zip bomb, or a roster to split")
        for part in parts:
            data = part.filename.startswith("xl/worksheets/") or part.filename.endswith(
                "sharedStrings.xml")
            if not data and part.file_size > MAX_OTHER_PART:
                raise _refuse(file, f"{part.filename} unpacks to {part.file_size / MB:,.1f} MB; "
                                    "beside the sheets and their texts, no part of an XLSX "
                                    f"roster needs more than {MAX_OTHER_PART // MB} MB")
            if not part.filename.endswith((".xml", ".rels")):
                continue
            strings = 0
            tail = b""
            try:
                with package.open(part) as f:
                    while chunk := f.read(MB):
                        window = tail + chunk
                        if b"<!DOCTYPE" in window or b"<!ENTITY" in window:
                            raise _refuse(file, f"{part.filename} declares a DTD or XML "
                                                "entities, which no spreadsheet program writes "
                                                "(an entity bomb?)")
                        strings += chunk.count(b"<si>") + chunk.count(b"<si ")
                        tail = chunk[-16:]
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise _refuse(file, f"damaged XLSX package ({part.filename}: {exc})") from exc
            if strings > MAX_SHARED_STRINGS:
                raise _refuse(file, f"{strings:,} shared strings; a roster has at most "
                                    f"{MAX_SHARED_STRINGS:,} distinct texts")


def _sheet_rows(file: str, book: Any, target: str) -> Iterator[tuple[int, list[Any]]]:
    """Rows as their cells really are, in constant memory: each cell is parsed (by openpyxl's
    cell parser: shared strings, dates, inline text) and dropped from the tree at once, so a row
    of millions of empty cells costs nothing; cells are placed by column with no padding to the
    size the sheet declares (A1:XFD1048576) and no rows invented for gaps."""
    from xml.etree.ElementTree import iterparse

    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet._reader import CELL_TAG, FORMULA_TAG, ROW_TAG, VALUE_TAG, WorkSheetParser

    with book.archive.open(target) as source:
        parser = WorkSheetParser(source, book.shared_strings, data_only=True,
                                 epoch=book.wb.epoch, date_formats=book.wb._date_formats,
                                 timedelta_formats=book.wb._timedelta_formats)
        open_elements: list[Any] = []  # the path from the root to where the parser is
        placed: list[tuple[int, Any]] = []
        for event, element in iterparse(source, events=("start", "end")):
            if event == "start":
                open_elements.append(element)
                if element.tag == ROW_TAG and len(open_elements) == 3:
                    placed = []
                    parser.row_counter = int(element.get("r") or parser.row_counter + 1)
                    parser.col_counter = 0
                continue
            open_elements.pop()
            depth = len(open_elements)
            if depth > 3:  # inside a cell: the cell reads it
                continue
            parent = open_elements[-1] if open_elements else None
            in_row = parent is not None and parent.tag == ROW_TAG
            if element.tag == CELL_TAG and depth == 3 and in_row:
                if len(element):  # an empty <c r=".."/> (a styled blank) holds no value
                    formula = element.findtext(FORMULA_TAG)
                    if formula is not None and not element.findtext(VALUE_TAG) and element.get("t") != "str":
                        raise _refuse(file, f"cell {element.get('r', '')} holds a formula "
                                            f"(={formula[:40]}) with no computed value: save the "
                                            "file in a spreadsheet program, or give the value",
                                      parser.row_counter)
                    cell = parser.parse_cell(element)
                    if cell["data_type"] == "e":
                        raise _refuse(file, f"cell {element.get('r', '')} holds a spreadsheet "
                                            f"error ({cell['value']}); fix it or give the value",
                                      parser.row_counter)
                    if cell["value"] is not None:
                        if len(placed) == MAX_COLUMNS:
                            raise _refuse(file, f"more than {MAX_COLUMNS} filled cells; a roster "
                                                "has about 15 columns", parser.row_counter)
                        placed.append((cell["column"], cell["value"]))
                else:
                    parser.col_counter += 1
            elif element.tag == ROW_TAG and depth == 2 and placed:
                width = max(column for column, _ in placed)
                if width > MAX_COLUMNS:
                    raise _refuse(file, f"a cell in column {get_column_letter(width)} (the "
                                        f"{width:,}th); a roster has at most {MAX_COLUMNS} "
                                        "columns", parser.row_counter)
                values: list[Any] = [None] * width
                for column, value in placed:
                    values[column - 1] = value
                yield parser.row_counter, values
                placed = []
            if parent is not None:  # read once, dropped: memory stays flat whatever the sheet
                parent.remove(element)


def _open_workbook(path: Path) -> tuple[Any, dict[str, str]]:
    """openpyxl's reader up to the worksheets (content types, shared strings, workbook, styles
    for dates), and the worksheets' names and parts. Its own worksheet loading is skipped: in
    read-only mode it parses a whole sheet that lacks a <dimension> just to size it."""
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.styles.stylesheet import apply_stylesheet

    book = ExcelReader(path, read_only=True, data_only=True, keep_links=False)
    book.read_manifest()
    book.read_strings()
    book.read_workbook()
    apply_stylesheet(book.archive, book.wb)
    sheets = {sheet.name: rel.target for sheet, rel in book.parser.find_sheets()
              if rel.target in book.valid_files and "worksheet" in rel.Type}
    return book, sheets


def _read_xlsx(path: Path, expected: set[str], sheet: str | None, limits: Limits) -> Table:

    _check_package(path, limits)
    with warnings.catch_warnings():  # openpyxl's warnings (no default style...) are not ours
        warnings.simplefilter("ignore")
        return _read_workbook(path, expected, sheet, limits)


def _read_workbook(path: Path, expected: set[str], sheet: str | None, limits: Limits) -> Table:
    from openpyxl.utils.exceptions import InvalidFileException

    unreadable = (InvalidFileException, OSError, KeyError, ValueError, TypeError, IndexError,
                  AttributeError, zipfile.BadZipFile, ParseError)
    try:
        book, sheets = _open_workbook(path)
    except unreadable as exc:
        raise _refuse(str(path), f"unreadable XLSX: {exc}") from exc
    try:
        names = list(sheets)
        if not names:
            raise _refuse(str(path), "the workbook has no worksheet")
        if sheet is not None and sheet not in sheets:
            raise _refuse(str(path), f"no sheet {sheet!r}; sheets are: {', '.join(names)}")
        chosen = sheet or names[0]
        file = f"{path} [sheet {chosen}]"
        try:
            table = _build_table(file, _sheet_rows(file, book, sheets[chosen]), expected, ",",
                                 limits)
        except unreadable as exc:
            raise _refuse(file, f"unreadable sheet: {exc}") from exc
    finally:
        book.archive.close()
    if len(names) > 1:
        table.notes.append(f"read sheet {chosen!r} of {len(names)} ({', '.join(names)}); "
                           "choose another with --sheet")
    return table


# --- JSON ----------------------------------------------------------------------------------------

def _read_json(path: Path, expected: set[str], limits: Limits) -> Table:
    file = str(path)
    text = _decode(file, path.read_bytes(), "")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse(file, f"unreadable JSON: {exc.msg} (line {exc.lineno}, column "
                            f"{exc.colno})") from exc
    except RecursionError as exc:
        raise _refuse(file, "unreadable JSON: nested too deeply (a roster is a list of flat "
                            "objects)") from exc
    if isinstance(data, dict):
        data = next((data[k] for k in ("rows", "territories", "members", "initiatives", "data")
                     if isinstance(data.get(k), list)), None)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise _refuse(file, "expected a list of objects (or {\"rows\": [...]})")
    if len(data) > limits.max_rows:
        raise _refuse(file, f"{len(data):,} records; the limit is {limits.max_rows:,} "
                            "(GEO_ROSTER_MAX_ROWS): split the roster or raise the limit")
    keys: dict[str, None] = {}
    for number, record in enumerate(data, start=1):
        keys.update(dict.fromkeys(record))
        if len(keys) > MAX_COLUMNS:
            raise _refuse(file, f"more than {MAX_COLUMNS} distinct keys by record {number:,}; "
                                "a roster has about 15 columns", number)
    header = list(keys)

    def rows() -> Iterator[tuple[int, list[Any]]]:
        yield 0, header
        for number, record in enumerate(data, start=1):
            yield number, [";".join(map(str, v)) if isinstance(v, list) else v
                           for v in (record.get(h) for h in header)]

    return _build_table(file, rows(), expected, ",", limits)


def read_table(path: Path, expected: set[str], *, delimiter: str = ",",
               sheet: str | None = None, limits: Limits | None = None) -> Table:
    """Rows of a CSV, XLSX or JSON file; `expected` are the column names a header should have.
    `limits` default to the settings (GEO_ROSTER_MAX_MB, GEO_ROSTER_MAX_ROWS)."""
    limits = limits or Limits.from_settings()
    if not path.exists():
        raise _refuse(str(path), "no such file")
    if not path.is_file():
        raise _refuse(str(path), "not a file")
    size = path.stat().st_size
    if size == 0:
        raise _refuse(str(path), "the file is empty")
    if size > limits.max_bytes:
        raise _refuse(str(path), f"the file is {size / MB:,.1f} MB; the limit is "
                                 f"{limits.max_bytes / MB:,.0f} MB (GEO_ROSTER_MAX_MB): split the "
                                 "roster or raise the limit")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(path, expected, sheet, limits)
    if suffix == ".json":
        return _read_json(path, expected, limits)
    return _read_csv(path, expected, delimiter, limits)
