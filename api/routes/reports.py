"""Reports: the collection KPIs (roll rates, cure rates, promises, contact, recovery, cost,
strategy arms and their comparisons) computed from the product's records
(``collections_domain.analytics.kpis``)."""

import asyncio
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError

from api import keys
from api.deps import check_list_parameters, engine_of, policies_of, require
from api.problems import invalid_input, problem_responses
from api.schemas import IsoDate
from collections_domain.analytics.figures import (
    FILTER_VALUE,
    ChannelName,
    Filters,
    Jurisdiction,
    KpiReport,
)
from collections_domain.analytics.kpis import compute_kpis
from collections_domain.case.contract import describe_errors

router = APIRouter(tags=["reports"])

read = Depends(require("read"))

#: The query parameters of ``GET /v1/reports/kpis``: ``Filters``' fields.
KPI_PARAMETERS = tuple(Filters.model_fields)


@router.get("/v1/reports/kpis", response_model=KpiReport, responses=problem_responses(403, 503))
async def kpi_report(
    request: Request,
    _: Annotated[keys.Principal, read],
    opened_from: Annotated[IsoDate | None, Query(description="Cases opened on or after this UTC day (YYYY-MM-DD).")] = None,
    opened_to: Annotated[IsoDate | None, Query(description="Cases opened on or before this UTC day (YYYY-MM-DD).")] = None,
    policy_version: Annotated[str | None, Query(pattern=FILTER_VALUE, description="The policy version cases ran under.")] = None,
    strategy_arm: Annotated[str | None, Query(pattern=FILTER_VALUE,
                                              description="<experiment>:<arm>, an arm's name, or none.")] = None,
    segment: Annotated[str | None, Query(pattern=FILTER_VALUE, description="A score band or a portfolio.")] = None,
    jurisdiction: Annotated[Jurisdiction | None, Query()] = None,
    channel: Annotated[ChannelName | None, Query(description="Cases contacted on this channel; contact and cost "
                                                             "figures of this channel only.")] = None,
) -> KpiReport:
    """The collection KPIs of the cases the filters select (none: all cases), each figure with
    its definition: roll rates between DPD buckets from month-end to month-end, cure rate by
    stage and time to cure, cure curves by strategy arm, promises kept, contact and cost per
    channel, recovery per currency (overall, by stage, by agency, legal), cost per cure, and
    each experiment's challengers against the champion. Needs scope ``read``."""
    check_list_parameters(request, KPI_PARAMETERS)
    filters = _filters(opened_from=opened_from, opened_to=opened_to, policy_version=policy_version,
                       strategy_arm=strategy_arm, segment=segment, jurisdiction=jurisdiction, channel=channel)
    policy = policies_of(request).current
    return await asyncio.to_thread(compute_kpis, engine_of(request), policy, filters)


def _filters(*, opened_from: date | None, opened_to: date | None, **values: str | None) -> Filters:
    """The query's ``Filters``; an empty or backwards date range is a 422 naming ``opened_to``."""
    if opened_from is not None and opened_to is not None and opened_to < opened_from:
        rule = f"must not be before opened_from ({opened_from.isoformat()}), got {opened_to.isoformat()}"
        raise invalid_input([f"query.opened_to: {rule}"])
    try:
        return Filters(opened_from=opened_from, opened_to=opened_to, **values)
    except ValidationError as err:  # the query's rules are Filters' own; kept in step by the tests
        raise invalid_input([f"query.{problem}" for problem in describe_errors(err)]) from err
