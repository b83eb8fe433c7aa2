"""``fleet_report``: one self-contained HTML file of the fleet's trends, read from the marts.

The charts are plotly's, drawn by plotly.js written inline into the file (no CDN, no font, no
link): the page opens from a mail attachment or an air-gapped share, with tooltips, zoom and
legends. Each chart's figure is embedded as JSON (``<script type="application/json"
class="chart-figure">``), which is what the page draws and what the tests read. The page reads the
serving copy, never the working file, so it never takes the writer's lock; a mart that is not
built yet gets a line saying so instead of a chart, and the other sections still render.

The figures themselves are defined once, in ``figures.py``, and shared with the marts' Dagster
metadata; their formats come from ``formats.py``.
"""

import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import plotly.graph_objects as go
from dagster import AssetKey, Config, MaterializeResult, MetadataValue, asset
from plotly.offline import get_plotlyjs
from pydantic import Field

from fleet_pipeline import settings
from fleet_pipeline.ingest.source_assets import OWNERS
from fleet_pipeline.reporting import figures, formats
from fleet_pipeline.reporting.figures import Marts, Measure, NotBuilt, Window
from fleet_pipeline.reporting.formats import Unit
from fleet_pipeline.reporting.serving import SERVING_FILE

REPORT_FILE = "fleet_report.html"
# Share of a model's devices on its target firmware that counts as "rolled out".
FIRMWARE_TARGET_SHARE = 0.9
# Colour-blind-safe (Okabe-Ito, its yellow swapped for colours that read on white); a series keeps
# its colour in every chart of the page.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#882255", "#000000", "#999933",
           "#117733")
# Values written beside the points while a chart stays readable with them (a screenshot or a
# print shows no tooltip).
LABELLED_MAX_DAYS, LABELLED_MAX_SERIES = 14, 4
# No "Share chart" button (plotly.js 4 uploads the chart to its cloud from it) and no server to
# send to: the report's data stays in the file.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "showSendToCloud": False, "plotlyServerURL": "",
                 "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d", "sendChartToCloud"]}


@dataclass
class Section:
    key: str
    title: str
    explanation: str
    figure: dict[str, Any] | None = None  # plotly figure (data, layout); None = no chart
    status: str | None = None              # why there is no chart: "utilisation_daily not built yet"
    figures: dict[str, Any] = field(default_factory=dict)  # key figures for the asset's metadata
    extra_html: str = ""


class Colours:
    """A colour per series name, the same in every chart."""

    def __init__(self) -> None:
        self._given: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name not in self._given:
            self._given[name] = PALETTE[len(self._given) % len(PALETTE)]
        return self._given[name]


def _axis_days(window: Window) -> dict[str, Any]:
    axis: dict[str, Any] = {"type": "date", "tickformat": formats.DATE_FORMAT, "title": {"text": "UTC day"},
                            "showgrid": True}
    if window.first is not None and window.last is not None:
        # Half a day of margin each side, so the first and last points are not on the frame.
        axis["range"] = [_half_day_before(window.first), _half_day_after(window.last)]
        if len(window.days()) <= LABELLED_MAX_DAYS:
            axis["dtick"] = 86_400_000  # one tick a day, in ms: no "12:00" ticks on a short window
    return axis


def _half_day_before(day: date) -> str:
    return f"{date.fromordinal(day.toordinal() - 1).isoformat()} 12:00"


def _half_day_after(day: date) -> str:
    return f"{day.isoformat()} 12:00"


def _layout(unit: Unit, x_axis: dict[str, Any], *, height: int = 360, **extra: Any) -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 70, "r": 20, "t": 20, "b": 60},
        "yaxis": {"title": {"text": unit.axis_title}, "tickformat": unit.d3, "rangemode": "tozero",
                  "zeroline": True},
        "xaxis": x_axis,
        "legend": {"orientation": "h", "y": -0.25},
        "hovermode": "closest",
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        "plot_bgcolor": "#fafafa",
        **extra,
    }


