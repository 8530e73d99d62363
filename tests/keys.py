"""The payload key ring every test process shares (clients, workers, CLI subprocesses): a fixed
test key, so that the saved encrypted histories replay. Never a production key: production
processes read ``PAYLOAD_KEYS`` or their key file (``collections_domain/ops/codec.py``)."""

import base64

from collections_domain.ops import codec

TEST_KEY_ID = "test-1"
TEST_KEY = bytes(range(32))
TEST_RING = codec.KeyRing({TEST_KEY_ID: TEST_KEY}, TEST_KEY_ID)
#: ``PAYLOAD_KEYS`` for a subprocess that must read what the tests' clients write.
TEST_PAYLOAD_KEYS = f"{TEST_KEY_ID}:{base64.b64encode(TEST_KEY).decode()}"
#: The data converter of every test client, worker and replayer.
TEST_CONVERTER = codec.data_converter(TEST_RING)
