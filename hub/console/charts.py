"""Server-rendered SVG charts of the delivery history (``hub.store.traffic``): no script, no CDN, nothing the
page's CSP (``script-src 'self'; style-src 'self'``) would block — the bars carry classes, ``console.css`` colours
them.

``history_chart`` is a pure function of one destination's buckets: stacked bars (delivered, failed, dead from the
bottom), a y axis rounded to a readable ceiling, time labels at round Vietnam times, a legend with the window's totals,
and a ``<title>``/``<desc>`` for screen readers; each busy bar has its own ``<title>`` (the browser's tooltip). A
count that is not zero is drawn at least one pixel high, so one failure beside a thousand deliveries still shows.
A window without traffic is said in words, not drawn as an empty box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup

from hub.console.i18n import Translator
from hub.console.views import LOCAL_TZ
from hub.store.traffic import COUNTERS, DestinationHistory

WIDTH, HEIGHT = 720, 210
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 10, 26
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
TICK_ROOM = 32  # room a time label under the bars needs
LABELS = {"delivered": "delivered", "failed": "failed_retry", "dead": "dead"}


@dataclass(frozen=True)
class Bar:
    """One drawn rectangle: a counter's part of a bucket's stacked bar."""

    counter: str
    x: float
    y: float
    width: float
    height: float


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10ⁿ at least ``value`` (at least 1): the top of the y axis."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def bars(history: DestinationHistory) -> tuple[list[Bar], int]:
    """The rectangles of ``history`` in plot coordinates (the SVG's, y downwards) and the y axis's top."""
    top = nice_ceiling(max((b.total for b in history.buckets), default=0))
    slot = PLOT_W / max(len(history.buckets), 1)
    width = max(slot * 0.8, 1.0)
    out: list[Bar] = []
    for i, bucket in enumerate(history.buckets):
        base = TOP + PLOT_H
        for counter in COUNTERS:
            n = getattr(bucket, counter)
            if not n:
                continue
            height = max(n / top * PLOT_H, 1.0)
            base -= height
            out.append(Bar(counter, LEFT + i * slot + (slot - width) / 2, base, width, height))
    return out, top


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _time_label(at: datetime, bucket_s: int) -> str:
    local = at.astimezone(LOCAL_TZ)
    return local.strftime("%H:%M") if bucket_s < 3600 else local.strftime("%d/%m %Hh")


def ticks(starts: list[datetime], bucket_s: int) -> list[tuple[int, str]]:
    """The time labels under the bars, at round local times: every 10 minutes (hour window), every 4 hours (day
    window), every midnight (week window); none so close to the right edge that it would be cut."""
    slot = PLOT_W / max(len(starts), 1)
    out = []
    for i, start in enumerate(starts):
        local = start.astimezone(LOCAL_TZ)
        if bucket_s < 900:
            due, text = local.minute % 10 == 0, local.strftime("%H:%M")
        elif bucket_s < 3600:
            due, text = local.minute == 0 and local.hour % 4 == 0, local.strftime("%H:%M")
        else:
            due, text = local.hour == 0, local.strftime("%d/%m")
        if due and LEFT + i * slot <= WIDTH - RIGHT - TICK_ROOM:
            out.append((i, text))
    return out


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)


def history_chart(history: DestinationHistory, bucket_s: int, t: Translator, *, title: str) -> Markup:
    """A ``<figure>`` with the SVG chart and its legend, or a paragraph saying there was no traffic."""
    if history.empty:
        return Markup('<p class="empty no-traffic">{}</p>').format(t("no_traffic_window"))
    ident = "chart-" + _safe_id(history.destination)
    drawn, top = bars(history)
    buckets = history.buckets
    start, end = buckets[0].start, buckets[-1].start + timedelta(seconds=bucket_s)
    peak = max(buckets, key=lambda b: b.total)
    desc = t(
        "chart_desc", delivered=history.delivered, failed=history.failed, dead=history.dead,
        start=_time_label(start, bucket_s), end=_time_label(end, bucket_s), peak=peak.total,
        peak_at=_time_label(peak.start, bucket_s),
    )  # fmt: skip
    parts: list[Markup] = [
        Markup('<svg class="bars" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-t {}-d" '
               'preserveAspectRatio="xMidYMid meet">').format(WIDTH, HEIGHT, ident, ident),
        Markup('<title id="{0}-t">{1}</title><desc id="{0}-d">{2}</desc><g class="grid">').format(ident, title, desc),
    ]  # fmt: skip
    for value in (0, top // 2 if top % 2 == 0 else None, top):
        if value is None:
            continue
        y = _fmt(TOP + PLOT_H - value / top * PLOT_H)
        parts.append(Markup('<line x1="{}" x2="{}" y1="{}" y2="{}"/>').format(LEFT, WIDTH - RIGHT, y, y))
        parts.append(Markup('<text class="y" x="{}" y="{}" text-anchor="end">{}</text>').format(LEFT - 6, y, value))
    parts.append(Markup('</g><g class="plot">'))
    slot = PLOT_W / len(buckets)
    by_bucket: dict[int, list[Bar]] = {}
    for bar in drawn:
        by_bucket.setdefault(int((bar.x - LEFT) // slot), []).append(bar)
    rect = Markup('<rect class="{}" x="{}" y="{}" width="{}" height="{}"/>')
    for i, group in sorted(by_bucket.items()):
        b = buckets[i]
        tip = " · ".join(
            [_time_label(b.start, bucket_s)] + [f"{t(LABELS[c])} {getattr(b, c)}" for c in COUNTERS if getattr(b, c)]
        )
        parts.append(Markup("<g><title>{}</title>").format(tip))
        parts.extend(
            rect.format(bar.counter, _fmt(bar.x), _fmt(bar.y), _fmt(bar.width), _fmt(bar.height)) for bar in group
        )
        parts.append(Markup("</g>"))
    parts.append(Markup('</g><g class="axis"><line x1="{}" x2="{}" y1="{}" y2="{}"/>').format(
        LEFT, WIDTH - RIGHT, TOP + PLOT_H, TOP + PLOT_H))  # fmt: skip
    label = Markup('<text class="x" x="{}" y="{}">{}</text>')
    for i, text in ticks([b.start for b in buckets], bucket_s):
        parts.append(label.format(_fmt(LEFT + i * slot), HEIGHT - 8, text))
    parts.append(Markup("</g></svg>"))
    item = Markup('<li class="{}"><span class="swatch" aria-hidden="true"></span>{} <strong>{}</strong></li>')
    legend = Markup("").join(item.format(c, t(LABELS[c]), getattr(history, c)) for c in COUNTERS)
    return Markup(
        '<figure class="chart" id="{}">{}<figcaption><ul class="legend">{}</ul></figcaption></figure>'
    ).format(ident, Markup("").join(parts), legend)
