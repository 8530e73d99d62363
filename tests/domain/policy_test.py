"""Policy files: the default loads; broken files fail naming the key and the rule."""

from pathlib import Path

import pytest

from collections_domain.rules.policy import DEFAULT_POLICY_PATH, PolicyError, PolicyRegistry, load_policy, parse_policy

BASE = DEFAULT_POLICY_PATH.read_text()


def test_default_policy_has_the_3_7_30_ladder():
    policy = load_policy(DEFAULT_POLICY_PATH)
    assert [(s.name, s.days_past_due) for s in policy.steps] == [("initial", 3), ("deep", 7), ("legal", 30), ("agency", 30)]
    assert policy.contact_window.opens == "09:00"
    assert policy.thresholds("CNY").legal_threshold_minor == 1_000_000


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('opens = "09:00"', 'opens = "9am"', "contact_window.opens"),
        ('opens = "09:00"', 'opens = "22:00"', "opens must be earlier than closes"),
        ("grace_days = 2 ", "grace_days = -1 ", "promises.grace_days"),
        ('actions = ["agent_call", "demand_letter"]', 'actions = ["carrier_pigeon"]', "unknown action"),
        ("days_past_due = 7", "days_past_due = 0", "days_past_due"),
        ('outstanding = "below_legal_threshold"', 'outstanding = "any"', "overlap"),
        ("[currencies.EUR]", "[currencies.XXZ]", "ISO 4217"),
        ("legal_threshold_minor = 150000      # 1,500.00 GBP", "legal_threshold_minor = 10", "legal_threshold_minor must be >="),
        ('version = "2027.01-strategy"', 'version = "has space"', "version"),
        ('name = "deep"', 'name = "initial"', "names must be unique"),
    ],
)
def test_broken_policy_names_the_key(old, new, message):
    assert old in BASE, old
    with pytest.raises(PolicyError, match=message):
        parse_policy(BASE.replace(old, new, 1), "test.toml")


def test_not_toml_and_missing_file():
    with pytest.raises(PolicyError, match="not valid TOML"):
        parse_policy("version = ", "x.toml")
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(Path("/nonexistent/policy.toml"))


def test_changing_a_number_in_the_file_changes_the_ladder(tmp_path):
    custom = tmp_path / "custom.toml"
    custom.write_text(BASE.replace('version = "2027.01-strategy"', 'version = "custom-1"').replace("days_past_due = 7", "days_past_due = 10"))
    registry = PolicyRegistry.from_settings(str(custom))
    assert registry.current.version == "custom-1"
    assert [s.days_past_due for s in registry.current.steps] == [3, 10, 30, 30]
    assert registry.get("2026.12-ledger").version == "2026.12-ledger"
    with pytest.raises(KeyError):
        registry.get("nope")


def test_a_policy_file_changed_without_a_new_version_is_refused(tmp_path):
    changed = tmp_path / "changed.toml"
    changed.write_text(BASE.replace("days_past_due = 7", "days_past_due = 10"))  # same version, other content
    with pytest.raises(PolicyError, match="two policy files name version '2027.01-strategy' with different content"):
        PolicyRegistry.from_settings(str(changed))


def test_a_running_case_gets_exactly_the_policy_it_recorded():
    from collections_domain.rules.policy import PolicyMismatch

    registry = PolicyRegistry.from_settings(None)
    policy = registry.current
    assert registry.checked(policy.version, policy.digest) is policy
    with pytest.raises(PolicyMismatch, match="the file changed without a new version"):
        registry.checked(policy.version, "0" * 64)
    with pytest.raises(PolicyMismatch, match="not known to this worker"):
        registry.checked("2020.01-gone", "")
    assert registry.get("2026.12-compliance").version == "2026.12-compliance"  # the frozen one is kept
