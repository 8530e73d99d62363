"""How every process reaches Temporal: TLS or mTLS, a Temporal Cloud API key, and the encrypted
data converter, all from ``Settings`` (the worker, the CLI, the API and the demo use the same).

- ``TEMPORAL_TLS=true`` (or any other ``TEMPORAL_TLS_*`` setting, or ``TEMPORAL_API_KEY``) turns
  TLS on. ``TEMPORAL_TLS_CA_PATH`` is the PEM of the CA that signed the server's certificate
  (default: the system's roots); ``TEMPORAL_TLS_CERT_PATH`` and ``TEMPORAL_TLS_KEY_PATH`` are this
  process's client certificate and key for mTLS (both or neither, the key unencrypted and matching
  the certificate); ``TEMPORAL_TLS_SERVER_NAME`` overrides the name the server's certificate is
  checked against. ``TEMPORAL_TLS=false`` set explicitly together with any of these is refused
  (it would silently drop them).
- ``TEMPORAL_API_KEY`` is sent as a bearer token (Temporal Cloud's API keys), only over TLS: it
  turns TLS on, and ``TEMPORAL_TLS=false`` with a key is refused.
- Every file is checked before anything is sent: readable, PEM, a certificate within its
  validity dates, a key that matches it; a ``TlsSettingsError`` names the setting and the rule.
- A failed connection is one ``TemporalConnectionError`` line that says what is wrong (server
  unreachable, TLS required, the server's certificate not trusted, this process's certificate
  refused, identity refused) and which setting to check; it comes within
  ``CONNECT_TIMEOUT_SECONDS`` (a TLS handshake that never ends would otherwise wait for ever).
- The data converter encrypts payloads (``ops.codec``) unless ``PAYLOAD_ENCRYPTION=false``.
"""

from __future__ import annotations

import re
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from temporalio.converter import DataConverter
from temporalio.service import TLSConfig

from collections_domain.ops import codec
from collections_domain.ops.settings import Settings

#: How long ``client.connect`` waits for the server (TCP, TLS handshake, first call).
CONNECT_TIMEOUT_SECONDS = 10.0
#: Each step of the diagnosis of a failed connection (TCP connect, handshake, the server's verdict).
PROBE_TIMEOUT_SECONDS = 3.0

#: The settings that only mean something over TLS (each of them turns TLS on).
_TLS_IMPLIED_BY = {
    "temporal_api_key": "TEMPORAL_API_KEY",
    "temporal_tls_ca_path": "TEMPORAL_TLS_CA_PATH",
    "temporal_tls_cert_path": "TEMPORAL_TLS_CERT_PATH",
    "temporal_tls_key_path": "TEMPORAL_TLS_KEY_PATH",
    "temporal_tls_server_name": "TEMPORAL_TLS_SERVER_NAME",
}


class TlsSettingsError(ValueError):
    """A ``TEMPORAL_TLS_*`` setting cannot be used; the message names it and the rule."""


class TemporalConnectionError(ConnectionError):
    """Temporal could not be reached or refused this process; the message says which setting to check."""


