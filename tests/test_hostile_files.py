"""Hostile files handed to the CLI: bombs (zip, XLSX shared strings, dimensions, styles, entities),
caps (size, rows, columns, keys), bad text (non-UTF-8, NUL, formulas), deep nesting, a lying
shapefile index, a VRT in disguise. Each is refused with a message that names the file (and row,
field or part), or read correctly where its content is valid; either way the real CLI process
takes under 10 s and 500 MB, and a refusal changes nothing in the database.

The corpus is generated (tests/fixtures/hostile/generate.py), never committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "hostile"))
from generate import CORPUS, Case, generate

GEO = str(Path(sys.executable).with_name("geo-service"))
# CPU seconds a hostile file may cost the CLI (start-up included): the largest file read
# in full (1.7 million blank cells) takes 6-10 s of CPU here; a bomb that is not refused
# early takes minutes
TIME_LIMIT_S = 20
MEMORY_LIMIT_MB = 500
CAP_MB = 1  # the roster size cap the over-cap CSV is made for (GEO_ROSTER_MAX_MB)

# What the refusal must say, besides the file's name: the cause in the user's words.
SAYS = {
    "zip_bomb.xlsx": "unpacks to 1,024 MB; the limit is 20 MB",
    "shared_strings_bomb.xlsx": "unpacks to 324 MB",
    "styles_bomb.xlsx": "xl/styles.xml unpacks to 8.9 MB",
    "far_cell.xlsx": "row 1048576: a cell in column XFD",
    "entities.xlsx": "xl/sharedStrings.xml declares a DTD or XML entities",
    "error_cell.xlsx": "holds a spreadsheet error (#REF!)",
    "formula_uncomputed.xlsx": "holds a formula (=2000+1) with no computed value",
    "formula_text.csv": "row 2, field name: starts with '=': a spreadsheet formula",
    "over_cap.csv": "the limit is 1 MB (GEO_ROSTER_MAX_MB)",
    "many_columns.csv": "row 1: the header has 1,000,000 columns",
    "many_keys.json": "more than 200 distinct keys by record 100",
    "wide_record.json": "more than 200 distinct keys by record 1",
    "deep.json": "nested too deeply",
    "latin1.csv": "row 3: not UTF-8 (byte 0xe1)",
    "latin1.json": "row 1: not UTF-8 (byte 0xe1)",
    "nul.csv": "row 4, field name: holds a control character (U+0000)",
    "deep.geojson": "Too many nested objects and/or arrays",
    "deep_properties.geojson": "Too many nested objects and/or arrays",
    "lying_shx.shp": "the .shx index does not match the .shp",
    "system_file.vrt.geojson": "not a GeoPackage, Shapefile, GeoJSON",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("hostile"), cap_mb=CAP_MB)


def state(dsn: str) -> tuple:
    """What a refusal must leave as it was: the data version and every campaign and boundary row."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT (SELECT n FROM data_version), (SELECT count(*) FROM imports), "
            "(SELECT md5(string_agg(to_jsonb(t)::text, ',' ORDER BY id)) FROM territories t), "
            "(SELECT count(*) FROM history), (SELECT count(*) FROM initiatives), "
            "(SELECT md5(string_agg(code || level, ',' ORDER BY level, code)) FROM boundaries)"
        ).fetchone()


# Peak memory is read by a small parent of the CLI: a child forked from pytest itself would
# count pytest's pages (hundreds of MB) in its own peak.
MEASURE = ("import resource, subprocess, sys\n"
           "code = subprocess.call(sys.argv[1:])\n"
           "used = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
           "print('cpu-s', used.ru_utime + used.ru_stime, 'peak-rss-kb', used.ru_maxrss)\n"
           "sys.exit(code)\n")
HANG_S = 3 * TIME_LIMIT_S  # wall-clock time after which the CLI is killed as hung


def run_bounded(args: list[str], env: dict[str, str]) -> tuple[int, str, float, float]:
    """Run the CLI; its exit code, output, CPU time (s) and peak memory (MB). The bound is on
    the work the CLI does (CPU time), which other load on the machine does not inflate as it
    does wall time; a CLI still running after HANG_S is killed, so a hang fails rather than
    stalls the suite."""
    child = subprocess.Popen([sys.executable, "-c", MEASURE, GEO, *args], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd="/",
                             start_new_session=True)
    try:
        raw, _ = child.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        raw, _ = child.communicate()
        return child.returncode, raw.decode("utf-8", "replace"), float("inf"), 0.0
    output, _, measured = raw.decode("utf-8", "replace").rpartition("cpu-s")
    cpu, _, peak = measured.partition("peak-rss-kb")
    return child.returncode, " ".join(output.split()), float(cpu), int(peak) / 1024


def command(case: Case, path: Path) -> list[str]:
    if case.command == "members":
        return ["members", "import", str(path)]
    return ["boundaries", "load", str(path), "--level", "region", "--country", "FR",
            "--code-field", "NAME", "--name-field", "NAME", "--source", "hostile-shapes"]


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_hostile_file(case: Case, corpus: dict[str, Path], sample_copy: str) -> None:
    env = {**os.environ, "DATABASE_URL": sample_copy, "GEO_ROSTER_MAX_MB":
           str(CAP_MB if case.name == "over_cap.csv" else 10)}
    before = state(sample_copy)
    code, output, took, peak_mb = run_bounded(command(case, corpus[case.name]), env)
    assert took < TIME_LIMIT_S, f"{case.name}: {took:.1f} s of CPU; {output[-300:]}"
    assert peak_mb < MEMORY_LIMIT_MB, f"{case.name}: {peak_mb:.0f} MB"
    assert "Traceback" not in output, output[-1500:]
    if case.outcome == "refused":
        assert code == 2, f"{case.name} was not refused ({code}): {output[-500:]}"
        assert "nothing was changed" in output and case.name.split(".")[0] in output, output
        assert SAYS[case.name] in output, output[-600:]
        assert state(sample_copy) == before, f"{case.name}: a refusal changed the database"
    else:
        assert code == 0, f"{case.name} was not read ({code}): {output[-800:]}"
        if case.command == "members":  # the three valid rows are the sample's own: unchanged
            assert "rows 3, inserted 0, updated 0, unchanged 3, invalid 0" in output, output
        else:
            assert "writing 3 boundaries" in output, output
            with psycopg.connect(sample_copy) as conn:
                names = conn.execute("SELECT name FROM boundaries WHERE source = "
                                     "'hostile-shapes' ORDER BY name").fetchall()
            assert [n for (n,) in names] == ["Shape 0", "Shape 1", "Shape 2"]


def test_initiatives_and_reference_files_go_through_the_same_reader(
        corpus: dict[str, Path], sample_copy: str) -> None:
    before = state(sample_copy)
    env = {**os.environ, "DATABASE_URL": sample_copy}
    for name in ("zip_bomb.xlsx", "deep.json", "nul.csv"):
        code, output, took, peak_mb = run_bounded(
            ["initiatives", "import", str(corpus[name])], env)
        assert code == 2 and "nothing was changed" in output, output[-500:]
        assert took < TIME_LIMIT_S and peak_mb < MEMORY_LIMIT_MB
    assert state(sample_copy) == before


def test_the_corpus_is_generated_not_committed() -> None:
    folder = Path(__file__).parent / "fixtures" / "hostile"
    tracked = subprocess.run(["git", "ls-files", str(folder)], capture_output=True, text=True,
                             cwd=folder).stdout.split()
    assert [Path(p).name for p in tracked] == ["generate.py"], tracked
