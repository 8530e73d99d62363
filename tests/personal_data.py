"""The personal-data sweep of the end-to-end runs (issue 12, item 3).

Every borrower the test process writes (``seed_borrower``, the Home Credit loader, the loan book:
any ORM insert into ``borrowers``) registers its name, phone, email and postal address here; every
end-to-end test's captured output and log records, and every workflow history of the end-to-end
dev servers (payloads decoded with the test key, failure messages and summaries included) are
collected; ``tests/e2e/zz_personal_data_test.py`` then fails on any hit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from google.protobuf.message import Message
from sqlalchemy import event
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from collections_domain.store.models import Borrower

#: The shortest value worth looking for: shorter ones ("B", "en") are not personal data.
MIN_LENGTH = 6


@dataclass
class Sweep:
    """What the session collected: ``values`` to look for, ``texts`` as (where, text)."""

    values: set[str] = field(default_factory=set)
    texts: list[tuple[str, str]] = field(default_factory=list)
    histories: int = 0

    def register(self, *values: str | None) -> None:
        """Look for each value (and a phone number's digits alone) from now on."""
        for value in values:
            if not value or len(value) < MIN_LENGTH:
                continue
            self.values.add(value)
            digits = re.sub(r"\D", "", value)
            if len(digits) >= 8 and not value.replace(" ", "").isalnum():
                self.values.add(digits)

    def hits(self) -> list[str]:
        """``where: value`` for every collected text that contains a registered value."""
        found = []
        for where, text in self.texts:
            compact = re.sub(r"[\s()\-]", "", text)
            for value in sorted(self.values):
                if value in text or (value.isdigit() and value in compact):
                    found.append(f"{where}: {value!r}")
        return found


SWEEP = Sweep()


@event.listens_for(Borrower, "before_insert")
@event.listens_for(Borrower, "before_update")
def _register_borrower(_mapper, _connection, borrower: Borrower) -> None:
    SWEEP.register(borrower.full_name, borrower.phone, borrower.email, borrower.postal_address)


def _payloads(message: Message, found: list[Payload]) -> None:
    """Every ``Payload`` inside ``message``, depth first."""
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        items = value if descriptor.is_repeated else [value]
        if descriptor.message_type.GetOptions().map_entry:
            items = list(value.values())
            if items and not isinstance(items[0], Message):
                continue
        for item in items:
            if isinstance(item, Payload):
                found.append(item)
            elif isinstance(item, Message):
                _payloads(item, found)


async def collect_histories(client: Client, where: str) -> int:
    """Add every workflow history ``client`` can list (its namespace, open and closed) to the
    sweep: the history's JSON (failure messages, ids, types) and each payload decoded with the
    client's codec. Returns how many histories."""
    count = 0
    codec = client.data_converter.payload_codec
    async for execution in client.list_workflows():
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        payloads: list[Payload] = []
        for history_event in history.events:
            _payloads(history_event, payloads)
        decoded = await codec.decode(payloads) if codec and payloads else payloads
        text = history.to_json() + "\n".join(p.data.decode("utf-8", "replace") for p in decoded)
        SWEEP.texts.append((f"{where} history {execution.id}", text))
        count += 1
    SWEEP.histories += count
    return count


_DEBUG_LINE = re.compile(r'^DEBUG |\[debug\s*\]|"level": ?"debug"')


def collect_report(nodeid: str, sections: list[tuple[str, str]]) -> None:
    """Add a test's captured stdout, stderr and log records to the sweep, less its DEBUG lines
    (DEBUG may carry a rendered message: the standard is no personal data at INFO and above)."""
    for title, content in sections:
        kept = "\n".join(line for line in content.splitlines() if not _DEBUG_LINE.search(line))
        if kept:
            SWEEP.texts.append((f"{nodeid} {title}", kept))
