"""The operator page's delivery history: ``/console/history`` (charts per destination over the last hour, day or
week, chosen with plain links) and ``/console/history/charts`` (the charts alone, swapped in by ``console.js``
every few seconds, as the main page's panels are).

The figures come from ``Store.history`` (``hub.store.traffic``); the SVG from ``hub.console.charts``. Every
destination with traffic in the window is shown, and every registered connector the hub delivers to, even when
quiet (its chart then says there was no traffic).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from hub.console.charts import history_chart
from hub.console.i18n import Translator
from hub.console.pages import check_session, current_user, hub_of, lang_of, render, to_login
from hub.store.traffic import DEFAULT_WINDOW, WINDOWS, TrafficHistory

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_session)])


@dataclass(frozen=True)
class Chart:
    """One destination's chart as the template shows it."""

    destination: str
    name: str
    svg: Markup
    empty: bool


def _window(value: str | None) -> str:
    return value if value in WINDOWS else DEFAULT_WINDOW


def charts(traffic: TrafficHistory, names: dict[str, str], receivers: list[str], t: Translator) -> list[Chart]:
    """A chart per destination with traffic in the window or registered to receive, busiest first."""
    window_label = t(f"window_{traffic.window}")
    out = []
    for code in sorted(set(receivers) | {d.destination for d in traffic.destinations}):
        history = traffic.of(code)
        name = names.get(code) or code
        title = t("history_chart_title", name=name, window=window_label)
        out.append(Chart(code, names.get(code, ""), history_chart(history, traffic.bucket_s, t, title=title),
                         history.empty))  # fmt: skip
    return sorted(out, key=lambda c: (c.empty, c.destination))


def _read(request: Request, window: str, destination: str | None) -> tuple[TrafficHistory, list[Chart]]:
    hub = hub_of(request)
    traffic = hub.store.history(window, destination=destination)
    connectors = list(hub.registry.list()) if hub.registry is not None else []
    names = {c.code: c.name for c in connectors}
    receivers = [c.code for c in connectors if c.endpoint is not None and destination in (None, c.code)]
    return traffic, charts(traffic, names, receivers, Translator(lang_of(request)))


@router.get("/console/history", response_class=HTMLResponse)
async def history_page(request: Request, window: str = DEFAULT_WINDOW, destination: str | None = None) -> Response:
    if current_user(request) is None:
        return to_login(request)
    window, destination = _window(window), (destination or "")[:64] or None
    traffic, shown = await run_in_threadpool(_read, request, window, destination)
    return render(request, "history.html", traffic=traffic, charts=shown, window=window, windows=list(WINDOWS),
                   destination=destination)  # fmt: skip


@router.get("/console/history/charts", response_class=HTMLResponse)
async def history_charts(request: Request, window: str = DEFAULT_WINDOW, destination: str | None = None) -> Response:
    if current_user(request) is None:
        return Response("sign in again", status_code=401, media_type="text/plain")
    window, destination = _window(window), (destination or "")[:64] or None
    traffic, shown = await run_in_threadpool(_read, request, window, destination)
    return render(request, "history_charts.html", traffic=traffic, charts=shown, window=window,
                   destination=destination)  # fmt: skip
