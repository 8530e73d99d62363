"""How every process reaches Temporal: TLS or mTLS, a Temporal Cloud API key, and the encrypted
data converter, all from ``Settings`` (the worker, the CLI, the API and the demo use the same).

- ``TEMPORAL_TLS=true`` (or any ``TEMPORAL_TLS_*`` path, or ``TEMPORAL_API_KEY``) turns TLS on.
  ``TEMPORAL_TLS_CA_PATH`` is the PEM of the CA that signed the server's certificate (default:
  the system's roots); ``TEMPORAL_TLS_CERT_PATH`` and ``TEMPORAL_TLS_KEY_PATH`` are this
  process's client certificate and key for mTLS (both or neither);
  ``TEMPORAL_TLS_SERVER_NAME`` overrides the name the server's certificate is checked against.
- ``TEMPORAL_API_KEY`` is sent as a bearer token (Temporal Cloud's API keys), always over TLS.
- The data converter encrypts payloads (``ops.codec``) unless ``PAYLOAD_ENCRYPTION=false``.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.converter import DataConverter
from temporalio.service import TLSConfig

from collections_domain.ops import codec
from collections_domain.ops.settings import Settings


class TlsSettingsError(ValueError):
    """A ``TEMPORAL_TLS_*`` setting cannot be used; the message names it and the rule."""


class TemporalConnectionError(ConnectionError):
    """Temporal could not be reached or refused this process; the message says which setting to check."""


def _read(path: Path | None, setting: str) -> bytes | None:
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise TlsSettingsError(f"{setting}: cannot read {path}: {err.strerror or err}") from None
    if b"-----BEGIN " not in data:
        raise TlsSettingsError(f"{setting}: {path} is not a PEM file")
    return data


def tls_config(settings: Settings) -> TLSConfig | bool:
    """The SDK's TLS setting for ``settings``: ``False`` (plain), or a ``TLSConfig``.

    Raises:
        TlsSettingsError: a file cannot be read or is not PEM, or only one of cert and key is set.
    """
    wanted = (settings.temporal_tls or settings.temporal_api_key or settings.temporal_tls_ca_path
              or settings.temporal_tls_cert_path or settings.temporal_tls_key_path)
    if not wanted:
        return False
    if bool(settings.temporal_tls_cert_path) != bool(settings.temporal_tls_key_path):
        raise TlsSettingsError("TEMPORAL_TLS_CERT_PATH, TEMPORAL_TLS_KEY_PATH: give both (mTLS) or neither")
    return TLSConfig(
        server_root_ca_cert=_read(settings.temporal_tls_ca_path, "TEMPORAL_TLS_CA_PATH"),
        client_cert=_read(settings.temporal_tls_cert_path, "TEMPORAL_TLS_CERT_PATH"),
        client_private_key=_read(settings.temporal_tls_key_path, "TEMPORAL_TLS_KEY_PATH"),
        domain=settings.temporal_tls_server_name,
    )


def key_ring(settings: Settings) -> codec.KeyRing | None:
    """The payload key ring of ``settings`` (``None`` with ``PAYLOAD_ENCRYPTION=false``); the key
    file is created with one new key when there is neither ``PAYLOAD_KEYS`` nor a file."""
    if not settings.payload_encryption:
        return None
    return codec.load_key_ring(keys=settings.payload_keys, active=settings.payload_active_key_id,
                               key_file=settings.resolved_payload_keys_file)


def converter_for(settings: Settings) -> DataConverter:
    """The data converter every client and worker of ``settings`` uses."""
    return codec.data_converter(key_ring(settings))


def connection_problem(settings: Settings, err: Exception) -> str:
    """A one-line reason for a failed connection, naming what to check."""
    text = str(err)
    lowered = text.lower()
    tls = tls_config(settings) is not False
    if "certificate" in lowered or "tls" in lowered or "handshake" in lowered or "ssl" in lowered:
        hint = ("check TEMPORAL_TLS_CA_PATH, TEMPORAL_TLS_CERT_PATH/TEMPORAL_TLS_KEY_PATH and TEMPORAL_TLS_SERVER_NAME"
                if tls else "the server wants TLS: set TEMPORAL_TLS=true (and the TEMPORAL_TLS_* files for mTLS)")
    elif "unauthenticated" in lowered or "permission" in lowered or "401" in lowered or "403" in lowered:
        hint = "the server refused this process's identity: check TEMPORAL_API_KEY or the mTLS client certificate"
    elif tls:
        hint = "is the server up, and does it speak TLS there? (TEMPORAL_ADDRESS, TEMPORAL_TLS_*)"
    else:
        hint = "is the server up there? A server that wants TLS needs TEMPORAL_TLS=true"
    return f"TEMPORAL_ADDRESS: cannot connect to {settings.temporal_address} ({hint}): {text[:300]}"
