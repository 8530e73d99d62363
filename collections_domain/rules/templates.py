"""Render messages, letters and referrals from ``templates/messages.toml`` (zh-CN and en).

Amounts are formatted from minor units with the currency's own precision and the locale's
conventions (Babel), so 123456 CNY renders as ``¥1,234.56``; no float ever touches money.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from babel.numbers import format_currency, get_currency_precision

TEMPLATES_PATH = Path(__file__).parent / "templates" / "messages.toml"
DEFAULT_LOCALE = "zh-CN"
LENDER_NAME = "Lender"
PAY_URL = "https://pay.example.com"


@dataclass(frozen=True)
class RenderedMessage:
    """A rendered message: ``subject`` (emails only) and ``body``."""

    subject: str | None
    body: str


def minor_to_decimal(amount_minor: int, currency: str) -> Decimal:
    """``amount_minor`` as a Decimal in major units, using the currency's precision (JPY: 0)."""
    return Decimal(amount_minor).scaleb(-get_currency_precision(currency))


def format_money(amount_minor: int, currency: str, locale: str) -> str:
    """``amount_minor`` of ``currency`` formatted for ``locale`` (``"zh-CN"`` or ``"en"``)."""
    return format_currency(minor_to_decimal(amount_minor, currency), currency, locale=locale.replace("-", "_"))


#: The opt-out instruction every SMS and email must carry, by locale (Regulation F,
#: 12 CFR 1006.6(e): a reasonable and simple way to opt out of electronic communications).
OPT_OUT_MARKERS = {"en": ("Reply STOP", "reply UNSUBSCRIBE"), "zh-CN": ("回复TD退订", "退订")}
ELECTRONIC_TEMPLATES = ("sms_reminder", "email_overdue_notice")


@lru_cache(maxsize=1)
def _templates() -> dict[str, dict]:
    data = tomllib.loads(TEMPLATES_PATH.read_text(encoding="utf-8"))
    names = set(data[DEFAULT_LOCALE])
    for locale, templates in data.items():
        if set(templates) != names:
            raise ValueError(f"{TEMPLATES_PATH}: locale {locale} must define exactly {sorted(names)}")
        for name, marker in zip(ELECTRONIC_TEMPLATES, OPT_OUT_MARKERS.get(locale, ("", ""))):
            text = templates[name]["body"] if isinstance(templates[name], dict) else templates[name]
            if locale not in OPT_OUT_MARKERS or marker not in text:
                raise ValueError(
                    f"{TEMPLATES_PATH}: [{locale}] {name} must carry the opt-out instruction {marker!r} "
                    "(Regulation F 1006.6(e); OPT_OUT_MARKERS in templates.py)"
                )
    return data


def supported_locales() -> list[str]:
    """Locales that have every template."""
    return sorted(_templates())


def render(
    template: str,
    *,
    locale: str,
    name: str,
    loan_id: str,
    outstanding_minor: int,
    paid_minor: int,
    currency: str,
    oldest_due_date: date,
    days_past_due: int,
    step: str,
) -> RenderedMessage:
    """Render ``template`` for one borrower; unknown locales fall back to zh-CN.

    Raises:
        KeyError: ``template`` is not defined.
    """
    templates = _templates()
    locale = locale if locale in templates else DEFAULT_LOCALE
    spec = templates[locale][template]
    fields = {
        "name": name,
        "loan_id": loan_id,
        "amount": format_money(outstanding_minor, currency, locale),
        "paid": format_money(paid_minor, currency, locale),
        "due_date": oldest_due_date.isoformat(),
        "days_past_due": days_past_due,
        "step": step,
        "reference": loan_id,
        "lender": LENDER_NAME,
        "pay_url": PAY_URL,
    }
    if isinstance(spec, dict):
        return RenderedMessage(subject=spec["subject"].format(**fields), body=spec["body"].format(**fields))
    return RenderedMessage(subject=None, body=spec.format(**fields))
