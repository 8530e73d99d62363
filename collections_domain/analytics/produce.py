"""The KPI report as a job: compute the figures (``kpis.compute_kpis``), write the HTML page
(``report.write_html``) and the JSON next to it, and say where. Run by ``starter.py report``
and by the ``produce_kpi_report`` activity that the report's Temporal Schedule starts daily
(``KpiReportWorkflow``, ``analytics.schedule``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy.engine import Engine

from collections_domain.analytics.figures import Filters, KpiReport
from collections_domain.rules.policy import CollectionPolicy


class KpiReportRequest(BaseModel):
    """What the scheduled report covers: the cases opened in the last ``days`` days (``None``:
    all), with the other ``filters``; ``name`` is the files' stem."""

    days: int | None = None
    filters: Filters = Filters()
    name: str = "kpi-report"


class KpiReportProduced(BaseModel):
    """Where the report went and its size: ids and counts only (the result is kept in the
    history)."""

    html_path: str
    json_path: str
    cases: int
    generated_at: datetime


def request_filters(request: KpiReportRequest, now: datetime) -> Filters:
    """The filters of ``request`` as of ``now`` (UTC): ``days`` becomes ``opened_from``."""
    if request.days is None:
        return request.filters
    start: date = (now.astimezone(UTC) - timedelta(days=request.days)).date()
    return request.filters.model_copy(update={"opened_from": start})


def produce(engine: Engine, policy: CollectionPolicy, request: KpiReportRequest, folder: Path,
            now: datetime | None = None) -> tuple[KpiReport, KpiReportProduced]:
    """Compute the KPIs of ``request`` and write ``<folder>/<name>.html`` and ``.json``
    (the folder is created); returns the figures and where they went.

    Raises:
        OSError: the folder cannot be written. sqlalchemy.exc.SQLAlchemyError: the database failed.
    """
    from collections_domain.analytics.kpis import compute_kpis
    from collections_domain.analytics.report import write_html

    now = now or datetime.now(UTC)
    report = compute_kpis(engine, policy, request_filters(request, now), now=now)
    folder.mkdir(parents=True, exist_ok=True)
    html_path = write_html(report, folder / f"{request.name}.html")
    json_path = folder / f"{request.name}.json"
    json_path.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    return report, KpiReportProduced(html_path=str(html_path), json_path=str(json_path), cases=report.cases,
                                     generated_at=report.generated_at)
