"""How the fleet's figures are written, in one place: the HTML report's axes, tooltips and tables,
and the Dagster metadata tables, all show a kilometre or a share the same way.

Each unit carries both spellings of its format: Python's (tables, text, metadata) and d3-format's
(plotly.js axes and tooltips), which agree: 1234.56 km is "1,234.6 km" in either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Unit:
    """A unit of the report: its label, decimals, and whether values are shares (0..1) shown in per cent."""

    label: str
    decimals: int
    share: bool = False

    def round(self, value: float) -> float:
        """The value as stored in the report and in metadata (two more decimals than shown, so sums
        of shown values do not drift)."""
        return round(float(value), self.decimals + (4 if self.share else 2))

    def text(self, value: float | None) -> str:
        """``1,234.6 km``, ``37.2%``, ``12 alarms``; a dash for an unknown value."""
        if value is None:
            return "–"
        if self.share:
            return f"{value * 100:,.{self.decimals}f}%"  # as d3-format writes it on the axis
        number = f"{value:,.{self.decimals}f}"
        if not self.label:
            return number
        # "1 alarm", not "1 alarms"
        label = self.label[:-1] if value == 1 and self.label.endswith("s") and " " not in self.label else self.label
        return f"{number} {label}"

    @property
    def d3(self) -> str:
        """The d3-format spec plotly.js applies to axis ticks and tooltips."""
        return f",.{self.decimals}%" if self.share else f",.{self.decimals}f"

    @property
    def axis_title(self) -> str:
        return "%" if self.share else self.label

    def hover(self, series: str = "%{fullData.name}") -> str:
        """A tooltip: the day, the series and the value in this unit."""
        suffix = "" if self.share or not self.label else f" {self.label}"
        return f"%{{x|%Y-%m-%d}}<br>{series}: %{{y:{self.d3}}}{suffix}<extra></extra>"


KM = Unit("km", 1)
HOURS = Unit("h", 1)
SHARE = Unit("", 1, share=True)
ALARMS = Unit("alarms", 0)
EVENTS = Unit("events", 0)
PER_100_KM = Unit("per 100 km", 2)
UNITS = Unit("units", 0)
DEVICES = Unit("devices", 0)

DATE_FORMAT = "%Y-%m-%d"  # a day everywhere: ISO, as the partitions are named


def cell(value: Any) -> str:
    """A table cell whose unit is in the column header: whole numbers with thousands separators,
    other numbers with two decimals, unknown values as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def markdown_table(header: list[str] | tuple[str, ...], rows: Any) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
