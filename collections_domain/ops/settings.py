"""Process settings, read once from the environment (CONTRACT.md "Processes and settings")."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Environment variables the worker, the starter and the tools read.

    ``DATA_DIR`` holds the SQLite database and the dev server's state; ``DATABASE_URL`` defaults
    to ``sqlite:///<DATA_DIR>/collections.db``. ``DELIVERY_BACKEND`` is ``record`` (store and log
    every message, offline) or ``http`` (POST to ``DELIVERY_HTTP_URL`` with a bearer token).
    ``METRICS_BIND_ADDRESS`` is where the worker serves Prometheus metrics (``host:port``,
    scraped at ``/metrics``; empty: no metrics endpoint). ``LOG_JSON=true``: one JSON object
    per log line, personal data redacted at INFO and above.
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "collections"
    data_dir: Path = PROJECT_ROOT / "data"
    database_url: str | None = None
    collections_policy: str | None = None
    delivery_backend: Literal["record", "http"] = "record"
    delivery_http_url: str | None = None
    delivery_http_token: str | None = Field(default=None, repr=False)
    delivery_http_timeout_seconds: float = 10.0
    log_level: str = "INFO"
    log_json: bool = False
    metrics_bind_address: str = "127.0.0.1:9464"
    #: Where ``starter.py api`` serves the HTTP API (``API_HOST``, ``API_PORT``).
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: When the daily delinquency scan runs, on each time zone's own clock (``HH:MM``).
    scan_local_time: str = Field("00:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")

    @property
    def resolved_database_url(self) -> str:
        """``DATABASE_URL``, or the SQLite file under ``DATA_DIR``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'collections.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (cached; tests build ``Settings(...)`` directly)."""
    return Settings()
