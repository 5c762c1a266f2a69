"""Cost-over-time charts for `tokenmeter report --chart`: HTML with inline SVG, or PNG."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

from tokenmeter.records import UsageRecord

__all__ = [
    "CHART_SUFFIXES",
    "CostOverTime",
    "CostSeries",
    "check_chart_path",
    "cost_series",
    "write_chart",
]

ChartGrouping = Literal["agent", "model"]

CHART_SUFFIXES = (".html", ".htm", ".png")

_PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
_MAX_SERIES = len(_PALETTE) - 1
"""Series drawn on their own; the rest are summed into one `other` series."""
_OTHER = "other"
_NO_VALUE = "(none)"
_CHARTS_EXTRA = "pip install 'tokenmeter[charts]'"

_BASE_BUCKET = timedelta(minutes=10)
"""The finest time step, which every coarser step below is a multiple of."""
_BASE_BUCKET_S = int(_BASE_BUCKET.total_seconds())
# The widest span each bucket size serves, keeping a chart to about 36 to 180 bars.
_BUCKETS = (
    (timedelta(hours=6), timedelta(minutes=10), "%H:%M"),
    (timedelta(days=3), timedelta(hours=1), "%m-%d %H:00"),
    (timedelta(days=180), timedelta(days=1), "%Y-%m-%d"),
)
_WEEK = (timedelta(weeks=1), "%Y-%m-%d")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# 1970-01-05 was a Monday, so weekly buckets start on Mondays.
_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)


def check_chart_path(path: str | Path) -> Path:
    """Return `path` as a `Path` if a chart can be written there, before any data is read.

    Raises:
        ValueError: if the suffix is not `.html`, `.htm` or `.png`.
        ImportError: for `.png` without matplotlib, naming the extra to install.
    """
    chart_path = Path(path)
    suffix = chart_path.suffix.lower()
    if suffix not in CHART_SUFFIXES:
        raise ValueError(
            f"invalid chart file {str(chart_path)!r}: expected a name ending in .html or .png"
        )
    if suffix == ".png":
        _import_figure()
    return chart_path


def _floor(moment: datetime, size: timedelta, origin: datetime = _EPOCH) -> datetime:
    return origin + ((moment - origin) // size) * size


@dataclass(frozen=True)
class CostSeries:
    """Priced cost per time bucket, one list of costs per agent or model."""

    buckets: list[datetime]
    """Start of each bucket, in UTC, evenly spaced."""
    bucket_size: timedelta
    label_format: str
    """`strftime` format that suits the bucket size, for axis labels."""
    series: dict[str, list[Decimal]]
    """Costs aligned with `buckets`, most expensive series first; `other` comes last."""
    by: ChartGrouping
    unpriced_turns: int
    """Turns left out of the chart because their cost is unknown."""


class CostOverTime:
    """Sums priced cost per agent or model and time, one record at a time.

    Memory grows with the number of ten-minute steps that had a cost times the number of
    agents or models, not with the number of records.
    """

    def __init__(self, by: str = "agent") -> None:
        if by not in ("agent", "model"):
            raise ValueError(f"invalid chart grouping {by!r}: expected 'agent' or 'model'")
        self.by: ChartGrouping = "agent" if by == "agent" else "model"
        self.unpriced_turns = 0
        self._first: datetime | None = None
        self._last: datetime | None = None
        # Keyed by the start of each ten-minute step in whole seconds since the epoch, which
        # costs a third of the time of datetime arithmetic per record.
        self._costs: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))

    def add(self, record: UsageRecord) -> None:
        """Count the priced cost of one record; turns with an unknown cost are counted apart."""
        if record.rounds == 0:
            return
        moment = record.timestamp
        if self._first is None or moment < self._first:
            self._first = moment
        if self._last is None or moment > self._last:
            self._last = moment
        bucket = int(moment.timestamp()) // _BASE_BUCKET_S * _BASE_BUCKET_S

        if self.by == "model" and record.by_model:
            unpriced = False
            for part in record.by_model:
                if part.cost_usd is None:
                    unpriced = True
                    continue
                self._costs[part.model or _NO_VALUE][bucket] += part.cost_usd
            self.unpriced_turns += unpriced
            return

        cost = record.cost_usd
        if cost is None:
            # A partly priced turn still adds the cost of the models that have a price.
            self.unpriced_turns += 1
            known = [part.cost_usd for part in record.by_model if part.cost_usd is not None]
            if not known:
                return
            cost = sum(known, Decimal(0))
        name = (record.agent if self.by == "agent" else record.model) or _NO_VALUE
        self._costs[name][bucket] += cost

    def series(self) -> CostSeries:
        """Sum the counted costs into buckets sized for the time span of the records."""
        if self._first is None or self._last is None:
            return CostSeries([], _BASE_BUCKET, "%Y-%m-%d", {}, self.by, self.unpriced_turns)

        size, label_format = _bucket_size(self._last - self._first)
        origin = _MONDAY if size == _WEEK[0] else _EPOCH
        start = _floor(self._first, size, origin)
        count = (_floor(self._last, size, origin) - start) // size + 1
        buckets = [start + index * size for index in range(count)]

        # Fold the ten-minute sums into the chosen buckets, by index.
        totals: dict[str, list[Decimal]] = {}
        for name, by_time in self._costs.items():
            values = [Decimal(0)] * count
            for seconds, cost in by_time.items():
                moment = _EPOCH + timedelta(seconds=seconds)
                values[(moment - start) // size] += cost
            totals[name] = values

        ranked = sorted(totals, key=lambda name: (-sum(totals[name], Decimal(0)), name))
        series = {name: totals[name] for name in ranked[:_MAX_SERIES]}
        if len(ranked) > _MAX_SERIES:
            rest = ranked[_MAX_SERIES:]
            series[_OTHER] = [
                sum((totals[name][index] for name in rest), Decimal(0)) for index in range(count)
            ]
        return CostSeries(buckets, size, label_format, series, self.by, self.unpriced_turns)

    def write(self, path: str | Path) -> Path:
        """Draw the chart to `path`; see `write_chart`."""
        chart_path = check_chart_path(path)
        data = self.series()
        if chart_path.suffix.lower() == ".png":
            _write_png(chart_path, data)
        else:
            chart_path.write_text(_html_page(data), encoding="utf-8")
        return chart_path


def _bucket_size(span: timedelta) -> tuple[timedelta, str]:
    for widest, size, label_format in _BUCKETS:
        if span <= widest:
            return size, label_format
    return _WEEK


def cost_series(records: Iterable[UsageRecord], by: str = "agent") -> CostSeries:
    """Sum priced cost per time bucket and per agent or model.

    The bucket is ten minutes, an hour, a day or a week, whichever keeps the chart readable
    for the records' time span. With `by="model"`, a turn that several models served adds
    each model's own cost. More than nine series are folded into `other`.

    Raises:
        ValueError: if `by` is neither `agent` nor `model`.
    """
    accumulator = CostOverTime(by)
    for record in records:
        accumulator.add(record)
    return accumulator.series()


def write_chart(records: Iterable[UsageRecord], path: str | Path, *, by: str = "agent") -> Path:
    """Draw priced cost over time, stacked by agent or model, to `path` (.html or .png).

    Turns whose cost is unknown are left out, and the chart's subtitle gives their number.

    Raises:
        ValueError: if the suffix is neither `.html` nor `.png`, or `by` is invalid.
        ImportError: for `.png` without matplotlib, naming the extra to install.
    """
    chart_path = check_chart_path(path)
    accumulator = CostOverTime(by)
    for record in records:
        accumulator.add(record)
    return accumulator.write(chart_path)


def _title(data: CostSeries) -> str:
    return f"Cost over time by {data.by} (USD)"


def _subtitle(data: CostSeries) -> str:
    first = data.buckets[0]
    last = data.buckets[-1] + data.bucket_size
    text = f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
    if data.unpriced_turns == 1:
        text += "; 1 turn without a known cost is left out"
    elif data.unpriced_turns:
        text += f"; {data.unpriced_turns:,} turns without a known cost are left out"
    return text


def _html_page(data: CostSeries) -> str:
    body = _svg(data) if data.buckets else "<p>No turns to chart.</p>"
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>tokenmeter: {html.escape(_title(data))}</title></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _svg(data: CostSeries) -> str:
    width, height, left, bottom, top, right = 900, 440, 80, 60, 60, 220
    plot_w, plot_h = width - left - right, height - top - bottom
    count = len(data.buckets)
    stacked = [
        sum((values[i] for values in data.series.values()), Decimal(0)) for i in range(count)
    ]
    peak = max(stacked, default=Decimal(0)) or Decimal(1)
    bar_w = plot_w / count

    def y_of(value: Decimal) -> float:
        return top + plot_h - float(value / peak) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="22" font-size="16">{html.escape(_title(data))}</text>',
        f'<text x="{left}" y="42" fill="#555">{html.escape(_subtitle(data))}</text>',
    ]
    for step in range(5):
        value = peak * step / 4
        y = y_of(value)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">${value:.4f}</text>')

    label_every = max(1, count // 8)
    for index, moment in enumerate(data.buckets):
        x = left + index * bar_w
        base = Decimal(0)
        for color, (name, values) in zip(_PALETTE, data.series.items(), strict=False):
            value = values[index]
            if value <= 0:
                continue
            bar_top = y_of(base + value)
            bar_h = y_of(base) - bar_top
            title = f"{name}, {moment:%Y-%m-%d %H:%M} UTC: ${value}"
            parts.append(
                f'<rect x="{x + 0.5:.1f}" y="{bar_top:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
                f'height="{bar_h:.1f}" fill="{color}"><title>{html.escape(title)}</title></rect>'
            )
            base += value
        if index % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
                f"{html.escape(moment.strftime(data.label_format))}</text>"
            )

    for index, (color, name) in enumerate(zip(_PALETTE, data.series, strict=False)):
        y = top + 10 + index * 20
        total = sum(data.series[name], Decimal(0))
        label = name if len(name) <= 24 else name[:23] + "…"
        parts.append(
            f'<rect class="legend" x="{left + plot_w + 16}" y="{y - 10}" width="12" height="12" '
            f'fill="{color}">'
            f"<title>{html.escape(name)}</title></rect>"
        )
        parts.append(
            f'<text x="{left + plot_w + 34}" y="{y}">{html.escape(label)} ${total:.4f}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _import_figure() -> type:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            f"a PNG chart needs matplotlib: {_CHARTS_EXTRA}, or write an .html chart instead"
        ) from error
    return Figure


def _write_png(path: Path, data: CostSeries) -> None:
    # A bare Figure draws with the Agg canvas and leaves pyplot's global backend alone, which
    # matters in a notebook that has chosen its own.
    figure_class = _import_figure()
    figure = figure_class(figsize=(10, 4.5), dpi=100)
    axes = figure.add_subplot()

    # Bars are placed by index, since matplotlib's date units would need float days.
    positions = list(range(len(data.buckets)))
    bottom = [0.0] * len(positions)
    for color, (name, values) in zip(_PALETTE, data.series.items(), strict=False):
        heights = [float(value) for value in values]
        axes.bar(positions, heights, bottom=bottom, label=name, color=color, width=0.9)
        bottom = [base + height for base, height in zip(bottom, heights, strict=True)]

    label_every = max(1, len(positions) // 8)
    axes.set_xticks(positions[::label_every])
    axes.set_xticklabels(
        [moment.strftime(data.label_format) for moment in data.buckets[::label_every]],
        rotation=30,
        ha="right",
    )
    axes.set_title(_title(data) + ("\n" + _subtitle(data) if data.buckets else ""))
    axes.set_ylabel("USD")
    if data.series:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    else:
        axes.text(0.5, 0.5, "No turns to chart", ha="center", transform=axes.transAxes)
    figure.tight_layout()
    figure.savefig(path, format="png")
