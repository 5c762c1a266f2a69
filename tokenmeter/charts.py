"""Cost-over-time charts for `tokenmeter report --chart`: HTML with inline SVG, or PNG."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tokenmeter.records import UsageRecord

__all__ = ["cost_series", "write_chart"]

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
_CHARTS_EXTRA = "pip install 'tokenmeter[charts]'"


def _bucket(records: Sequence[UsageRecord]) -> tuple[timedelta, str]:
    span = max(r.timestamp for r in records) - min(r.timestamp for r in records)
    if span <= timedelta(hours=6):
        return timedelta(minutes=10), "%H:%M"
    if span <= timedelta(days=3):
        return timedelta(hours=1), "%m-%d %H:00"
    return timedelta(days=1), "%Y-%m-%d"


def _floor(moment: datetime, size: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    steps = (moment - epoch) // size
    return epoch + steps * size


def cost_series(
    records: Iterable[UsageRecord], by: str = "agent"
) -> tuple[list[datetime], dict[str, list[Decimal]], str]:
    """Sum priced cost per time bucket and per agent or model.

    Returns the bucket start times, one list of costs per series aligned with them, and the
    strftime format that suits the bucket size. Turns split across models count each model's
    own cost when `by="model"`. More than nine series are folded into "other".
    """
    if by not in ("agent", "model"):
        raise ValueError(f"invalid chart grouping {by!r}: expected 'agent' or 'model'")
    items = list(records)
    if not items:
        return [], {}, "%Y-%m-%d"
    size, label_format = _bucket(items)

    totals: dict[str, dict[datetime, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for record in items:
        bucket = _floor(record.timestamp, size)
        if by == "model" and record.by_model:
            for part in record.by_model:
                if part.cost_usd is not None:
                    totals[part.model or "(none)"][bucket] += part.cost_usd
        elif record.cost_usd is not None:
            name = (record.agent if by == "agent" else record.model) or "(none)"
            totals[name][bucket] += record.cost_usd

    start = _floor(min(r.timestamp for r in items), size)
    end = _floor(max(r.timestamp for r in items), size)
    buckets = []
    moment = start
    while moment <= end:
        buckets.append(moment)
        moment += size

    ranked = sorted(totals, key=lambda name: -sum(totals[name].values()))
    series: dict[str, list[Decimal]] = {}
    for name in ranked[:_MAX_SERIES]:
        series[name] = [totals[name].get(b, Decimal(0)) for b in buckets]
    if len(ranked) > _MAX_SERIES:
        series["other"] = [
            sum((totals[name].get(b, Decimal(0)) for name in ranked[_MAX_SERIES:]), Decimal(0))
            for b in buckets
        ]
    return buckets, series, label_format


def _svg(
    buckets: list[datetime], series: dict[str, list[Decimal]], label_format: str, by: str
) -> str:
    width, height, left, bottom, top, right = 900, 420, 80, 60, 40, 200
    plot_w, plot_h = width - left - right, height - top - bottom
    stacked = [sum(values[i] for values in series.values()) for i in range(len(buckets))]
    peak = max(stacked, default=Decimal(0)) or Decimal(1)
    bar_w = plot_w / max(len(buckets), 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="24" font-size="16">Cost over time by {html.escape(by)} (USD)</text>',
    ]
    for step in range(5):
        value = peak * step / 4
        y = top + plot_h - float(value / peak) * plot_h
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">${value:.4f}</text>')

    for index, moment in enumerate(buckets):
        x = left + index * bar_w
        base = Decimal(0)
        for color, (name, values) in zip(_PALETTE, series.items(), strict=False):
            value = values[index]
            if value <= 0:
                continue
            y0 = top + plot_h - float((base + value) / peak) * plot_h
            h = float(value / peak) * plot_h
            title = f"{name} {moment.strftime(label_format)}: ${value}"
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{y0:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{html.escape(title)}</title></rect>'
            )
            base += value
        every = max(1, len(buckets) // 10)
        if index % every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
                f"{html.escape(moment.strftime(label_format))}</text>"
            )

    for index, (color, name) in enumerate(zip(_PALETTE, series, strict=False)):
        y = top + 10 + index * 20
        total = sum(series[name], Decimal(0))
        parts.append(
            f'<rect x="{left + plot_w + 16}" y="{y - 10}" width="12" height="12" fill="{color}"/>'
        )
        parts.append(
            f'<text x="{left + plot_w + 34}" y="{y}">{html.escape(name[:18])} ${total:.4f}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _write_png(
    path: Path, buckets: list[datetime], series: dict[str, list[Decimal]], by: str
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            f"a PNG chart needs matplotlib: {_CHARTS_EXTRA}, or write an .html chart instead"
        ) from error

    figure, axes = plt.subplots(figsize=(10, 4.5))
    bottom = [0.0] * len(buckets)
    for color, (name, values) in zip(_PALETTE, series.items(), strict=False):
        floats = [float(v) for v in values]
        axes.bar(
            buckets,  # type: ignore[arg-type]
            floats,
            bottom=bottom,
            label=name,
            color=color,
            width=0.8 * _width(buckets),
        )
        bottom = [b + v for b, v in zip(bottom, floats, strict=True)]
    axes.set_title(f"Cost over time by {by} (USD)")
    axes.set_ylabel("USD")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _width(buckets: list[datetime]) -> float:
    if len(buckets) < 2:
        return 1.0
    return (buckets[1] - buckets[0]) / timedelta(days=1)


def write_chart(records: Iterable[UsageRecord], path: str | Path, *, by: str = "agent") -> Path:
    """Draw priced cost over time, stacked by agent or model, to `path` (.html or .png).

    Unpriced turns are left out of the chart, because their cost is unknown.

    Raises:
        ValueError: if the suffix is neither `.html` nor `.png`, or `by` is invalid.
        ImportError: for `.png` without matplotlib, naming the extra to install.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".html", ".htm", ".png"):
        raise ValueError(
            f"invalid chart file {str(path)!r}: expected a name ending in .html or .png"
        )
    buckets, series, label_format = cost_series(records, by)
    if suffix == ".png":
        _write_png(path, buckets, series, by)
        return path

    svg = _svg(buckets, series, label_format, by) if buckets else "<p>No records.</p>"
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>tokenmeter cost</title></head>"
        f"<body>\n{svg}\n</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path
