"""The custom search attributes of CONTRACT.md: keys, types, and their values for a case.

Search attributes are stored in plaintext by the server: ids, stages, amounts and dates only.
"""

from __future__ import annotations

from datetime import datetime

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

LOAN_ID = SearchAttributeKey.for_keyword("LoanId")
COLLECTION_STAGE = SearchAttributeKey.for_keyword("CollectionStage")
OVERDUE_SINCE = SearchAttributeKey.for_datetime("OverdueSince")
OUTSTANDING_MINOR = SearchAttributeKey.for_int("OutstandingMinor")
JURISDICTION = SearchAttributeKey.for_keyword("Jurisdiction")
COLLECTION_OUTCOME = SearchAttributeKey.for_keyword("CollectionOutcome")
#: The borrower's ISO 3166-2 region (``CN-SH``), set once at start when the case input has one.
REGION = SearchAttributeKey.for_keyword("Region")
#: The case's experiment and arm, ``<experiment id>:<arm>`` (``none`` outside any experiment), set
#: at opening and kept for life; absent on cases opened before the strategy (issue 13).
STRATEGY_ARM = SearchAttributeKey.for_keyword("StrategyArm")

ALL_KEYS = (LOAN_ID, COLLECTION_STAGE, OVERDUE_SINCE, OUTSTANDING_MINOR, JURISDICTION, COLLECTION_OUTCOME, REGION,
            STRATEGY_ARM)

#: Names and the type names the ``temporal`` CLI takes (``--search-attribute NAME=TYPE``).
CLI_TYPES = {
    "LoanId": "Keyword",
    "CollectionStage": "Keyword",
    "OverdueSince": "Datetime",
    "OutstandingMinor": "Int",
    "Jurisdiction": "Keyword",
    "CollectionOutcome": "Keyword",
    "Region": "Keyword",
    "StrategyArm": "Keyword",
}


#: The server's indexed value type for each CLI type name (for the operator service's requests).
INDEXED_TYPES = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
}


def case_pairs(
    *,
    loan_id: str,
    stage: str,
    overdue_since: datetime,
    outstanding_minor: int,
    jurisdiction: str,
    outcome: str | None,
    strategy_arm: str | None = None,
) -> list[SearchAttributePair]:
    """The search-attribute values of a case (``CollectionOutcome`` only once it has one,
    ``StrategyArm`` once the case was assigned one at opening)."""
    pairs = [
        SearchAttributePair(LOAN_ID, loan_id),
        SearchAttributePair(COLLECTION_STAGE, stage),
        SearchAttributePair(OVERDUE_SINCE, overdue_since),
        SearchAttributePair(OUTSTANDING_MINOR, outstanding_minor),
        SearchAttributePair(JURISDICTION, jurisdiction),
    ]
    if outcome is not None:
        pairs.append(SearchAttributePair(COLLECTION_OUTCOME, outcome))
    if strategy_arm is not None:
        pairs.append(SearchAttributePair(STRATEGY_ARM, strategy_arm))
    return pairs


def case_search_attributes(**kwargs) -> TypedSearchAttributes:
    """``case_pairs(...)`` as the ``TypedSearchAttributes`` a client passes at start."""
    return TypedSearchAttributes(case_pairs(**kwargs))
