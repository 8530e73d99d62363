"""Borrower preferences, attorneys and the call log (``collections_domain.store.preferences``)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from activities.collection_activities import CollectionActivities
from activities.delivery import RecordDelivery
from collections_domain.case.contract import SIGNAL_ID_FIELD
from collections_domain.client import CASE_SIGNALS
from collections_domain.store.db import make_engine
from collections_domain.rules.policy import PolicyRegistry
from collections_domain.store.preferences import get_contact_preferences, record_call_attempt, set_contact_preferences
from collections_domain.store.records import ProfileRequest
from tests.databases import fresh_database_url


@pytest.fixture
def engine(tmp_path):
    return make_engine(fresh_database_url(tmp_path, "p"))


def test_a_call_logged_with_an_offset_is_counted_at_its_true_instant(engine):
    shanghai = timezone(timedelta(hours=8))
    at = datetime(2026, 12, 1, 10, 0, tzinfo=shanghai)  # 02:00 UTC
    record_call_attempt(engine, attempt_id="D-1", loan_id="L1", borrower_id="B1", attempted_at=at, connected=False)
    activities = CollectionActivities(engine=engine, delivery=RecordDelivery(), policies=PolicyRegistry.from_settings(None))
    just_after = activities.load_contact_profile(ProfileRequest(borrower_id="B1", loan_id="L1", as_of=datetime(2026, 12, 1, 2, 1, tzinfo=UTC)))
    just_before = activities.load_contact_profile(ProfileRequest(borrower_id="B1", loan_id="L1", as_of=datetime(2026, 12, 1, 1, 59, tzinfo=UTC)))
    assert [a.at for a in just_after.call_attempts] == [datetime(2026, 12, 1, 2, 0, tzinfo=UTC)]
    assert just_before.call_attempts == []


def test_a_log_is_idempotent_and_never_changed(engine):
    at = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    assert record_call_attempt(engine, attempt_id="D-2", loan_id="L1", borrower_id="B1", attempted_at=at, connected=False)
    assert not record_call_attempt(engine, attempt_id="D-2", loan_id="L1", borrower_id="B1", attempted_at=at, connected=False)
    with pytest.raises(ValueError, match=r"attempt_id: dialer:D-2 is already logged with connected False \(not True\)"):
        record_call_attempt(engine, attempt_id="D-2", loan_id="L1", borrower_id="B1", attempted_at=at, connected=True)


def test_an_attorney_on_file_is_not_changed_from_another_borrowers_preferences(engine):
    set_contact_preferences(engine, "B1", attorney_id="ATT-1", attorney_name="J. Counsel", attorney_address="1 Court Rd")
    with pytest.raises(ValueError, match="attorney_name: attorney ATT-1 is on file with other details"):
        set_contact_preferences(engine, "B2", attorney_id="ATT-1", attorney_name="Someone Else", attorney_address="2 Other Rd")
    assert set_contact_preferences(engine, "B2", attorney_id="ATT-1").attorney_id == "ATT-1"
    with pytest.raises(ValueError, match="attorney_id: required with the attorney's name"):
        set_contact_preferences(engine, "B3", attorney_name="Orphan", attorney_address="Nowhere")


def test_preferences_rules_name_the_field(engine):
    for kwargs, message in [
        (dict(preferred_hours="25:00-26:00"), "preferred_hours: must be HH:MM-HH:MM"),
        (dict(preferred_hours="18:00-09:00"), "preferred_hours: the opening must be earlier"),
        (dict(opt_out=["fax"]), "opt_out: unknown medium"),
        (dict(extra_time_zones=["Mars/Olympus"]), "time_zone: 'Mars/Olympus' is not an IANA time zone name"),
    ]:
        with pytest.raises(ValueError, match=message):
            set_contact_preferences(engine, "B1", **kwargs)
    with pytest.raises(ValueError, match="borrower_id: must be 1-64"):
        get_contact_preferences(engine, "")
    set_contact_preferences(engine, "B1", extra_time_zones=["America/Chicago"], preferred_media=["email"])
    cleared = set_contact_preferences(engine, "B1", extra_time_zones=[""], preferred_media=[""])
    assert cleared.extra_time_zones == () and cleared.preferred_media == ()
    both = set_contact_preferences(engine, "B1", opt_in=["sms", "email", "call", "visit", "letter"], opt_out=["sms"])
    assert both.opted_out_media == ("sms",)


def test_every_borrower_signal_can_be_sent_by_the_client():
    # Own helpers (money, promises, the loan book), or from the case's children.
    internal = {"payment_received", "promise_to_pay", "plan_instalment_missed", "instalment_due", "payment_reversed",
                "schedule_adjusted", "legal_status_changed"}
    assert set(CASE_SIGNALS) == set(SIGNAL_ID_FIELD) - internal


def test_logged_calls_show_in_the_contact_history(engine):
    from collections_domain.client import contact_history

    record_call_attempt(engine, attempt_id="D-9", loan_id="L9", borrower_id="B9",
                        attempted_at=datetime(2026, 12, 1, 2, 0, tzinfo=UTC), connected=True, phone_number_id="m1", source="agency")
    [row] = contact_history(engine, "L9")
    assert (row["kind"], row["what"], row["status"]) == ("call", "call by agency to number m1", "connected")
