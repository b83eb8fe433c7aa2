"""``fleet_report``: one self-contained HTML page of the fleet's key figures, read from the marts.

The page has no external resource at all (inline CSS and SVG, no scripts, no fonts, no links), so
it opens from a mail attachment or an air-gapped share. It reads the serving copy, not the working
file, so it never takes the writer's lock. The marts evolve: every section finds its columns by
name patterns and says "no data yet" instead of failing when a mart or column is missing or empty.
"""

from __future__ import annotations

import html
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
from dagster import AssetKey, MaterializeResult, MetadataValue, asset

from fleet_pipeline import settings
from fleet_pipeline.ingest.source_assets import OWNERS
from fleet_pipeline.reporting.serving import SERVING_FILE

REPORT_FILE = "fleet_report.html"
# Share of a model's devices on its target firmware that counts as "rolled out".
FIRMWARE_TARGET_SHARE = 0.9
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
DAY_COLUMNS = ("day", "date", "utc_day", "partition_date", "snapshot_date", "activity_date")


@dataclass
class Section:
    title: str
    body: str  # HTML fragment
    figures: dict[str, Any] = field(default_factory=dict)


class Marts:
    """Read access to ``marts.<table>`` of the serving copy that tolerates absence."""

    def __init__(self, conn: duckdb.DuckDBPyConnection | None) -> None:
        self.conn = conn

    def columns(self, table: str) -> list[str]:
        if self.conn is None:
            return []
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'marts' "
            "AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        return [row[0] for row in rows]

    def query(self, sql: str) -> list[tuple]:
        assert self.conn is not None
        return self.conn.execute(sql).fetchall()


def pick(columns: Sequence[str], exact: Sequence[str] = (), contains: Sequence[str] = ()) -> str | None:
    """The first column named exactly like one of ``exact``, else the first containing all of one
    of the ``contains`` fragments (fragments separated by '+')."""
    lowered = {c.lower(): c for c in columns}
    for name in exact:
        if name in lowered:
            return lowered[name]
    for pattern in contains:
        parts = pattern.split("+")
        for column in columns:
            if all(part in column.lower() for part in parts):
                return column
    return None


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---- SVG -------------------------------------------------------------------------------------

def _fmt(value: float) -> str:
    # Counts (alarms, units) are whole numbers: "39 alarms", not "39.0 alarms".
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def line_chart(series: dict[str, list[tuple[str, float]]], unit: str, target: float | None = None,
               width: int = 720, height: int = 260) -> str:
    """Lines over a shared categorical x axis (days); ``target`` draws a dashed horizontal line."""
    xs = sorted({x for points in series.values() for x, _ in points})
    values = [v for points in series.values() for _, v in points] + ([target] if target is not None else [])
    if not xs or not values:
        return ""
    top = max(values) or 1.0
    left, bottom, pad = 60, 30, 10
    plot_w, plot_h = width - left - pad, height - bottom - pad

    def px(index: int) -> float:
        return left + (plot_w * index / max(len(xs) - 1, 1))

    def py(value: float) -> float:
        return pad + plot_h * (1 - value / top)

    # Inline SVG in HTML5 needs no xmlns, which keeps the page free of any URL.
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    parts.append(f'<line x1="{left}" y1="{py(0)}" x2="{width - pad}" y2="{py(0)}" stroke="#999"/>')
    parts.append(f'<text x="4" y="{py(top) + 4}" font-size="11">{_fmt(top)} {html.escape(unit)}</text>')
    parts.append(f'<text x="4" y="{py(0)}" font-size="11">0</text>')
    for index in sorted({0, len(xs) - 1}):
        # The last day's label ends at its point, so it is not cut off at the chart's right edge.
        anchor = "end" if index == len(xs) - 1 and index > 0 else "middle"
        parts.append(f'<text x="{px(index)}" y="{height - 8}" font-size="11" text-anchor="{anchor}">'
                     f'{html.escape(xs[index])}</text>')
    if target is not None:
        parts.append(f'<line x1="{left}" y1="{py(target)}" x2="{width - pad}" y2="{py(target)}" '
                     'stroke="#d62728" stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{width - pad - 90}" y="{py(target) - 4}" font-size="11" fill="#d62728">'
                     f'target {_fmt(target)} {html.escape(unit)}</text>')
    position = {x: i for i, x in enumerate(xs)}
    for number, (_name, points) in enumerate(sorted(series.items())):
        colour = PALETTE[number % len(PALETTE)]
        path = " ".join(f"{px(position[x]):.1f},{py(v):.1f}" for x, v in sorted(points))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        if len(points) == 1:
            x, v = points[0]
            parts.append(f'<circle cx="{px(position[x]):.1f}" cy="{py(v):.1f}" r="3" fill="{colour}"/>')
    parts.append("</svg>")
    legend = " ".join(
        f'<span class="key" style="color:{PALETTE[n % len(PALETTE)]}">&#9632; {html.escape(name)}</span>'
        for n, name in enumerate(sorted(series))
    )
    return "".join(parts) + (f'<div class="legend">{legend}</div>' if len(series) > 1 else "")


