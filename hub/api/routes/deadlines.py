"""``GET /api/v1/deadlines``: online dossiers still at status 1 (new) past their intake deadline of 8 working hours
(DOMAIN.md §5), and dossiers past their current due date that are not finished (the working calendar is configured in
``Settings``, see ``hub.dossier.deadlines``)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from hub.api.dependencies import ApiKey, staff_hub
from hub.api.problems import responses
from hub.dossier.deadlines import overdue_intake, overdue_processing

router = APIRouter()


class OverdueOut(BaseModel):
    dossier_code: str
    submitted_at: datetime
    deadline: datetime = Field(description="When the intake answer was due (UTC)")
    overdue_working_hours: float = Field(description="Working hours past the deadline")
    channel: int | None = Field(description="1 in person, 2 online, 3 postal (from the dossier.sync), if known")
    source: str | None = Field(description="Who reported the dossier's current status 1")


class ProcessingOut(BaseModel):
    dossier_code: str
    due_at: datetime = Field(description="The dossier's current due date (UTC), moved by a supplement received")
    status: int | None = Field(description="Its latest reported status")
    overdue_working_hours: float = Field(description="Working hours past the due date")
    source: str | None = Field(description="Who reported that status")


class DeadlinesOut(BaseModel):
    rule: str = "intake answer within 8 working hours of online submission"
    hours: float
    calendar: dict[str, str | None]
    now: datetime
    overdue: list[OverdueOut]
    overdue_processing: list[ProcessingOut] = Field(
        default_factory=list,
        description="Dossiers past their current due date whose status is not excluded "
        "(`LIENTHONG_OVERDUE_EXCLUDED_STATUSES`: 9/10 and the other ends, 5/6 waiting on the applicant)",
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "rule": "intake answer within 8 working hours of online submission",
                    "hours": 8,
                    "calendar": {"days": "Mon-Fri", "hours": "07:30-11:30,13:30-17:00", "country": "VN",
                                 "holidays": "", "extra_working_days": "", "calendar_file": None,
                                 "timezone": "Asia/Ho_Chi_Minh"},
                    "now": "2025-11-25T03:00:00Z",
                    "overdue": [
                        {"dossier_code": "000.00.00.H12-251123-0042", "submitted_at": "2025-11-21T01:15:00Z",
                         "deadline": "2025-11-24T01:45:00Z", "overdue_working_hours": 2.25, "channel": 2,
                         "source": "000.00.00.H12"}
                    ],
                    "overdue_processing": [
                        {"dossier_code": "000.00.00.H12-251103-0007", "due_at": "2025-11-24T10:00:00Z", "status": 4,
                         "overdue_working_hours": 7.0, "source": "000.00.00.G10"}
                    ],
                }
            ]
        }
    }  # fmt: skip


@router.get(
    "/api/v1/deadlines",
    operation_id="list_overdue_dossiers",
    tags=["operations"],
    summary="Dossiers past the 8-working-hour intake deadline or their due date (admin or operator key)",
    description="Dossiers of the channels `LIENTHONG_INTAKE_ALERT_CHANNELS` (default 2, online) whose latest "
    "status is still 1 (new) once `LIENTHONG_INTAKE_DEADLINE_HOURS` working hours (default 8) have passed since "
    "submission, most overdue first; and dossiers past their current due date (NgayHenTra, moved by a supplement "
    "received with a new one) that are not finished. Working hours on the calendar `LIENTHONG_WORKING_DAYS`, "
    "`LIENTHONG_WORKING_HOURS`, the public holidays of `LIENTHONG_HOLIDAYS_COUNTRY` (the holidays package), "
    "`LIENTHONG_HOLIDAYS`, `LIENTHONG_EXTRA_WORKING_DAYS`, `LIENTHONG_CALENDAR_FILE`, `LIENTHONG_CALENDAR_TIMEZONE`.",
    response_model=DeadlinesOut,
    responses=responses("unauthenticated", "forbidden", "unavailable"),
)
def deadlines(request: Request, x_api_key: ApiKey = None) -> DeadlinesOut:
    hub = staff_hub(request, x_api_key)
    settings = hub.settings
    now = datetime.now(UTC)
    found = overdue_intake(hub.store, settings, now)
    processing = overdue_processing(hub.store, settings, now)
    return DeadlinesOut(
        hours=settings.intake_deadline_hours,
        calendar={
            "days": settings.working_days,
            "hours": settings.working_hours,
            "country": settings.holidays_country,
            "holidays": settings.holidays,
            "extra_working_days": settings.extra_working_days,
            "calendar_file": None if settings.calendar_file is None else str(settings.calendar_file),
            "timezone": settings.calendar_timezone,
        },
        now=now,
        overdue=[
            OverdueOut(
                dossier_code=d.dossier_code,
                submitted_at=d.submitted_at,
                deadline=d.deadline,
                overdue_working_hours=d.overdue_hours,
                channel=d.channel,
                source=d.source,
            )
            for d in found
        ],
        overdue_processing=[
            ProcessingOut(
                dossier_code=p.dossier_code,
                due_at=p.due_at,
                status=p.status,
                overdue_working_hours=p.overdue_hours,
                source=p.source,
            )
            for p in processing
        ],
    )
