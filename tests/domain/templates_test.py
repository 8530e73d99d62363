"""Messages render the overdue details in zh-CN and en, exact to the minor unit."""

from datetime import date

import pytest

from collections_domain.rules.templates import format_money, render, supported_locales

TEMPLATES = ["sms_reminder", "email_overdue_notice", "agent_call", "field_visit", "demand_letter", "agency_placement", "legal_referral", "manual_review"]


def test_money_is_formatted_from_minor_units():
    assert format_money(123456, "CNY", "zh-CN") == "¥1,234.56"
    assert format_money(5, "USD", "en") == "$0.05"
    assert format_money(1234, "JPY", "en") == "¥1,234"


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_carries_the_overdue_details(locale, template):
    message = render(
        template, locale=locale, name="Wang Fang", loan_id="L-77", outstanding_minor=987654, paid_minor=1000,
        currency="CNY", oldest_due_date=date(2026, 11, 3), days_past_due=7, step="deep",
    )
    text = (message.subject or "") + message.body
    assert "L-77" in text and "9,876.54" in text and "2026-11-03" in text and "7" in text


def test_email_and_sms_carry_an_opt_out():
    for locale, word in (("en", "STOP"), ("zh-CN", "退订")):
        sms = render("sms_reminder", locale=locale, name="n", loan_id="L", outstanding_minor=1, paid_minor=0, currency="CNY", oldest_due_date=date(2026, 1, 1), days_past_due=3, step="initial")
        assert word in sms.body
    assert supported_locales() == ["en", "zh-CN"]


def test_every_sms_and_email_template_must_carry_an_opt_out(tmp_path, monkeypatch):
    from collections_domain.rules import templates

    text = templates.TEMPLATES_PATH.read_text(encoding="utf-8").replace(" Reply STOP to opt out.", "")
    broken = tmp_path / "messages.toml"
    broken.write_text(text, encoding="utf-8")
    monkeypatch.setattr(templates, "TEMPLATES_PATH", broken)
    templates._templates.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"\[en\] sms_reminder must carry the opt-out instruction 'Reply STOP'"):
            templates._templates()
    finally:
        monkeypatch.undo()
        templates._templates.cache_clear()
