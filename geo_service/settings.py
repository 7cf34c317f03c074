"""Settings: one `GEO_` prefix, `.env` support, `DATABASE_URL` for an external PostGIS."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything the service reads from its environment.

    With no database URL the project runs its own embedded PostGIS cluster in `data_dir`.
    """

    model_config = SettingsConfigDict(
        env_prefix="GEO_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "GEO_DATABASE_URL"),
        description="PostGIS to use instead of the embedded cluster (starts nothing). The CLI "
                    "writes with it: the owner role (see `geo-service db roles`).",
    )
    public_url: str | None = Field(
        default=None, description="The service's public address, e.g. https://map.example.org "
        "(no trailing slash): absolute links, embed code and oEmbed use it instead of trusting "
        "the request's Host header.")
    image_custom_text: bool = Field(
        default=True, description="Whether anyone may set title and subtitle on map images over "
        "HTTP (the credit line is always drawn and cannot be changed); off: 400.")
    health_versions: bool = Field(
        default=False, description="Show the service, PostgreSQL and PostGIS versions in "
                                   "/health (hidden by default: they help attackers).")
    download_timeout_s: float = Field(
        default=60, gt=0, description="Time limit of a manifest's download (per read).")
    download_max_mb: int = Field(
        default=2048, gt=0, description="Size cap of a manifest's download.")
    roster_max_mb: int = Field(
        default=10, gt=0, le=1024, description="Size cap of a roster file (members or "
        "initiatives: CSV, XLSX or JSON); an XLSX may unpack to at most twice this.")
    roster_max_rows: int = Field(
        default=100_000, gt=0, description="Most rows a roster file may hold.")
    read_database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GEO_READ_DATABASE_URL", "READ_DATABASE_URL"),
        description="What the web server reads from: a read-only role (SELECT only), on the "
                    "primary or on streaming replicas. Several URLs, separated by spaces or commas, "
                    "spread the reads over them (those that answer). Default: the embedded "
                    "cluster's reader role, else DATABASE_URL.",
    )
    read_fallback_url: str | None = Field(
        default=None,
        description="What the web server reads from only when none of GEO_READ_DATABASE_URL "
                    "answers (the primary's reader role, say); 'none' for no fallback (503). "
                    "Default: the embedded cluster's reader role when the embedded cluster is "
                    "the primary, else none.",
    )
    read_probe_s: float = Field(
        default=1.0, gt=0, description="How often the web server checks each database it reads "
        "from when there are several, to stop or resume sending them requests.")
    data_dir: Path = Field(
        default=PROJECT_ROOT / ".data",
        description="Where the embedded cluster and other local state live (ignored by git).",
    )
    package_cache: Path | None = Field(
        default=None, description="Where registry packages holding boundary data are kept once "
        "fetched (default: the data folder's packages/); shared by every checkout that points "
        "here.")
    node_modules: Path = Field(
        default=PROJECT_ROOT / "node_modules",
        description="Where the pinned npm data packages are installed.",
    )
    boundaries_dir: Path = Field(
        default=PROJECT_ROOT / "boundaries",
        description="Folder of source manifests (one TOML file per dataset).",
    )
    sample_dir: Path = Field(
        default=PROJECT_ROOT / "data" / "sample",
        description="The sample campaign data `make run` loads (territories, initiatives, ...).",
    )
    tiles_dir: Path = Field(
        default=PROJECT_ROOT / "tiles",
        description="Where `geo-service tiles build` writes the prebuilt PMTiles archives.",
    )
    image_max_side: int = Field(
        default=8000, ge=200, le=10_000,
        description="Largest width or height, in pixels, of a map image over HTTP (the command "
                    "line has no such cap).")
    image_workers: int = Field(
        default=1, ge=1, description="Worker processes that draw map images (each takes a core "
                                     "while it draws; the API keeps the others).")
    image_queue: int = Field(
        default=4, ge=0, description="Map images that may wait for a worker; beyond, 429.")
    image_timeout_s: float = Field(
        default=60.0, gt=0, description="A map image not drawn by then answers 503.")
    image_cache_mb: int = Field(
        default=64,
        description="Memory for rendered map images (keyed by parameters + data version); 0 = off.",
    )
    frame_ancestors: str = Field(
        default="*",
        description="CSP frame-ancestors of the map pages: who may embed them ('*' = any site; "
                    "e.g. \"'self' https://city.example\").",
    )
    basemap_url: str | None = Field(
        default=None,
        description="Optional raster basemap under the map (a {z}/{x}/{y} URL template). Off by "
                    "default: pages then load nothing from any other host.",
    )
    basemap_attribution: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    http_max_concurrency: int = Field(
        default=200, ge=1, description="Connections and requests the server handles at once; "
                                       "beyond it uvicorn answers 503 at once.")
    http_keep_alive_s: int = Field(default=5, ge=1, description="Idle keep-alive connections "
                                                                "close after this many seconds.")
    http_shutdown_s: int = Field(default=10, ge=1, description="On stop, requests in flight get "
                                                               "this long to finish.")
    db_pool_min: int = 1
    db_pool_max: int = 8
    db_connect_timeout_s: float = Field(
        default=30.0, description="How long the server waits for the database when it starts.")
    db_wait_s: float = Field(
        default=1.5, description="How long a request waits for a database connection before it "
                                 "answers 503 (the database is down or every connection is busy).")
    db_connect_attempt_s: int = Field(
        default=1, ge=1, description="Time limit of one attempt to open a database connection.")
    db_statement_timeout_ms: int = Field(
        default=5000, ge=0, description="The web server's statement timeout (0 = none); a query "
                                        "past it answers 503.")
    health_timeout_ms: int = 2000
    response_cache_mb: int = Field(
        default=64,
        description="Memory for finished responses keyed by ETag (data version + request); 0 = off.",
    )
    tile_cache_mb: int = Field(
        default=128,
        description="Memory for live-rendered vector tiles (LRU keyed by data version + tile); 0 = off.",
    )

    @property
    def embedded(self) -> bool:
        """True when the project runs its own PostGIS cluster."""
        return not self.database_url