def bar_chart(bars: list[tuple[str, float]], unit: str, width: int = 720) -> str:
    if not bars:
        return ""
    top = max(v for _, v in bars) or 1.0
    row, label_w = 22, 160
    height = row * len(bars) + 10
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    for index, (label, value) in enumerate(bars):
        y = 5 + index * row
        bar_w = (width - label_w - 90) * value / top
        parts.append(f'<text x="0" y="{y + 14}" font-size="12">{html.escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w:.1f}" height="{row - 6}" fill="{PALETTE[0]}"/>')
        # "1 alarm", not "1 alarms"
        shown_unit = unit[:-1] if value == 1 and unit.endswith("s") else unit
        parts.append(f'<text x="{label_w + bar_w + 6:.1f}" y="{y + 14}" font-size="12">'
                     f'{_fmt(value)} {html.escape(shown_unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---- sections ----------------------------------------------------------------------------------

NO_DATA = '<p class="empty">no data yet</p>'


def _daily_sum(marts: Marts, table: str, value: str, day: str, scale: float = 1.0) -> list[tuple[str, float]]:
    rows = marts.query(
        f"SELECT CAST({q(day)} AS DATE)::VARCHAR, sum({q(value)}) FROM marts.{q(table)} "
        f"WHERE {q(value)} IS NOT NULL GROUP BY 1 ORDER BY 1"
    )
    return [(d, float(v) * scale) for d, v in rows if d is not None and v is not None]


def km_per_day(marts: Marts) -> Section:
    cols = marts.columns("mileage_daily")
    day = pick(cols, DAY_COLUMNS)
    km = pick(cols, ("distance_km", "km", "chosen_km", "km_chosen"), ("chosen+km", "km"))
    points = _daily_sum(marts, "mileage_daily", km, day) if day and km else []
    if not points:
        return Section("Kilometres per day", NO_DATA)
    total = sum(v for _, v in points)
    return Section("Kilometres per day", line_chart({"km": points}, "km"),
                   {"km_total": round(total, 1), "km_last_day": round(points[-1][1], 1)})


def parking_hours(marts: Marts) -> Section:
    cols = marts.columns("parking_daily")
    day = pick(cols, DAY_COLUMNS)
    seconds = pick(cols, ("parking_duration_s", "duration_s", "parked_s"), ("parking+_s", "duration_s"))
    hours = pick(cols, ("parking_hours", "parked_hours", "hours"), ("hours",))
    points: list[tuple[str, float]] = []
    if day and seconds:
        points = _daily_sum(marts, "parking_daily", seconds, day, 1 / 3600)
    elif day and hours:
        points = _daily_sum(marts, "parking_daily", hours, day)
    if not points:
        return Section("Parking hours per day", NO_DATA)
    return Section("Parking hours per day", line_chart({"parking h": points}, "h"),
                   {"parking_hours_total": round(sum(v for _, v in points), 1)})


def alarms_by_type(marts: Marts) -> Section:
    cols = marts.columns("alarms_daily")
    kind = pick(cols, ("alarm_type", "canonical_type", "canonical_alarm_type", "type"), ("type",))
    count = pick(cols, ("alarm_count", "alarms", "n_alarms", "count"), ("count",))
    if not kind:
        return Section("Alarms by type", NO_DATA)
    measure = f"sum({q(count)})" if count else "count(*)"
    rows = marts.query(f"SELECT {q(kind)}, {measure} FROM marts.alarms_daily GROUP BY 1 ORDER BY 2 DESC")
    bars = [(str(k), float(v)) for k, v in rows if v]
    if not bars:
        return Section("Alarms by type", NO_DATA)
    return Section("Alarms by type", bar_chart(bars, "alarms"),
                   {"alarms_total": int(sum(v for _, v in bars))})


def model_column(cols: Sequence[str]) -> str | None:
    return pick(cols, ("model_key", "model", "device_model", "model_name"), ("model",))


def firmware_adoption(marts: Marts) -> Section:
    title = f"Firmware adoption per model (share on target; target line {FIRMWARE_TARGET_SHARE:.0%})"
    cols = marts.columns("firmware_rollout")
    day = pick(cols, DAY_COLUMNS)
    model = model_column(cols)
    share = pick(cols, ("share_on_target", "target_share", "share_on_target_pct"), ("share+target", "share"))
    if not (day and model and share):
        return Section(title, NO_DATA)
    # One share per model and day: the rows per version repeat it, so take the maximum.
    rows = marts.query(
        f"SELECT {q(model)}, CAST({q(day)} AS DATE)::VARCHAR, max({q(share)}) FROM marts.firmware_rollout "
        f"WHERE {q(share)} IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"
    )
    series: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for name, d, value in rows:
        series[str(name)].append((d, float(value)))
    if not series:
        return Section(title, NO_DATA)
    scale_pct = max(v for points in series.values() for _, v in points) > 1.0
    target = FIRMWARE_TARGET_SHARE * (100 if scale_pct else 1)
    latest = {name: points[-1][1] for name, points in series.items()}
    # Drawn in per cent whichever way the mart stores it, as the title words the target.
    to_pct = 1 if scale_pct else 100
    percent = {name: [(d, v * to_pct) for d, v in points] for name, points in series.items()}
    return Section(title, line_chart(percent, "%", target=FIRMWARE_TARGET_SHARE * 100),
                   {"models_at_target": sum(1 for v in latest.values() if v >= target), "models": len(latest)})


def ota_success(marts: Marts) -> Section:
    cols = marts.columns("firmware_rollout")
    rate = pick(cols, ("ota_success_rate", "success_rate"), ("success+rate",))
    succeeded = pick(cols, ("attempts_success", "ota_succeeded", "attempts_succeeded", "ota_attempts_succeeded"),
                     ("succe",))
    attempts = pick(cols, ("ota_attempts", "attempts", "ota_attempts_total"), ("attempt",))
    model, day = model_column(cols), pick(cols, DAY_COLUMNS)
    # The attempt counts are per model and day, repeated on each version row of that model-day.
    per_model_day = (f"(SELECT DISTINCT {q(model)}, {q(day)}, {q(succeeded)}, {q(attempts)} FROM marts.firmware_rollout)"
                     if model and day else "marts.firmware_rollout")
    if succeeded and attempts and succeeded != attempts:
        row = marts.query(f"SELECT sum({q(succeeded)}), sum({q(attempts)}) FROM {per_model_day}")[0]
        if row[1]:
            value = float(row[0] or 0) / float(row[1])
            return Section("OTA success rate", f'<p class="big">{value:.1%}</p>'
                           f"<p>{int(row[0] or 0):,} successful of {int(row[1]):,} attempts</p>",
                           {"ota_success_rate": round(value, 4), "ota_attempts": int(row[1])})
    if rate:
        row = marts.query(f"SELECT avg({q(rate)}) FROM marts.firmware_rollout WHERE {q(rate)} IS NOT NULL")[0]
        if row[0] is not None:
            value = float(row[0])
            value = value / 100 if value > 1 else value
            return Section("OTA success rate", f'<p class="big">{value:.1%}</p><p>mean over models and days</p>',
                           {"ota_success_rate": round(value, 4)})
    return Section("OTA success rate", NO_DATA)


def stock_vs_activations(marts: Marts) -> Section:
    cols = marts.columns("stock_daily")
    day = pick(cols, DAY_COLUMNS)
    stock = pick(cols, ("stock_on_hand", "on_hand", "stock", "quantity_on_hand"), ("stock", "on_hand"))
    activations = pick(cols, ("activations", "activated_devices", "n_activations"), ("activation",))
    series: dict[str, list[tuple[str, float]]] = {}
    if day and stock:
        series["stock on hand"] = _daily_sum(marts, "stock_daily", stock, day)
    if day and activations:
        series["activations"] = _daily_sum(marts, "stock_daily", activations, day)
    series = {name: points for name, points in series.items() if points}
    if not series:
        return Section("Stock on hand vs activations", NO_DATA)
    figures = {f"{name.replace(' ', '_')}_last_day": points[-1][1] for name, points in series.items()}
    return Section("Stock on hand vs activations", line_chart(series, "units"), figures)


SECTIONS = (km_per_day, parking_hours, alarms_by_type, firmware_adoption, ota_success, stock_vs_activations)

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:800px}
h1{font-size:1.6em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.empty{color:#888;font-style:italic} .big{font-size:2em;margin:.2em 0} .legend{font-size:12px}
.key{margin-right:1em} .meta{color:#666;font-size:.9em}
"""


def build_sections(marts: Marts) -> list[Section]:
    sections = []
    for build in SECTIONS:
        try:
            sections.append(build(marts))
        except duckdb.Error as exc:
            # A mart whose shape this page does not understand must not hide the others.
            name = build.__name__.replace("_", " ")
            sections.append(Section(name, f'<p class="empty">no data yet ({html.escape(type(exc).__name__)})</p>'))
    return sections


def render(sections: list[Section], source: Path, generated_at: datetime) -> str:
    body = "\n".join(f"<section><h2>{html.escape(s.title)}</h2>{s.body}</section>" for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Fleet report</title>"
        f"<style>{STYLE}</style></head><body><h1>Fleet report</h1>"
        f'<p class="meta">Generated {generated_at:%Y-%m-%d %H:%M} UTC from {html.escape(source.name)}</p>'
        f"{body}</body></html>\n"
    )


def write_report(serving_db: Path, destination: Path, now: datetime | None = None) -> list[Section]:
    """Render the report from ``serving_db`` (which may not exist yet) into ``destination``,
    replacing it atomically."""
    generated_at = now or datetime.now(timezone.utc).replace(tzinfo=None)
    if serving_db.exists():
        with duckdb.connect(str(serving_db), read_only=True) as conn:
            sections = build_sections(Marts(conn))
    else:
        sections = build_sections(Marts(None))
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    partial.write_text(render(sections, serving_db, generated_at), encoding="utf-8")
    os.replace(partial, destination)
    return sections


def _figures_markdown(sections: list[Section]) -> str:
    lines = ["| section | figure | value |", "|---|---|---:|"]
    for section in sections:
        for name, value in section.figures.items():
            lines.append(f"| {section.title} | {name} | {value:,} |" if isinstance(value, (int, float))
                         else f"| {section.title} | {name} | {value} |")
        if not section.figures:
            lines.append(f"| {section.title} | - | no data yet |")
    return "\n".join(lines)


@asset(
    name="fleet_report",
    group_name="serving",
    deps=[AssetKey("serving_copy")],
    owners=OWNERS,
    kinds={"python", "html"},
    description="Self-contained HTML report (reports/fleet_report.html) of km, parking, alarms, "
    "firmware rollout, OTA success and stock, read from the serving copy.",
)
def fleet_report(context) -> MaterializeResult:  # untyped context: string annotations are not resolved
    destination = settings.reports_dir() / REPORT_FILE
    sections = write_report(settings.serving_dir() / SERVING_FILE, destination)
    empty = [s.title for s in sections if not s.figures]
    if empty:
        context.log.info("sections without data yet: " + ", ".join(empty))
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(destination)),
            "sections_with_data": MetadataValue.int(len(sections) - len(empty)),
            "key_figures": MetadataValue.md(_figures_markdown(sections)),
        }
    )
