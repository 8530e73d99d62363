"""Process settings, read once from the environment (CONTRACT.md "Processes and settings")."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
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
    # -- the HTTP API under faults and attack (``api``) -----------------------------------------
    #: Longest one database statement of the API waits on a lock before the request answers 503
    #: (SQLite busy timeout; PostgreSQL ``lock_timeout`` and ``statement_timeout``), seconds.
    api_database_timeout_seconds: float = Field(2.0, gt=0, le=60)
    #: Longest the API waits to connect to Temporal, and its retry budget for a call Temporal
    #: does not answer (then 503), seconds.
    api_temporal_timeout_seconds: float = Field(3.0, gt=0, le=60)
    #: Failed authentications allowed per client address, and per key id, in a sliding minute;
    #: more answer 429 with ``Retry-After`` (counted in each API process).
    api_auth_failures_per_minute: int = Field(10, ge=1)
    #: Serve ``/docs``, ``/redoc`` and ``/openapi.json`` (off by default: the schema maps the
    #: whole attack surface; turn it on for development and the demo).
    api_docs_enabled: bool = False
    #: Where the API serves its Prometheus metrics (``host:port``, at ``/metrics``), apart from
    #: the public app; empty: no metrics endpoint.
    api_metrics_bind_address: str = ""
    #: The proxies whose ``X-Forwarded-For`` names the client (comma-separated addresses, or
    #: ``*``); empty: the header is ignored and the client is the connection's peer, so nobody can
    #: pick the address the failed-authentication throttle counts.
    api_forwarded_allow_ips: str = ""
    #: When the daily delinquency scan runs, on each time zone's own clock (``HH:MM``).
    scan_local_time: str = Field("00:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    # -- Temporal transport and identity (``client.connect``) ---------------------------------
    #: TLS to the Temporal frontend (implied by any of the paths below or an API key).
    temporal_tls: bool = False
    #: PEM file of the CA that signed the server's certificate (default: the system's roots).
    temporal_tls_ca_path: Path | None = None
    #: PEM client certificate and key for mTLS (both or neither).
    temporal_tls_cert_path: Path | None = None
    temporal_tls_key_path: Path | None = Field(default=None, repr=False)
    #: The name to verify the server's certificate against (default: the address's host).
    temporal_tls_server_name: str | None = None
    #: A Temporal Cloud API key (sent as a bearer token over TLS).
    temporal_api_key: str | None = Field(default=None, repr=False)
    # -- payload encryption (``ops.codec``) ----------------------------------------------------
    #: Encrypt every payload the server stores (AES-256-GCM); ``false`` only for a server that
    #: must read them (a local experiment).
    payload_encryption: bool = True
    #: ``id:base64,id:base64`` of 32-byte keys; the first is active. Overrides the key file.
    payload_keys: str | None = Field(default=None, repr=False)
    #: Which key encrypts new payloads (default: the first of ``PAYLOAD_KEYS`` or the file's).
    payload_active_key_id: str | None = None
    #: The key file (default ``<DATA_DIR>/payload-keys.json``, created with one key if missing).
    payload_keys_file: Path | None = None
    #: The Temporal UI origins allowed to call the API's codec server from a browser (comma-separated;
    #: the dev server's UI by default).
    api_codec_allowed_origins: str = "http://localhost:8233,http://127.0.0.1:8233"
    # -- providers' rate limits (``ops.wiring``) -----------------------------------------------
    #: The most contacts each provider channel takes in any second (``sms=20,email=50,letter=5``;
    #: channels of ``rules.policy.Channel``). Each limited channel gets a task queue of its own,
    #: ``<TEMPORAL_TASK_QUEUE>-contacts-<channel>``, which Temporal's server dispatches to every
    #: worker together (``max_task_queue_activities_per_second``) at half that rate: its token
    #: bucket holds a second of tokens, so a burst after a lull plus a second's refill stays
    #: within the limit. A step's contacts on a limited channel run there. Every worker on the
    #: task queue needs the same value. Empty: every contact runs on the main queue.
    contact_rate_limits: str = ""
    # -- worker sizing (``ops.sizing``) --------------------------------------------------------
    #: How many worker processes ``worker.py`` runs: ``auto`` (one per usable core) or a number.
    worker_processes: str = "1"
    #: How many cases each worker process keeps in its workflow cache: ``auto`` (half the memory
    #: available at start, shared by the processes) or a number.
    worker_cached_cases: str = "auto"

    @field_validator("worker_processes")
    @classmethod
    def _processes_are_valid(cls, value: str) -> str:
        from collections_domain.ops.sizing import worker_processes

        worker_processes(value)
        return value

    @field_validator("worker_cached_cases")
    @classmethod
    def _cache_is_valid(cls, value: str) -> str:
        from collections_domain.ops.sizing import cached_cases

        cached_cases(value, 1, memory_bytes=0)
        return value

    @field_validator("contact_rate_limits")
    @classmethod
    def _rate_limits_are_valid(cls, value: str) -> str:
        parse_rate_limits(value)
        return value

    @property
    def rate_limits(self) -> dict[str, float]:
        """``CONTACT_RATE_LIMITS`` as ``{channel: contacts per second}``."""
        return parse_rate_limits(self.contact_rate_limits)

    @property
    def resolved_payload_keys_file(self) -> Path:
        """``PAYLOAD_KEYS_FILE``, or ``payload-keys.json`` under ``DATA_DIR``."""
        return self.payload_keys_file or self.data_dir / "payload-keys.json"

    @property
    def resolved_database_url(self) -> str:
        """``DATABASE_URL``, or the SQLite file under ``DATA_DIR``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'collections.db'}"


def parse_rate_limits(text: str) -> dict[str, float]:
    """``"sms=20,email=2.5"`` -> ``{"sms": 20.0, "email": 2.5}`` (contacts per second).

    Raises:
        ValueError: an entry is not ``channel=rate``, names no channel of ``rules.policy.Channel``,
            repeats one, or gives a rate that is not a number in (0, 10000].
    """
    from collections_domain.rules.policy import Channel

    limits: dict[str, float] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, rate = (piece.strip() for piece in entry.partition("="))
        if not sep or name not in {c.value for c in Channel}:
            raise ValueError(f"{entry!r} must be <channel>=<contacts per second>, channel one of "
                             f"{', '.join(c.value for c in Channel)}")
        if name in limits:
            raise ValueError(f"{name!r} is given twice")
        try:
            per_second = float(rate)
        except ValueError:
            per_second = float("nan")
        if not 0 < per_second <= 10_000:  # also refuses nan and inf
            raise ValueError(f"{entry!r}: the rate must be a number of contacts per second in (0, 10000]")
        limits[name] = per_second
    return limits


def contact_task_queue(task_queue: str, channel: str) -> str:
    """The task queue of a rate-limited ``channel``'s contacts: ``<task_queue>-contacts-<channel>``."""
    return f"{task_queue}-contacts-{channel}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (cached; tests build ``Settings(...)`` directly)."""
    return Settings()
