"""The resident memory of a soak run as one SVG line chart: a line per process kind (the summed RSS of its
processes), the warm-up marked, minutes across and MB up. ``hub bench --soak`` writes it beside its CSV, so the
report committed under ``docs/`` shows the curve and not only its end points; ``python -m
hub.devtools.rss_chart RSS.csv [OUT.svg]`` draws it again from the CSV.

Hand-written SVG: a dozen lines of polyline text, where a plotting library would be a large dependency of a
development tool.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape

from hub.devtools.bench_measure import WARMUP

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 150, 48, 40
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
COLOURS = {"api": "#1f77b4", "worker": "#d62728", "load": "#7f7f7f", "sink": "#2ca02c", "broker": "#9467bd"}
MB = 2**20


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10ⁿ at least ``value``: the top of an axis."""
    step = 1.0
    while step * 10 < value:
        step *= 10
    return next(step * f for f in (1, 2, 5, 10) if step * f >= value)


def read_series(path: Path) -> dict[str, list[tuple[float, int]]]:
    """Per kind, (elapsed s, summed RSS bytes) from a CSV that ``RssSampler`` wrote."""
    summed: dict[str, dict[float, int]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            at = summed.setdefault(row["kind"], {})
            elapsed = float(row["elapsed_s"])
            at[elapsed] = at.get(elapsed, 0) + int(row["rss_bytes"])
    return {kind: sorted(points.items()) for kind, points in summed.items()}


def rss_chart(series: Mapping[str, list[tuple[float, int]]], *, title: str, subtitle: str = "") -> str:
    """The SVG document (text) of ``series``: per kind, (elapsed s, summed RSS bytes)."""
    drawn = {kind: points for kind, points in series.items() if points}
    end_s = max((t for points in drawn.values() for t, _ in points), default=0.0) or 1.0
    top_mb = nice_ceiling(max((rss for points in drawn.values() for _, rss in points), default=MB) / MB)

    def x(seconds: float) -> float:
        return LEFT + seconds / end_s * PLOT_W

    def y(rss: float) -> float:
        return TOP + PLOT_H - rss / MB / top_mb * PLOT_H

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="18" font-size="13">{escape(title)}</text>',
        f'<text x="{LEFT}" y="34" fill="#666">{escape(subtitle)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#999"/>',
    ]
    for i in range(5):  # y grid: 0, ¼, ½, ¾ and all of the axis's top
        mb = top_mb * i / 4
        at = y(mb * MB)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{at:.1f}" y2="{at:.1f}" stroke="#eee"/>'
                   f'<text x="{LEFT - 6}" y="{at + 4:.1f}" text-anchor="end">{mb:g}</text>')  # fmt: skip
    for i in range(5):
        seconds = end_s * i / 4
        out.append(f'<text x="{x(seconds):.1f}" y="{TOP + PLOT_H + 16}" text-anchor="middle">{seconds / 60:.1f}'
                   "</text>")  # fmt: skip
    out.append(f'<text x="{LEFT + PLOT_W / 2}" y="{HEIGHT - 6}" text-anchor="middle">minutes</text>')
    out.append(f'<text x="14" y="{TOP + PLOT_H / 2}" transform="rotate(-90 14 {TOP + PLOT_H / 2})" '
               'text-anchor="middle">resident memory, MB</text>')  # fmt: skip
    warm = x(WARMUP * end_s)
    out.append(f'<line x1="{warm:.1f}" x2="{warm:.1f}" y1="{TOP}" y2="{TOP + PLOT_H}" stroke="#999" '
               'stroke-dasharray="4 3"/>'
               f'<text x="{warm + 3:.1f}" y="{TOP + 12}" fill="#666">warm-up ends</text>')  # fmt: skip
    for row, (kind, points) in enumerate(sorted(drawn.items())):
        colour = COLOURS.get(kind, "#000")
        path = " ".join(f"{x(t):.1f},{y(rss):.1f}" for t, rss in points)
        out.append(f'<polyline data-kind="{escape(kind)}" fill="none" stroke="{colour}" stroke-width="1.5" '
                   f'points="{path}"/>')  # fmt: skip
        legend_y = TOP + 14 + row * 18
        last_mb = points[-1][1] / MB
        out.append(f'<line x1="{LEFT + PLOT_W + 12}" x2="{LEFT + PLOT_W + 30}" y1="{legend_y - 4}" '
                   f'y2="{legend_y - 4}" stroke="{colour}" stroke-width="2"/><text x="{LEFT + PLOT_W + 36}" '
                   f'y="{legend_y}">{escape(kind)} {last_mb:,.0f} MB</text>')  # fmt: skip
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print("usage: python -m hub.devtools.rss_chart RSS.csv [OUT.svg]", file=sys.stderr)
        return 2
    source = Path(argv[0])
    target = Path(argv[1]) if len(argv) > 1 else source.with_suffix(".svg")
    target.write_text(rss_chart(read_series(source), title=f"Resident memory: {source.name}"))
    print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
