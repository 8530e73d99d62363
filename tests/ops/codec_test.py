"""The payload codec: what the Temporal server stores is ciphertext under a named key, keys rotate,
tampering and unknown keys are refused, histories from before the codec still read, and a
process with no key configured makes one in its data folder (mode 0600) on first use."""

from __future__ import annotations

import base64
import json
import stat
from datetime import timedelta

import pytest
from cryptography.exceptions import InvalidTag
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from collections_domain.ops import codec
from collections_domain.ops.connection import converter_for, key_ring
from collections_domain.ops.settings import Settings
from tests.helpers import advance_to, open_case, payment, server_now, status
from tests.keys import TEST_RING

PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"loan_id": "L-secret", "borrower_id": "B-1"}')


async def test_a_payload_is_ciphertext_under_the_active_key_and_reads_back():
    ring = codec.KeyRing.generate("k1")
    (sealed,) = await codec.EncryptionCodec(ring).encode([PLAIN])
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert sealed.metadata["encryption-key-id"] == b"k1" and sealed.metadata["encryption-cipher"] == b"AES-256-GCM"
    assert b"L-secret" not in sealed.data and b"json/plain" not in sealed.data
    (again,) = await codec.EncryptionCodec(ring).encode([PLAIN])
    assert again.data != sealed.data  # a fresh nonce each time
    assert await codec.EncryptionCodec(ring).decode([sealed]) == [PLAIN]


async def test_keys_rotate_old_payloads_still_read_and_an_unknown_key_is_named():
    old = codec.KeyRing.generate("k1")
    (sealed,) = await codec.EncryptionCodec(old).encode([PLAIN])
    rotated = codec.KeyRing({**old.keys, "k2": codec.KeyRing.generate("k2").keys["k2"]}, "k2")
    (newer,) = await codec.EncryptionCodec(rotated).encode([PLAIN])
    assert newer.metadata["encryption-key-id"] == b"k2"
    assert await codec.EncryptionCodec(rotated).decode([sealed, newer]) == [PLAIN, PLAIN]
    with pytest.raises(codec.MissingPayloadKey, match="'k2' is not in the key ring"):
        await codec.EncryptionCodec(old).decode([newer])


async def test_a_tampered_payload_or_key_id_is_refused_and_clear_payloads_pass_through():
    ring = codec.KeyRing({"a": bytes(32), "b": bytes(range(32))}, "a")
    (sealed,) = await codec.EncryptionCodec(ring).encode([PLAIN])
    flipped = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    relabelled = Payload(metadata={**sealed.metadata, "encryption-key-id": b"b"}, data=sealed.data)
    for bad in (flipped, relabelled):
        with pytest.raises(InvalidTag):
            await codec.EncryptionCodec(ring).decode([bad])
    assert await codec.EncryptionCodec(ring).decode([PLAIN]) == [PLAIN]  # histories from before the codec


def test_a_key_file_is_made_once_with_mode_0600_and_bad_keys_are_named(tmp_path):
    settings = Settings(data_dir=tmp_path)
    first = key_ring(settings)
    path = tmp_path / "payload-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_ring(settings) == first  # read again, not replaced
    assert json.loads(path.read_text())["active"] == first.active
    assert key_ring(Settings(data_dir=tmp_path, payload_encryption=False)) is None
    inline = f"k9:{base64.b64encode(bytes(32)).decode()}"
    assert key_ring(Settings(data_dir=tmp_path, payload_keys=inline)).active == "k9"
    for keys, rule in [("k1:abc", "is not base64"), (f"k1:{base64.b64encode(b'short').decode()}", "must be 32 bytes"),
                       ("", "no key")]:
        with pytest.raises(codec.KeyRingError, match=rule):
            codec.KeyRing.parse(keys)
    with pytest.raises(codec.KeyRingError, match="PAYLOAD_ACTIVE_KEY_ID: 'nope'"):
        key_ring(Settings(data_dir=tmp_path, payload_keys=inline, payload_active_key_id="nope"))
    assert "payload_keys" not in repr(Settings(payload_keys=inline)).replace("payload_keys_file", "")


