"""Reconciliation: payments held because no case was running for their loan."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from api import keys
from api.deps import check_list_parameters, engine_of, require
from api.problems import problem_responses
from api.schemas import UnmatchedPaymentOut, UnmatchedPayments
from collections_domain.case.contract import ID_PATTERN
from collections_domain.store.reconciliation import held_payments

router = APIRouter(tags=["payments"])

read = Depends(require("read"))


@router.get("/v1/reconciliation/payments", response_model=UnmatchedPayments, responses=problem_responses(403))
async def unmatched_payments(
    request: Request,
    _: Annotated[keys.Principal, read],
    loan_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> UnmatchedPayments:
    """Payments held for reconciliation because no case was running for their loan."""

    check_list_parameters(request, ("loan_id",))
    found = await asyncio.to_thread(held_payments, engine_of(request), loan_id)
    return UnmatchedPayments(payments=[UnmatchedPaymentOut(**row.model_dump()) for row in found])
