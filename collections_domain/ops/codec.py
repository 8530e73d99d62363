"""Encrypted payloads: an AES-256-GCM payload codec for every Temporal client and worker.

What the Temporal server stores (workflow inputs, signals, updates, results, activity
arguments, failures' details, memos and the summaries shown in the UI) is ciphertext; search
attributes stay readable (ids, stage, amounts: no personal data), so operators can still filter
the case list.

- **Format.** Each payload is serialised (protobuf), encrypted with AES-256-GCM under a random
  96-bit nonce, and replaced by a payload with metadata ``encoding: binary/encrypted``,
  ``encryption-cipher: AES-256-GCM`` and ``encryption-key-id: <key id>``; its data is
  ``nonce || ciphertext+tag``. The key id is authenticated (GCM associated data), so a payload
  cannot be passed off under another key.
- **Keys.** A key ring of ``id -> 32-byte key``; new payloads use the *active* key, and any key of
  the ring decrypts, so keys rotate by adding a new one, making it active, and keeping the old
  ones until no history needs them. Keys come from ``PAYLOAD_KEYS`` (``id:base64,...``, the
  first is active unless ``PAYLOAD_ACTIVE_KEY_ID`` says otherwise) or from the JSON file
  ``PAYLOAD_KEYS_FILE`` (default ``<DATA_DIR>/payload-keys.json``: ``{"active": id, "keys":
  {id: base64}}``), which is generated with one new key (mode 0600) the first time a process
  starts without any. Never in the repository.
- **Reading.** Payloads without the encrypted encoding (histories written before this codec)
  pass through unchanged; an encrypted payload under a key the ring lacks is an error naming the
  key id (``MissingPayloadKey``).

Source of the scheme: Temporal's encryption samples (``samples-python/encryption``), with the key
id in the metadata as Temporal's data-encryption guide recommends for rotation.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

ENCODING = b"binary/encrypted"
#: A payload compressed (zlib) before it was encrypted: the same format, for payloads that shrink.
ENCODING_COMPRESSED = b"binary/zlib+encrypted"
#: Payloads at least this long (serialised) are compressed before encryption when that saves bytes.
COMPRESS_FROM_BYTES = 160
CIPHER = b"AES-256-GCM"
KEY_ID_FIELD = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32


class MissingPayloadKey(KeyError):
    """An encrypted payload names a key id the ring does not hold."""


class KeyRingError(ValueError):
    """The configured keys cannot be used; the message names the setting and the rule."""


@dataclasses.dataclass(frozen=True)
class KeyRing:
    """Payload keys by id (``bytes`` of 32) and the id new payloads are encrypted under."""

    keys: Mapping[str, bytes]
    active: str

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise KeyRingError(f"PAYLOAD_ACTIVE_KEY_ID: {self.active!r} is not one of the keys {sorted(self.keys)}")
        for key_id, key in self.keys.items():
            if not key_id or len(key_id) > 64 or not key_id.replace("-", "").replace("_", "").isalnum():
                raise KeyRingError(f"PAYLOAD_KEYS: key id {key_id!r} must be 1-64 letters, digits, '-' or '_'")
            if len(key) != KEY_BYTES:
                raise KeyRingError(f"PAYLOAD_KEYS: key {key_id!r} must be {KEY_BYTES} bytes (AES-256), got {len(key)}")

    def rotated(self, key_id: str | None = None) -> KeyRing:
        """This ring plus a new random key, made active (``key_id``, default ``k<n+1>``); the old
        keys stay, so what they sealed still opens.

        Raises:
            KeyRingError: ``key_id`` is already in the ring or breaks the id rule.
        """
        if key_id is None:
            n = len(self.keys) + 1
            while f"k{n}" in self.keys:
                n += 1
            key_id = f"k{n}"
        if key_id in self.keys:
            raise KeyRingError(f"--id: key id {key_id!r} is already in the ring; keys are never replaced")
        return KeyRing({**self.keys, key_id: AESGCM.generate_key(bit_length=256)}, key_id)

    @classmethod
    def generate(cls, key_id: str = "k1") -> KeyRing:
        """A ring of one new random key."""
        return cls({key_id: AESGCM.generate_key(bit_length=256)}, key_id)

    @classmethod
    def parse(cls, text: str, active: str | None = None) -> KeyRing:
        """``id:base64,id:base64`` (``PAYLOAD_KEYS``); the first is active unless ``active``."""
        keys: dict[str, bytes] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            key_id, _, encoded = item.partition(":")
            keys[key_id.strip()] = _decode_key(key_id.strip(), encoded.strip())
        if not keys:
            raise KeyRingError("PAYLOAD_KEYS: no key; give id:base64 of 32 random bytes")
        return cls(keys, active or next(iter(keys)))

    def to_json(self) -> str:
        """The ring as the key file's JSON."""
        return json.dumps({"active": self.active,
                           "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()}}, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "PAYLOAD_KEYS_FILE") -> KeyRing:
        """The ring of a key file (``to_json``)."""
        try:
            data = json.loads(text)
            keys = {str(k): _decode_key(str(k), str(v)) for k, v in data["keys"].items()}
            return cls(keys, str(data["active"]))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            if isinstance(err, KeyRingError):
                raise
            raise KeyRingError(f'{source}: must be JSON {{"active": id, "keys": {{id: base64}}}}: {err}') from None


def _decode_key(key_id: str, encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeyRingError(f"PAYLOAD_KEYS: key {key_id!r} is not base64") from None


def save_key_ring(ring: KeyRing, key_file: Path) -> None:
    """Replace ``key_file`` with ``ring`` atomically (a new 0600 file renamed over the old one)."""
    temporary = key_file.with_name(f".{key_file.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(ring.to_json())
    os.replace(temporary, key_file)


def load_key_ring(*, keys: str | None, active: str | None, key_file: Path, create: bool = True) -> KeyRing:
    """The ring from ``keys`` (``PAYLOAD_KEYS``), else from ``key_file``; with ``create``, a
    missing file is written with one new key (mode 0600) first.

    Raises:
        KeyRingError: the keys or the file break a rule (the message names which).
    """
    if keys:
        return KeyRing.parse(keys, active)
    if not key_file.exists():
        if not create:
            raise KeyRingError(f"PAYLOAD_KEYS_FILE: {key_file} does not exist")
        key_file.parent.mkdir(parents=True, exist_ok=True)
        ring = KeyRing.generate()
        # O_EXCL: two processes starting together keep the first one's key.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(ring.to_json())
    ring = KeyRing.from_json(key_file.read_text(encoding="utf-8"))
    if active:
        ring = KeyRing(ring.keys, active)
    return ring


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads (module docstring)."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}

    @property
    def active_key_id(self) -> str:
        """The id new payloads are encrypted under."""
        return self._ring.active

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload under the active key."""
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt each encrypted payload; others pass through.

        Raises:
            MissingPayloadKey: a payload names a key the ring lacks.
        """
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """One payload, encrypted; compressed first (``ENCODING_COMPRESSED``) when it is at least
        ``COMPRESS_FROM_BYTES`` long and zlib makes it shorter. The history's bytes are what a
        case costs in storage (issue 14): a step's activity input shrinks about threefold.
        Compression before encryption lets the ciphertext's length depend on the content's
        redundancy; the payloads hold ids, amounts and dates (no free text, no secrets beside
        data an attacker chooses), so nothing is learned from it that the lengths did not show."""
        key_id = self._ring.active
        nonce = os.urandom(NONCE_BYTES)
        plain = payload.SerializeToString()
        encoding = ENCODING
        if len(plain) >= COMPRESS_FROM_BYTES:
            packed = zlib.compress(plain, 6)
            if len(packed) < len(plain):
                plain, encoding = packed, ENCODING_COMPRESSED
        sealed = self._ciphers[key_id].encrypt(nonce, plain, key_id.encode())
        return Payload(metadata={"encoding": encoding, "encryption-cipher": CIPHER, KEY_ID_FIELD: key_id.encode()},
                       data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        """One payload, decrypted and decompressed (unchanged when it is not encrypted)."""
        encoding = payload.metadata.get("encoding")
        if encoding not in (ENCODING, ENCODING_COMPRESSED):
            return payload
        key_id = payload.metadata.get(KEY_ID_FIELD, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise MissingPayloadKey(f"payload key {key_id!r} is not in the key ring (PAYLOAD_KEYS / PAYLOAD_KEYS_FILE)")
        plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode())
        if encoding == ENCODING_COMPRESSED:
            plain = zlib.decompress(plain)
        return Payload.FromString(plain)


def data_converter(ring: KeyRing | None) -> DataConverter:
    """The project's data converter (pydantic JSON), encrypting with ``ring`` (``None``: clear)."""
    if ring is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(ring))