def _read(path: Path | None, setting: str) -> bytes | None:
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise TlsSettingsError(f"{setting}: {path} is a folder, not a PEM file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TlsSettingsError(f"{setting}: cannot read {path}: {err.strerror or err}") from None
    if b"-----BEGIN " not in data:
        raise TlsSettingsError(f"{setting}: {path} is not a PEM file")
    return data


def _certificates(data: bytes, path: Path, setting: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsSettingsError(f"{setting}: {path} holds no PEM certificate") from None


def _check_dates(cert: x509.Certificate, path: Path, setting: str, now: datetime) -> None:
    if cert.not_valid_after_utc <= now:
        raise TlsSettingsError(
            f"{setting}: the certificate in {path} ({cert.subject.rfc4514_string()}) expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if cert.not_valid_before_utc > now:
        raise TlsSettingsError(
            f"{setting}: the certificate in {path} ({cert.subject.rfc4514_string()}) is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )


def _public(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def tls_wanted(settings: Settings) -> bool:
    """Whether ``settings`` ask for TLS (``TEMPORAL_TLS`` or any setting that implies it).

    Raises:
        TlsSettingsError: ``TEMPORAL_TLS=false`` was set explicitly with settings that need TLS.
    """
    implied = [name for field, name in _TLS_IMPLIED_BY.items() if getattr(settings, field)]
    if "temporal_tls" in settings.model_fields_set and not settings.temporal_tls and implied:
        raise TlsSettingsError(
            f"TEMPORAL_TLS=false with {', '.join(implied)}: these are used only over TLS "
            "(an API key is never sent in clear); set TEMPORAL_TLS=true or remove them"
        )
    return bool(settings.temporal_tls or implied)


def tls_config(settings: Settings) -> TLSConfig | bool:
    """The SDK's TLS setting for ``settings``: ``False`` (plain), or a checked ``TLSConfig``.

    Raises:
        TlsSettingsError: a file is missing, unreadable, not PEM, holds no certificate or key, a
            certificate is expired or not yet valid, the key is encrypted or does not match the
            certificate, only one of cert and key is set, or ``TEMPORAL_TLS=false`` contradicts
            the other settings. The message names the setting.
    """
    if not tls_wanted(settings):
        return False
    if bool(settings.temporal_tls_cert_path) != bool(settings.temporal_tls_key_path):
        given = "TEMPORAL_TLS_CERT_PATH" if settings.temporal_tls_cert_path else "TEMPORAL_TLS_KEY_PATH"
        raise TlsSettingsError(f"TEMPORAL_TLS_CERT_PATH, TEMPORAL_TLS_KEY_PATH: give both (mTLS) or neither (only {given} is set)")
    now = datetime.now(UTC)
    ca = _read(settings.temporal_tls_ca_path, "TEMPORAL_TLS_CA_PATH")
    if ca is not None:
        roots = _certificates(ca, settings.temporal_tls_ca_path, "TEMPORAL_TLS_CA_PATH")
        if all(root.not_valid_after_utc <= now for root in roots):
            _check_dates(roots[0], settings.temporal_tls_ca_path, "TEMPORAL_TLS_CA_PATH", now)
    cert = _read(settings.temporal_tls_cert_path, "TEMPORAL_TLS_CERT_PATH")
    key = _read(settings.temporal_tls_key_path, "TEMPORAL_TLS_KEY_PATH")
    if cert is not None and key is not None:
        leaf = _certificates(cert, settings.temporal_tls_cert_path, "TEMPORAL_TLS_CERT_PATH")[0]
        _check_dates(leaf, settings.temporal_tls_cert_path, "TEMPORAL_TLS_CERT_PATH", now)
        try:
            private = serialization.load_pem_private_key(key, password=None)
        except TypeError:
            raise TlsSettingsError(
                f"TEMPORAL_TLS_KEY_PATH: {settings.temporal_tls_key_path} is encrypted; give the unencrypted key "
                "(readable by this process only)"
            ) from None
        except Exception:  # noqa: BLE001 - unsupported or corrupt key material
            raise TlsSettingsError(f"TEMPORAL_TLS_KEY_PATH: {settings.temporal_tls_key_path} holds no PEM private key") from None
        if _public(private.public_key()) != _public(leaf.public_key()):
            raise TlsSettingsError(
                f"TEMPORAL_TLS_KEY_PATH: {settings.temporal_tls_key_path} is not the key of the certificate in "
                f"TEMPORAL_TLS_CERT_PATH ({settings.temporal_tls_cert_path})"
            )
    return TLSConfig(
        server_root_ca_cert=ca,
        client_cert=cert,
        client_private_key=key,
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


# -- why a connection failed ---------------------------------------------------------------------

_MTLS_FILES = "TEMPORAL_TLS_CERT_PATH/TEMPORAL_TLS_KEY_PATH"
_CERT_REFUSED_ALERTS = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "UNSUPPORTED_CERTIFICATE",
                        "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED", "DECRYPT_ERROR", "ACCESS_DENIED")


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "localhost"
    try:
        return host, int(port)
    except ValueError:
        return address, 7233


def _subject(path: Path | None) -> str:
    """``CN=worker, issued by CN=... CA`` of the client certificate, for the message."""
    try:
        cert = x509.load_pem_x509_certificates(Path(path).read_bytes())[0]
        return f"{cert.subject.rfc4514_string()}, issued by {cert.issuer.rfc4514_string()}"
    except Exception:  # noqa: BLE001 - only for the message
        return str(path)


def _client_refused(settings: Settings) -> str:
    if not settings.temporal_tls_cert_path:
        return (f"certificate refused: the server requires a client certificate (mTLS) and none is set: "
                f"set {_MTLS_FILES}")
    return (f"certificate refused: the server did not accept the client certificate in TEMPORAL_TLS_CERT_PATH "
            f"({_subject(settings.temporal_tls_cert_path)}): it must be signed by a CA the server trusts and be valid; "
            f"check {_MTLS_FILES}")


def probe(settings: Settings) -> str | None:
    """Ask the server directly (a TLS handshake with this process's settings, blocking, at most
    about ``3 * PROBE_TIMEOUT_SECONDS``) what it thinks of this process: a reason, or ``None``
    when the probe learns nothing (the server accepted the handshake, or it is not TLS)."""
    host, port = _host_port(settings.temporal_address)
    try:
        raw = socket.create_connection((host, port), timeout=PROBE_TIMEOUT_SECONDS)
    except OSError as err:
        return f"server unreachable: cannot open a connection ({err.strerror or err})"
    with raw:
        tls = tls_wanted(settings)
        if tls:
            context = ssl.create_default_context(cafile=str(settings.temporal_tls_ca_path) if settings.temporal_tls_ca_path else None)
            if settings.temporal_tls_cert_path and settings.temporal_tls_key_path:
                try:
                    context.load_cert_chain(str(settings.temporal_tls_cert_path), str(settings.temporal_tls_key_path))
                except (OSError, ssl.SSLError):
                    return None  # tls_config names what is wrong with the files
        else:  # does the server want TLS? any certificate will do to find out
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        server_name = settings.temporal_tls_server_name or host
        try:
            with context.wrap_socket(raw, server_hostname=server_name) as conn:
                if not tls:
                    return ("TLS required: the server at this address speaks TLS; set TEMPORAL_TLS=true "
                            f"(with TEMPORAL_TLS_CA_PATH for a private CA, and {_MTLS_FILES} for mTLS)")
                # TLS 1.3: the server checks the client's certificate after the client's handshake is
                # done, and answers with an alert or a close (refused), or its HTTP/2 settings or
                # silence (accepted: it waits for the client's preface).
                conn.settimeout(PROBE_TIMEOUT_SECONDS / 2)
                try:
                    if conn.recv(1) == b"":  # closed at once, with no alert: refused all the same
                        return _client_refused(settings)
                except TimeoutError:
                    return None
                except ssl.SSLError as err:
                    reason = (err.reason or str(err)).upper()
                    if "CERTIFICATE_REQUIRED" in reason or (not settings.temporal_tls_cert_path and "HANDSHAKE" in reason):
                        return _client_refused(settings.model_copy(update={"temporal_tls_cert_path": None}))
                    if any(alert in reason for alert in _CERT_REFUSED_ALERTS):
                        return _client_refused(settings)
                    return None
                except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                    return _client_refused(settings)
                return None
        except ssl.SSLCertVerificationError as err:
            return (f"server certificate not trusted: {err.verify_message or err.reason} for {server_name!r}; "
                    "check TEMPORAL_TLS_CA_PATH (the CA that signed it) and TEMPORAL_TLS_SERVER_NAME (a name it holds)")
        except ssl.SSLError as err:
            reason = (err.reason or str(err)).upper()
            if not tls:
                if "WRONG_VERSION" in reason or "RECORD" in reason or "PACKET" in reason:
                    return None  # a plain server: TLS is not the problem
                return ("TLS required: the server at this address answered a TLS handshake; set TEMPORAL_TLS=true "
                        f"(with TEMPORAL_TLS_CA_PATH for a private CA, and {_MTLS_FILES} for mTLS)")
            if "WRONG_VERSION" in reason or "RECORD" in reason or "PACKET" in reason:
                return ("TLS is on but the server at this address does not speak TLS: check TEMPORAL_ADDRESS "
                        "(its TLS port) or set TEMPORAL_TLS=false for a plain server")
            if "CERTIFICATE_REQUIRED" in reason or any(alert in reason for alert in _CERT_REFUSED_ALERTS):
                return _client_refused(settings)
            if "NO_APPLICATION_PROTOCOL" in reason:
                return "the server refused HTTP/2 (ALPN h2): is TEMPORAL_ADDRESS a Temporal frontend?"
            return None
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            return _client_refused(settings) if tls else None
        except (TimeoutError, OSError):
            return None


def _sdk_detail(text: str) -> str:
    """The SDK's error, short and on one line, without brackets (the CLI's console reads them as markup)."""
    text = " ".join(text.split())
    text = text.replace("[", "(").replace("]", ")")
    return text[:240] + ("..." if len(text) > 240 else "")


def connection_problem(settings: Settings, err: BaseException | None, *, probe_server: bool = True) -> str:
    """A one-line reason for a failed connection: what is wrong and which setting to check.

    ``err`` is the SDK's error (``None``: no answer within ``CONNECT_TIMEOUT_SECONDS``). When the
    SDK's words are not enough (a transport error after the connection opened), the server is
    asked with ``probe`` (``probe_server=False``: never).
    """
    address = settings.temporal_address
    try:
        tls = tls_wanted(settings)
    except TlsSettingsError as bad:
        return str(bad)
    prefix = f"Temporal at {address}"
    if err is None:
        reason = (f"server unreachable: no answer within {CONNECT_TIMEOUT_SECONDS:g} s "
                  + ("(a wrong address or port, a firewall, or a server that never finishes the TLS handshake); "
                     "check TEMPORAL_ADDRESS" if tls else
                     "(a wrong address or port, a firewall, or a TLS server: then set TEMPORAL_TLS=true); check TEMPORAL_ADDRESS"))
        return f"{prefix}: {reason}"
    text = str(err)
    lowered = text.lower()
    detail = _sdk_detail(text)
    if re.search(r"dns error|failed to lookup|name or service not known|nodename nor servname", lowered):
        reason = "server unreachable: its host name does not resolve; check TEMPORAL_ADDRESS"
    elif re.search(r"connection refused|tcp connect error|no route to host|network is unreachable", lowered):
        reason = "server unreachable: nothing accepts connections there; is Temporal up, and is TEMPORAL_ADDRESS right?"
    elif "notvalidforname" in lowered or "certificate is not valid for" in lowered:
        names = re.findall(r'(?:DnsName|IpAddress)\(\\?"?([^")\\]+)', text.partition("presented")[2])
        held = f" (it holds {', '.join(dict.fromkeys(names))})" if names else ""
        reason = (f"server certificate not valid for {settings.temporal_tls_server_name or _host_port(address)[0]!r}{held}: "
                  "set TEMPORAL_TLS_SERVER_NAME to a name it holds")
    elif "unknownissuer" in lowered or "invalidcertificate" in lowered or "certificate verify failed" in lowered:
        reason = ("server certificate not trusted: " + ("expired; " if "expired" in lowered else "")
                  + "check TEMPORAL_TLS_CA_PATH (the CA that signed the server's certificate) and TEMPORAL_TLS_SERVER_NAME")
    elif tls and ("invalidcontenttype" in lowered or "invalidmessage" in lowered or "corrupt message" in lowered):
        reason = ("TLS is on but the server at this address does not speak TLS: check TEMPORAL_ADDRESS "
                  "(its TLS port) or set TEMPORAL_TLS=false for a plain server")
    elif re.search(r"unauthenticated|permission ?denied|request unauthorized|\b401\b|\b403\b", lowered):
        reason = ("identity refused: the server does not accept this process's credentials; check TEMPORAL_API_KEY "
                  f"or the client certificate ({_MTLS_FILES}) and its permissions on TEMPORAL_NAMESPACE")
    else:
        reason = probe(settings) if probe_server else None
        if reason is None:
            reason = ("the connection failed: is the server up, and does it speak TLS there? check TEMPORAL_ADDRESS and TEMPORAL_TLS_*"
                      if tls else
                      "the connection failed: is the server up there? A server that wants TLS needs TEMPORAL_TLS=true")
    return f"{prefix}: {reason} (SDK: {detail})"