def line_figure(series: dict[str, dict[date, float]], unit: Unit, window: Window, colours: Colours,
                target: float | None = None) -> dict[str, Any]:
    """One line per series over the window's days, values in tooltips (and beside the points on
    a short window), an optional dashed target line."""
    labelled = len(window.days()) <= LABELLED_MAX_DAYS and len(series) <= LABELLED_MAX_SERIES
    fig = go.Figure()
    for number, name in enumerate(sorted(series)):
        days = sorted(series[name])
        fig.add_trace(go.Scatter(
            x=[d.isoformat() for d in days], y=[series[name][d] for d in days], name=name,
            mode="lines+markers+text" if labelled else "lines+markers",
            line={"color": colours(name), "width": 2}, marker={"size": 7},
            # The number alone (the axis names the unit), above and below the line by turns so
            # that two close lines do not write over each other.
            text=[_number(unit, series[name][d]) for d in days] if labelled else None,
            textposition="top center" if number % 2 == 0 else "bottom center",
            textfont={"size": 11, "color": colours(name)}, cliponaxis=False,
            hovertemplate=unit.hover()))
    shapes = []
    if target is not None:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": target, "y1": target,
                       "line": {"color": "#D55E00", "dash": "dash", "width": 1.5}})
    fig.update_layout(**_layout(unit, _axis_days(window), shapes=shapes, showlegend=True))
    if target is not None:
        fig.add_annotation(xref="paper", x=1, y=target, yanchor="bottom", xanchor="right", showarrow=False,
                           text=f"target {unit.text(target)}", font={"color": "#D55E00"})
    return fig.to_plotly_json()


def bar_figure(bars: dict[str, dict[str, float]], unit: Unit, colours: Colours) -> dict[str, Any]:
    """Grouped bars: category -> series -> value, the value written on each bar."""
    categories = sorted(bars, key=lambda c: (-sum(bars[c].values()), c))
    names = sorted({name for values in bars.values() for name in values})
    fig = go.Figure()
    for name in names:
        fig.add_trace(go.Bar(
            x=categories, y=[bars[c].get(name, 0) for c in categories], name=name,
            marker={"color": colours(name)}, text=[unit.text(bars[c][name]) if bars[c].get(name) else "" for c in categories],
            textposition="outside", cliponaxis=False,
            hovertemplate=f"%{{x}}<br>%{{fullData.name}}: %{{y:{unit.d3}}} {unit.label}<extra></extra>"))
    fig.update_layout(**_layout(unit, {"type": "category", "title": {"text": "type"}}, barmode="group",
                                showlegend=True))
    return fig.to_plotly_json()


# ---- sections ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SectionSpec:
    key: str
    title: str
    explanation: str
    # Fills the section's figure and key figures; raises NotBuilt when its mart is missing.
    fill: Callable[[Section, Marts, Window, Colours], None]
    snapshots: bool = False  # drawn up to the newest snapshot day (figures.with_snapshots)


def _totals(measure: Measure, series: dict[str, dict[date, float]]) -> dict[str, Any]:
    return {f"{measure.key}_total": measure.unit.round(sum(v for days in series.values() for v in days.values()))}


def _lines(measure: Measure, totals: Callable[[Marts, Window, dict], dict[str, Any]] | None = None):
    """A section filler drawing ``measure`` per day, one line per vendor (and account)."""
    def fill(section: Section, marts: Marts, window: Window, colours: Colours) -> None:
        series = measure.per_day(marts, window)
        if series:
            section.figure = line_figure(series, measure.unit, window, colours)
            section.figures = totals(marts, window, series) if totals else _totals(measure, series)
    return fill


def _share_total(measure: Measure):
    return lambda marts, window, series: {measure.key: measure.total(marts, window)}


def _alarms_per_100_km(section: Section, marts: Marts, window: Window, colours: Colours) -> None:
    rates = figures.per_100_km(figures.ALARMS.per_day(marts, window), figures.KM.per_day(marts, window))
    if rates:
        section.figure = line_figure(rates, formats.PER_100_KM, window, colours)
        section.figures = {"alarms_per_100km": figures.rate_per_100_km(
            figures.ALARMS.total(marts, window), figures.KM.total(marts, window))}


def _alarms_by_type(section: Section, marts: Marts, window: Window, colours: Colours) -> None:
    bars: dict[str, dict[str, float]] = {}
    for name, value in figures.ALARMS_BY_TYPE.per_group(marts, window).items():
        kind, _, group = name.partition(figures.GROUP_SEPARATOR)
        bars.setdefault(kind, {})[group] = value
    if bars:
        section.figure = bar_figure(bars, figures.ALARMS_BY_TYPE.unit, colours)
        section.figures = {"alarms_total": int(figures.ALARMS.total(marts, window) or 0)}