async def test_what_the_server_stores_is_ciphertext(time_env, harness_factory):
    """The history, read with a client that has no key, shows encrypted payloads only: the
    input, the signals, the activities' arguments and results, the markers and the summaries."""
    h = harness_factory(time_env)
    async with h.worker:
        now = await server_now(time_env)
        case, handle = await open_case(h, due=now.date() - timedelta(days=4))
        await handle.signal("payment_received", payment(1_000, now, payment_id="P-clear"))
        await advance_to(time_env, now + timedelta(minutes=5))
        assert (await status(handle)).paid_minor == 1_000
        keyless = await Client.connect(time_env.client.service_client.config.target_host,
                                       namespace=time_env.client.namespace)
        history = await keyless.get_workflow_handle(handle.id).fetch_history()
    raw = history.to_json()
    assert case.borrower_id not in raw and "P-clear" not in raw and "principal" not in raw
    payloads = [p for e in history.events for p in _payloads_of(e) if not p.data.startswith(b'{"seq":')]
    assert len(payloads) > 10
    # The SDK's own record of a local activity (its marker's "data": seq, attempt, type, time) is
    # not the application's: its result, in "result", is encrypted like the rest.
    clear = [(e.event_id, p.data[:60]) for e in history.events for p in _payloads_of(e)
             if p.metadata["encoding"] not in (b"binary/encrypted", b"binary/zlib+encrypted")
             and not p.data.startswith(b'{"seq":')]
    assert clear == []
    # The larger payloads (a step's activity input, the case's input) were compressed first.
    assert any(p.metadata["encoding"] == b"binary/zlib+encrypted" for p in payloads)
    assert all(p.metadata["encryption-key-id"] == TEST_RING.active.encode() for p in payloads)
    decoded = await h.client.data_converter.decode(
        list(history.events[0].workflow_execution_started_event_attributes.input.payloads), [dict])
    assert decoded[0]["borrower_id"] == case.borrower_id  # and the worker's key reads it


def _payloads_of(message) -> list[Payload]:
    """Every payload inside a history event (inputs, results, details, markers, summaries);
    search attributes are left out on purpose (they are indexed in clear: ids and amounts)."""
    found: list[Payload] = []
    for field, value in message.ListFields():
        if field.message_type is None or field.name == "search_attributes":
            continue
        if field.message_type.GetOptions().map_entry:
            items = list(value.values())
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            if isinstance(item, Payload):
                found.append(item)
            elif hasattr(item, "ListFields"):
                found.extend(_payloads_of(item))
    return found


def test_every_process_uses_the_encrypting_converter_by_default(tmp_path):
    converter = converter_for(Settings(data_dir=tmp_path))
    assert isinstance(converter.payload_codec, codec.EncryptionCodec)
    assert converter_for(Settings(data_dir=tmp_path, payload_encryption=False)).payload_codec is None


async def test_starter_payload_keys_rotate_keeps_the_old_key_and_activates_a_new_one(tmp_path):
    """``starter.py payload-keys rotate``: the file gains a key, made active, mode 0600; what the
    old key sealed still opens; ``list`` shows ids only."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "DATA_DIR": str(tmp_path)}
    env.pop("PAYLOAD_KEYS", None)
    starter = [sys.executable, str(Path(__file__).parents[2] / "starter.py")]
    before = key_ring(Settings(data_dir=tmp_path))  # made on first use, as a worker would
    [sealed] = await codec.data_converter(before).encode(["before the rotation"])
    done = subprocess.run(starter + ["payload-keys", "rotate"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    after = key_ring(Settings(data_dir=tmp_path))
    assert after.active == "k2" and set(after.keys) == {"k1", "k2"} and after.keys["k1"] == before.keys["k1"]
    assert stat.S_IMODE((tmp_path / "payload-keys.json").stat().st_mode) == 0o600
    assert await codec.data_converter(after).decode([sealed]) == ["before the rotation"]
    [new] = await codec.data_converter(after).encode(["after"])
    assert new.metadata[codec.KEY_ID_FIELD] == b"k2"
    listed = subprocess.run(starter + ["payload-keys", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert "k2  (active)" in listed.stdout and base64.b64encode(after.keys["k2"]).decode() not in listed.stdout
    again = subprocess.run(starter + ["payload-keys", "rotate", "--id", "k1"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and again.stderr.strip().startswith("error: --id:")


async def test_a_compressible_payload_is_compressed_before_encryption_and_round_trips():
    payload_codec = codec.EncryptionCodec(TEST_RING)
    big = Payload(metadata={"encoding": b"json/plain"}, data=b'{"loan_id": "L-1", "events": [' + b'{"kind": "x"},' * 60 + b'{}]}')
    small = Payload(metadata={"encoding": b"json/plain"}, data=b'"ok"')
    encoded = await payload_codec.encode([big, small])
    assert [p.metadata["encoding"] for p in encoded] == [b"binary/zlib+encrypted", b"binary/encrypted"]
    assert len(encoded[0].data) < len(big.data) / 3
    assert await payload_codec.decode(encoded) == [big, small]
