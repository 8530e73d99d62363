#!/usr/bin/env python3
"""Certificates for the production compose: one private CA, Temporal's server certificate, and a
client certificate for every process that talks to Temporal (mTLS). Needs only ``cryptography``.

    python deploy/tls/generate.py                  # create what is missing in deploy/tls/
    python deploy/tls/generate.py --rotate leaves  # new server and client certificates, same CA
    python deploy/tls/generate.py --rotate all     # a new CA and everything it signs
    python deploy/tls/generate.py --out DIR --server-name temporal.example.internal

Writes into ``--out`` (default: this folder), which ``.gitignore`` keeps out of the repository:

- ``ca/ca.key`` (0600, never mounted into a container) and ``ca.pem`` (mounted everywhere);
- ``temporal.pem``/``temporal.key``: the server's certificate for its frontend and between its
  services (``serverAuth`` and ``clientAuth``; names ``temporal``, ``localhost``, 127.0.0.1 and
  every ``--server-name``);
- ``<client>.pem``/``<client>.key`` for each of ``CLIENTS`` (``clientAuth``; the common name is
  ``collections-<client>`` and is what the server's logs and an authorizer see).

Key files are mode 0644 so that the containers' own users (``nobody``, ``temporal``) can read the
one file mounted for them; the folder itself is made 0700, so that other users of the host cannot.
Existing files are kept unless ``--rotate`` says otherwise; then restart the stack
(``docker compose up -d --force-recreate``): processes read their certificates when they start.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
#: The processes that hold a client certificate, by the file name compose mounts.
CLIENTS = ("worker", "api", "migrate", "ui", "admin")
#: Names in the server's certificate besides ``--server-name`` (the compose service name first).
SERVER_NAMES = ("temporal", "localhost")
CA_DAYS = 3650
LEAF_DAYS = 397


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "loan-collections"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         encipher_only=False, decipher_only=False)


def make_ca(out: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("loan-collections Temporal CA")).issuer_name(_name("loan-collections Temporal CA"))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    (out / "ca").mkdir(mode=0o700, exist_ok=True)
    _write(out / "ca" / "ca.key", _key_pem(key), 0o600)
    _write(out / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def load_ca(out: Path):
    cert = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((out / "ca" / "ca.key").read_bytes(), password=None)
    return cert, key


def make_leaf(out: Path, name: str, ca_cert, ca_key, *, server_names: list[str] | None = None) -> None:
    """``<name>.pem``/``<name>.key``: a server certificate when ``server_names`` are given (also
    usable as a client: Temporal's services call each other with it), else a client certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server_names else [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(server_names[0] if server_names else f"collections-{name}"))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server_names:
        alt: list[x509.GeneralName] = []
        for entry in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(entry)))
            except ValueError:
                alt.append(x509.DNSName(entry))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write(out / f"{name}.key", _key_pem(key), 0o644)
    _write(out / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def generate(out: Path, *, rotate: str = "none", server_names: tuple[str, ...] = ()) -> list[str]:
    """Create (or with ``rotate``, replace) the files in ``out``; returns the names written."""
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    written: list[str] = []
    if rotate == "all" or not (out / "ca.pem").exists() or not (out / "ca" / "ca.key").exists():
        ca_cert, ca_key = make_ca(out)
        written.append("ca.pem")
        rotate = "leaves"  # everything the old CA signed must go
    else:
        ca_cert, ca_key = load_ca(out)
    names = list(dict.fromkeys([*SERVER_NAMES, *server_names, "127.0.0.1"]))
    for leaf in ("temporal", *CLIENTS):
        if rotate == "leaves" or not (out / f"{leaf}.pem").exists() or not (out / f"{leaf}.key").exists():
            make_leaf(out, leaf, ca_cert, ca_key, server_names=names if leaf == "temporal" else None)
            written.append(f"{leaf}.pem")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: deploy/tls/)")
    parser.add_argument("--rotate", choices=("none", "leaves", "all"), default="none",
                        help="leaves: new server and client certificates; all: a new CA too")
    parser.add_argument("--server-name", action="append", default=[],
                        help="another name (or IP) clients use for Temporal; repeat as needed")
    args = parser.parse_args(argv)
    written = generate(args.out, rotate=args.rotate, server_names=tuple(args.server_name))
    print(f"{args.out}: " + (f"wrote {', '.join(written)}" if written else "all certificates present (nothing to do)"))
    if written and args.rotate != "none":
        print("restart the stack so that every process reads its new certificate: docker compose up -d --force-recreate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