def _rollout(section: Section, marts: Marts, window: Window, colours: Colours) -> None:
    series = figures.ROLLOUT.per_day(marts, window)
    if not series:
        return
    section.figure = line_figure(series, figures.ROLLOUT.unit, window, colours, target=FIRMWARE_TARGET_SHARE)
    latest = {name: days[max(days)] for name, days in series.items()}
    section.figures = {"models": len(latest),
                       "models_at_target": sum(v >= FIRMWARE_TARGET_SHARE for v in latest.values())}
    success, attempts = figures.ota_outcomes(marts, window)
    if attempts:
        rate = success / attempts
        section.figures["ota_success_rate"] = formats.SHARE.round(rate)
        section.extra_html = (f"<p>OTA attempts in the window: {formats.cell(attempts)}, successful "
                              f"{formats.cell(success)} ({formats.SHARE.text(rate)}).</p>")


def _stock_last_day(marts: Marts, window: Window, series: dict[str, dict[date, float]]) -> dict[str, Any]:
    return {"units_on_hand_last_day": int(sum(days[max(days)] for days in series.values()))}


SECTIONS = (
    SectionSpec("km", "Kilometres per day",
                "Km driven per UTC day and vendor: each device-day's chosen figure of mileage_daily (odometer, "
                "else trips, else track points); blocked trackers have no known km and are left out.",
                _lines(figures.KM)),
    SectionSpec("utilisation", "Utilisation: share of devices used per day",
                "Devices used that day (utilisation_daily.is_used) over the devices with a row that day, "
                "per vendor.", _lines(figures.UTILISATION, _share_total(figures.UTILISATION))),
    SectionSpec("idle_share", "Idle share of engine-on time per day",
                "Seconds idling (engine on, not driving) over seconds with the engine on, summed over the "
                "vendor's devices that day (utilisation_daily: idle_s / engine_on_s).",
                _lines(figures.IDLE_SHARE, _share_total(figures.IDLE_SHARE))),
    SectionSpec("alarms_per_100km", "Alarms per 100 km per day",
                "Alarms (alarms_daily without ignition and trip events) per 100 km driven (mileage_daily), "
                "per vendor and UTC day; a day without km has no rate.", _alarms_per_100_km),
    SectionSpec("alarms_by_type", "Alarms by type",
                "Alarms in the window per canonical type and vendor (seed alarm_type_map; 'other' is a vendor "
                "code not mapped yet). Ignition and trip events are not alarms: they have their own section.",
                _alarms_by_type),
    SectionSpec("events", "Ignition and trip events per day",
                "Ignition on/off and trip start/end events per vendor and UTC day (Navixy reports them in its "
                "event feed beside its alarms), counted apart from the alarms.",
                _lines(figures.EVENTS_BY_TYPE, lambda marts, window, series: {
                    "ignition_trip_events_total": int(figures.EVENTS.total(marts, window) or 0)})),
    SectionSpec("parking", "Parking hours per day",
                "Hours parked with the ignition off within each UTC day (parking_daily), per vendor.",
                _lines(figures.PARKING_HOURS)),
    SectionSpec("rollout", "Firmware rollout per model",
                "Share of each model's devices of known version that run its target firmware, per UTC day "
                f"with a device snapshot (firmware_rollout); the dashed line is the {FIRMWARE_TARGET_SHARE:.0%} "
                "that counts as rolled out.", _rollout, snapshots=True),
    SectionSpec("stock", "Stock on hand per product",
                "Units in stock per product at each day's Telesto snapshot (stock_daily); a day without a "
                "snapshot or without a figure has no point.", _lines(figures.STOCK, _stock_last_day), snapshots=True),
)

# The table at the top: per vendor (and account), the window's figures.
SUMMARY = (figures.KM, figures.ALARMS, figures.EVENTS, figures.UTILISATION, figures.IDLE_SHARE)


