"""The soak run's memory curve: one line per process kind through every sample, the axis above the largest
figure, the warm-up marked, and the same drawing from the CSV as from the sampler's own series."""

from __future__ import annotations

import csv
from pathlib import Path

from lxml import etree

from hub.devtools.rss_chart import HEIGHT, LEFT, PLOT_H, PLOT_W, TOP, main, nice_ceiling, read_series, rss_chart

SVG = "{http://www.w3.org/2000/svg}"
MB = 2**20


def points(svg: str, kind: str) -> list[tuple[float, float]]:
    root = etree.fromstring(svg.encode())
    (line,) = root.findall(f"{SVG}polyline[@data-kind='{kind}']")
    return [(float(x), float(y)) for x, y in (p.split(",") for p in line.get("points").split())]


def test_nice_ceiling() -> None:
    assert [nice_ceiling(v) for v in (0.4, 1, 3, 7, 12, 180, 501)] == [1, 1, 5, 10, 20, 200, 1000]


def test_a_line_per_kind_through_every_sample_with_a_flat_line_flat() -> None:
    series = {"api": [(0.0, 100 * MB), (30.0, 120 * MB), (60.0, 120 * MB)], "worker": [(0.0, 80 * MB), (60.0, 80 * MB)]}
    svg = rss_chart(series, title="Resident memory", subtitle="production shape")
    api, worker = points(svg, "api"), points(svg, "worker")
    assert len(api) == 3 and len(worker) == 2
    assert api[0][0] == LEFT and api[-1][0] == LEFT + PLOT_W  # the run spans the plot
    assert worker[0][1] == worker[1][1]  # no growth, no slope
    assert api[1][1] < api[0][1]  # more memory is higher up
    # the axis tops at 200 MB (the next 1-2-5 step above 120): 120 MB sits at 60 % of the plot's height
    assert abs(api[1][1] - (TOP + PLOT_H * 0.4)) < 0.2
    assert "warm-up ends" in svg and "api 120 MB" in svg and "worker 80 MB" in svg
    assert f'height="{HEIGHT}"' in svg and "production shape" in svg


def test_the_csv_draws_the_same_chart(tmp_path: Path) -> None:
    source = tmp_path / "rss.csv"
    with source.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["elapsed_s", "delivered", "kind", "pid", "rss_bytes"])
        for elapsed, api_a, api_b in ((0.0, 40, 50), (10.0, 45, 55)):  # two API processes: summed per sample
            out.writerow([elapsed, 0, "api", 1, api_a * MB])
            out.writerow([elapsed, 0, "api", 2, api_b * MB])
    assert read_series(source) == {"api": [(0.0, 90 * MB), (10.0, 100 * MB)]}
    assert main([str(source)]) == 0
    drawn = source.with_suffix(".svg").read_text()
    assert points(drawn, "api") == points(rss_chart(read_series(source), title="x"), "api")
