"""Which Debian packages `make` asks apt for: only those whose pieces are missing, so a machine
whose Node.js comes from NodeSource (npm bundled) or nvm, or whose PostgreSQL is a newer major
with its PostGIS, installs nothing it does not need (apt refuses Debian's npm beside
NodeSource's nodejs). `make missing-packages` runs against a fake system tree and PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
EVERYTHING = ["usr/share/postgresql/15/extension/postgis.control", "usr/lib/postgresql/15/bin/postgres",
              "usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
              "usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"]
COMMANDS = ["node", "npm", "runuser"]


def missing(tmp_path: Path, files: list[str], commands: list[str], *, python: str = sys.executable,
            apt: str | None = None) -> list[str]:
    root, bin_dir = tmp_path / "root", tmp_path / "bin"
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()
    bin_dir.mkdir(exist_ok=True)
    for name in commands:
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    args = [MAKE, "-s", "--no-print-directory", "missing-packages", f"SYSTEM_ROOT={root}",
            f"PYTHON={python}"] + ([f"APT_PACKAGES={apt}"] if apt else [])
    result = subprocess.run(args, cwd=PROJECT, capture_output=True, text=True, timeout=60,
                            env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


pytestmark = pytest.mark.skipif(MAKE is None, reason="needs make")


def test_nothing_missing_asks_for_nothing(tmp_path: Path) -> None:
    assert missing(tmp_path, EVERYTHING, COMMANDS) == []


def test_a_bare_machine_asks_for_everything(tmp_path: Path) -> None:
    found = missing(tmp_path, [], [], python="/bin/false")
    expected = ["postgresql-15-postgis-3", "postgresql-15", "nodejs", "npm", "fonts-noto-core",
                "fonts-noto-cjk", "python3-venv"]
    if os.geteuid() == 0:
        expected.insert(6, "util-linux")
    assert found == expected


def test_nodesource_or_nvm_node_with_its_own_npm_is_left_alone(tmp_path: Path) -> None:
    """NodeSource's nodejs bundles npm and nvm puts both on PATH: neither is asked of apt, which
    would refuse Debian's npm and with it the whole list."""
    found = missing(tmp_path, EVERYTHING[:2], ["node", "npm", "runuser"])
    assert found == ["fonts-noto-core", "fonts-noto-cjk"]
    assert "npm" not in found and "nodejs" not in found


def test_a_newer_postgresql_with_its_postgis_is_enough(tmp_path: Path) -> None:
    found = missing(tmp_path, ["usr/share/postgresql/17/extension/postgis.control",
                               "usr/lib/postgresql/17/bin/postgres", *EVERYTHING[2:]], COMMANDS)
    assert found == []


def test_postgis_missing_beside_a_server_asks_for_postgis_only(tmp_path: Path) -> None:
    found = missing(tmp_path, EVERYTHING[1:], COMMANDS)
    assert found == ["postgresql-15-postgis-3"]


def test_optional_pieces_only_when_asked_for(tmp_path: Path) -> None:
    assert missing(tmp_path, EVERYTHING, COMMANDS) == []
    found = missing(tmp_path, EVERYTHING, COMMANDS, apt="chromium fonts-liberation gdal-bin")
    assert found == ["gdal-bin", "chromium", "fonts-liberation"]
    with_browser = missing(tmp_path, EVERYTHING, [*COMMANDS, "chromium", "ogr2ogr"],
                           apt="chromium fonts-liberation gdal-bin")
    assert with_browser == ["fonts-liberation"]


def test_the_test_clients_chromium_qgis_and_nginx(tmp_path: Path) -> None:
    clients = "chromium fonts-liberation python3-qgis qgis-providers nginx"
    assert missing(tmp_path, EVERYTHING, COMMANDS, apt=clients) == clients.split()
    qgis = ["usr/lib/python3/dist-packages/qgis/core/__init__.py",
            "usr/lib/qgis/plugins/libprovider_wfs.so"]
    found = missing(tmp_path, [*EVERYTHING, *qgis[:1]], [*COMMANDS, "chromium"], apt=clients)
    assert found == ["fonts-liberation", "qgis-providers", "nginx"]
    # nginx is looked for where Debian puts it (/usr/sbin is not on a normal user's PATH)
    nginx = tmp_path / "root" / "usr" / "sbin" / "nginx"
    nginx.parent.mkdir(parents=True)
    nginx.write_text("#!/bin/sh\n")
    nginx.chmod(0o755)
    assert missing(tmp_path, [*EVERYTHING, *qgis], [*COMMANDS, "chromium"], apt=clients) == [
        "fonts-liberation"]


def test_make_test_installs_the_clients(tmp_path: Path) -> None:
    """`make test` runs the clients' install step, which names nginx; a new Makefile reruns it
    (its stamp depends on the Makefile), so a checkout made before nginx was added gets it."""
    result = subprocess.run([MAKE, "-pn", "test"], cwd=PROJECT, capture_output=True, text=True,
                            timeout=60)
    database = result.stdout
    assert "CLIENT_PACKAGES := chromium fonts-liberation python3-qgis qgis-providers nginx" in (
        database)
    assert "\n.stamps/clients: Makefile" in database
    assert "test: setup .stamps/clients lint" in database