def summary_table(marts: Marts, window: Window) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table at the top: per vendor (and account), the window's figures;
    measures of marts not built yet are left out."""
    values: dict[str, dict[str, float]] = {}
    shown: list[Measure] = []
    for measure in SUMMARY:
        try:
            per_group = measure.per_group(marts, window)
        except NotBuilt:
            continue
        shown.append(measure)
        for name, value in per_group.items():
            values.setdefault(name, {})[measure.key] = value
    if not values:
        return [], []
    header = ["vendor", *(m.title if m.unit.label and m.unit.label in m.title.lower() else f"{m.title} ({m.unit.axis_title})"
                          for m in shown)]
    rate = figures.KM in shown and figures.ALARMS in shown
    if rate:
        header.append("Alarms per 100 km")
    rows = []
    for name in sorted(values):
        row = [name, *(_number(m.unit, values[name].get(m.key)) for m in shown)]
        if rate:
            row.append(_number(formats.PER_100_KM, figures.rate_per_100_km(
                values[name].get(figures.ALARMS.key), values[name].get(figures.KM.key))))
        rows.append(row)
    return header, rows


def _number(unit: Unit, value: float | None) -> str:
    """The value as the unit writes it, without the unit (the column header names it)."""
    text = unit.text(value)
    return text.removesuffix(f" {unit.label}") if unit.label and not unit.share else text.removesuffix("%")


def build_sections(marts: Marts, window: Window, snapshots: Window | None = None) -> list[Section]:
    """Every section over ``window``; those of snapshot marts over ``snapshots`` (default: the same)."""
    colours = Colours()
    sections = []
    for spec in SECTIONS:
        section = Section(spec.key, spec.title, spec.explanation)
        try:
            spec.fill(section, marts, (snapshots or window) if spec.snapshots else window, colours)
            if section.figure is None:
                section.status = "no data in this window"
        except NotBuilt as missing:
            section.status = str(missing)
        except duckdb.Error as exc:
            # A mart whose shape this page does not understand must not hide the others.
            section.status = f"could not be read ({type(exc).__name__}: {exc})"
        sections.append(section)
    return sections


# ---- the page ----------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;color:#222;max-width:1100px;
padding:0 1em} h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
.meta{color:#555} .explain{color:#444;font-size:.92em;margin:.3em 0 .6em} .empty{color:#888;font-style:italic}
table{border-collapse:collapse;font-size:.92em} th,td{padding:.3em .8em;border-bottom:1px solid #e5e5e5}
th{text-align:left;background:#f4f4f4} td.n{text-align:right;font-variant-numeric:tabular-nums}
nav a{margin-right:1em;font-size:.9em}
"""

# Draws every chart from its embedded figure; plotly.js is inline above it.
RENDER_SCRIPT = (
    'var config = ' + json.dumps(PLOTLY_CONFIG) + ';\n'
    'document.querySelectorAll("script.chart-figure").forEach(function (node) {\n'
    '  var figure = JSON.parse(node.textContent);\n'
    '  Plotly.newPlot(node.dataset.chart, figure.data, figure.layout, config);\n'
    '});\n')


def _embedded_json(value: Any) -> str:
    # "</" would end the script element early (a series named by a vendor could contain it).
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td{" class=n" if i else ""}>{html.escape(v)}</td>' for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section_html(section: Section) -> str:
    parts = [f'<section id="{section.key}"><h2>{html.escape(section.title)}</h2>']
    if section.explanation:
        parts.append(f'<p class="explain">{html.escape(section.explanation)}</p>')
    if section.figure is not None:
        chart = f"chart-{section.key}"
        parts.append(f'<div class="chart" id="{chart}"></div>'
                     f'<script type="application/json" class="chart-figure" data-chart="{chart}">'
                     f"{_embedded_json(section.figure)}</script>")
    else:
        parts.append(f'<p class="empty">{html.escape(section.status or "no data")}</p>')
    parts.append(section.extra_html + "</section>")
    return "".join(parts)


def render(sections: list[Section], summary: tuple[list[str], list[list[str]]], window: Window, snapshots: Window,
           source: Path, generated_at: datetime) -> str:
    header, rows = summary
    nav = " ".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections)
    overview = (_table_html(header, rows) if rows else '<p class="empty">no vendor data in this window</p>')
    charts = any(s.figure is not None for s in sections)
    snapshot_note = (f"; rollout and stock up to the newest snapshot, {snapshots.last:{formats.DATE_FORMAT}}"
                     if snapshots.last != window.last else "")
    script = (f"<script>{get_plotlyjs()}</script><script>{RENDER_SCRIPT}</script>" if charts else "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Fleet report</title>"
        f"<style>{STYLE}</style></head><body><h1>Fleet report</h1>"
        f'<p class="meta">Window: <strong id="window">{html.escape(window.label())}</strong>{snapshot_note} · generated '
        f"{generated_at:%Y-%m-%d %H:%M} UTC from {html.escape(source.name)}</p>"
        f"<nav>{nav}</nav><h2>The window per vendor</h2>{overview}"
        + "\n".join(_section_html(s) for s in sections)
        + f"{script}</body></html>\n"
    )


@dataclass(frozen=True)
class Report:
    window: Window
    sections: list[Section]
    snapshots: Window  # the window of the rollout and stock sections


def write_report(serving_db: Path, destination: Path, now: datetime | None = None, first: date | None = None,
                 last: date | None = None, days: int = figures.DEFAULT_WINDOW_DAYS) -> Report:
    """Render the report from ``serving_db`` (which may not exist yet) into ``destination``,
    replacing it atomically, over ``first``..``last`` (see ``figures.resolve_window``)."""
    generated_at = now or datetime.now(timezone.utc).replace(tzinfo=None)
    conn = duckdb.connect(str(serving_db), read_only=True) if serving_db.exists() else None
    try:
        marts = Marts(conn)
        window = figures.resolve_window(marts, first, last, days)
        # A window asked to end on a day ends there for the snapshots too.
        snapshots = window if (last is not None or conn is None) else figures.with_snapshots(marts, window)
        sections = build_sections(marts, window, snapshots)
        summary = summary_table(marts, window)
    finally:
        if conn is not None:
            conn.close()
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    partial.write_text(render(sections, summary, window, snapshots, serving_db, generated_at), encoding="utf-8")
    os.replace(partial, destination)
    return Report(window, sections, snapshots)


def _figures_markdown(sections: list[Section]) -> str:
    rows = []
    for section in sections:
        rows += [(section.title, name, value) for name, value in section.figures.items()]
        if not section.figures:
            rows.append((section.title, "-", section.status or "no data"))
    return formats.markdown_table(("section", "figure", "value"), rows)


class ReportConfig(Config):
    """The report's window of UTC days (both ends included)."""

    date_from: str | None = Field(default=None, description="First day, YYYY-MM-DD; default: `days` days "
                                  "before the last day (not before the oldest day in the daily marts).")
    date_to: str | None = Field(default=None, description="Last day, YYYY-MM-DD; default: the newest day "
                                "in the daily marts.")
    days: int = Field(default=figures.DEFAULT_WINDOW_DAYS, description="Length of the window when "
                      "date_from is not given.")


def parse_day(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a day as YYYY-MM-DD, got {value!r}") from None


@asset(
    name="fleet_report",
    group_name="serving",
    deps=[AssetKey("serving_copy")],
    owners=OWNERS,
    kinds={"python", "html"},
    description="Self-contained HTML report (reports/fleet_report.html, plotly inline, no network) of km, "
    "utilisation, idle share, alarms per 100 km, alarms by type, ignition and trip events, parking, firmware "
    "rollout and stock, per vendor (and account) over a window of days, read from the serving copy.",
)
def fleet_report(context, config: ReportConfig) -> MaterializeResult:  # untyped context: see definitions
    destination = settings.reports_dir() / REPORT_FILE
    report = write_report(settings.serving_dir() / SERVING_FILE, destination,
                          first=parse_day(config.date_from, "fleet_report config date_from"),
                          last=parse_day(config.date_to, "fleet_report config date_to"),
                          days=config.days)
    empty = [f"{s.title} ({s.status})" for s in report.sections if s.figure is None]
    if empty:
        context.log.info("sections without a chart: " + ", ".join(empty))
    numbers = {name: value for s in report.sections for name, value in s.figures.items() if value is not None}
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(destination)),
            "window": MetadataValue.text(report.window.label()),
            "file_bytes": MetadataValue.int(destination.stat().st_size),
            "sections_with_data": MetadataValue.int(sum(s.figure is not None for s in report.sections)),
            **{name: (MetadataValue.int(value) if isinstance(value, int) else MetadataValue.float(float(value)))
               for name, value in numbers.items()},
            "key_figures": MetadataValue.md(_figures_markdown(report.sections)),
        }
    )
