"""Charts for the biotune page: a model's monitoring history drawn as inline SVG text.

Drawn on the server, with no script, font or stylesheet from elsewhere: the page works offline
and inside Airflow's iframe. Pure functions from series to SVG; hovering a point, a line or a
marker shows its ``<title>`` (the browser's own tooltip).

Days that were not measured ('missing': no batch landed; 'small': too few rows to judge; 'error')
are drawn as shaded bands and break the line: they are never plotted as a value, least of all as
zero drift.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field

from biotune.dates import as_date

WIDTH, HEIGHT = 640, 190
LEFT, RIGHT, TOP, BOTTOM = 46, 110, 30, 26  # the right margin holds the threshold labels
COLORS = {"psi": "#2b6cb0", "prediction_psi": "#805ad5", "confidence": "#2f855a", "error_rate": "#c05621",
          "threshold": "#d69e2e", "critical": "#c53030", "reference": "#718096", "fired": "#c53030",
          "held": "#a0aec0"}
GAP_FILL = {"missing": "#edf2f7", "small": "#fefcbf", "error": "#fed7d7"}
GAP_NOTE = {"missing": "no batch landed: not measured, not drift",
            "small": "too few rows to judge drift: not measured",
            "error": "not measured (the batch or the reference was unusable)"}


@dataclass(frozen=True)
class Series:
    """One line: {date: value}; a date without a value (or None) is not plotted."""

    key: str  # css class and colour: psi, prediction_psi, confidence, error_rate
    label: str
    values: dict[str, float | None]


@dataclass(frozen=True)
class Level:
    """A horizontal line: a threshold, a critical level or a reference figure."""

    key: str  # threshold, critical, reference
    label: str
    value: float


@dataclass(frozen=True)
class Marker:
    """A retraining decision on a date: fired (a retrain was queued) or held, with its reasons."""

    date: str
    fired: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Gap:
    date: str
    status: str  # missing, small, error
    note: str = ""


@dataclass
class _Frame:
    """Where dates and values land in the plot area."""

    first: dt.date
    days: int
    y_max: float
    y_min: float = 0.0
    plot_w: float = field(init=False)
    plot_h: float = field(init=False)

    def __post_init__(self):
        self.plot_w = WIDTH - LEFT - RIGHT
        self.plot_h = HEIGHT - TOP - BOTTOM

    def x(self, date: str) -> float:
        if self.days == 0:
            return LEFT + self.plot_w / 2
        return LEFT + (as_date(date) - self.first).days / self.days * self.plot_w

    def y(self, value: float) -> float:
        span = (self.y_max - self.y_min) or 1.0
        return TOP + (1 - (value - self.y_min) / span) * self.plot_h

    def day_width(self) -> float:
        return max(self.plot_w / (self.days + 1), 2.0)


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _n(v: float) -> str:
    return f"{v:.1f}"


def y_max_for(values, levels=(), floor: float = 0.0) -> float:
    """The top of the y axis: a little above the largest value or level (at least ``floor``)."""
    top = max([v for v in values if v is not None] + [lv for lv in levels] + [floor], default=floor)
    return top * 1.1 if top > 0 else 1.0


def time_chart(title: str, series: list[Series], *, dates: list[str] | None = None, levels: list[Level] = (),
               markers: list[Marker] = (), gaps: list[Gap] = (), y_max: float | None = None,
               y_min: float = 0.0, fmt: str = "{:.3f}", css: str = "") -> str:
    """One time-series chart as an ``<svg>`` element (text).

    ``dates``: every date the chart spans (default: those of the series, markers and gaps). Points
    of a series are joined unless a gap day lies between them: a day not measured breaks the line.
    """
    all_dates = sorted({as_date(d).isoformat() for d in (dates or [])}
                       | {d for s in series for d, v in s.values.items() if v is not None}
                       | {m.date for m in markers} | {g.date for g in gaps})
    values = [v for s in series for v in s.values.values() if v is not None]
    if y_max is None:
        y_max = y_max_for(values, [lv.value for lv in levels])
    first = as_date(all_dates[0]) if all_dates else dt.date.today()
    last = as_date(all_dates[-1]) if all_dates else first
    f = _Frame(first=first, days=(last - first).days, y_max=y_max, y_min=y_min)
    bottom, right = TOP + f.plot_h, LEFT + f.plot_w
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {_e(css)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{_e(title)}" font-family="sans-serif" '
           f'font-size="10">', f"<title>{_e(title)}</title>",
           f'<text x="{LEFT}" y="13" font-size="12" font-weight="bold" fill="#1a202c">{_e(title)}</text>']
    # legend, right of the title
    lx = LEFT + 8 + 7 * len(title)
    for s in series:
        out.append(f'<rect x="{_n(lx)}" y="5" width="10" height="3" fill="{COLORS.get(s.key, "#4a5568")}"/>'
                   f'<text x="{_n(lx + 13)}" y="11" fill="#4a5568">{_e(s.label)}</text>')
        lx += 20 + 6 * len(s.label)
    # gap days first, so lines and markers are drawn over them
    w = f.day_width()
    for g in gaps:
        note = g.note or GAP_NOTE.get(g.status, g.status)
        out.append(f'<rect class="gap gap-{_e(g.status)}" data-date="{_e(g.date)}" x="{_n(f.x(g.date) - w / 2)}" '
                   f'y="{TOP}" width="{_n(w)}" height="{_n(f.plot_h)}" fill="{GAP_FILL.get(g.status, "#edf2f7")}">'
                   f"<title>{_e(g.date)}: {_e(g.status)}: {_e(note)}</title></rect>")
    # axes: three gridlines with their values, the first and last date
    for frac in (0.0, 0.5, 1.0):
        v = y_min + frac * (y_max - y_min)
        y = f.y(v)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{_n(right)}" y1="{_n(y)}" y2="{_n(y)}" stroke="#e2e8f0"/>'
                   f'<text x="{LEFT - 4}" y="{_n(y + 3)}" text-anchor="end" fill="#718096">{_e(fmt.format(v))}</text>')
    if all_dates:
        out.append(f'<text x="{LEFT}" y="{HEIGHT - 8}" fill="#718096">{_e(all_dates[0])}</text>')
        if len(all_dates) > 1:
            out.append(f'<text x="{_n(right)}" y="{HEIGHT - 8}" text-anchor="end" fill="#718096">'
                       f"{_e(all_dates[-1])}</text>")
    label_y = -1e9  # level labels never overlap: each at least a line below the one above it
    for lv in sorted(levels, key=lambda lv: -lv.value):
        if not (y_min <= lv.value <= y_max):
            continue
        y = f.y(lv.value)
        label_y = max(y + 3, label_y + 11)
        color = COLORS.get(lv.key, "#718096")
        dash = ' stroke-dasharray="5,3"' if lv.key != "critical" else ""
        out.append(f'<line class="level {_e(lv.key)}" data-value="{lv.value:g}" x1="{LEFT}" x2="{_n(right)}" '
                   f'y1="{_n(y)}" y2="{_n(y)}" stroke="{color}" stroke-width="1.5"{dash}>'
                   f"<title>{_e(lv.label)} {lv.value:g}</title></line>"
                   f'<text x="{_n(right + 4)}" y="{_n(label_y)}" fill="{color}">{_e(lv.label)} {lv.value:g}</text>')
    gap_dates = sorted(as_date(g.date).isoformat() for g in gaps)
    for s in series:
        color = COLORS.get(s.key, "#4a5568")
        points = sorted((as_date(d).isoformat(), float(v)) for d, v in s.values.items() if v is not None)
        path, prev = [], None
        for d, v in points:
            joined = prev is not None and not any(prev < g < d for g in gap_dates)
            path.append(f'{"L" if joined else "M"}{_n(f.x(d))},{_n(f.y(v))}')
            prev = d
        if path:
            out.append(f'<path class="series {_e(s.key)}" d="{" ".join(path)}" fill="none" stroke="{color}" '
                       f'stroke-width="1.5"/>')
        for d, v in points:
            out.append(f'<circle class="point {_e(s.key)}" data-date="{d}" data-value="{v:g}" cx="{_n(f.x(d))}" '
                       f'cy="{_n(f.y(v))}" r="2.5" fill="{color}"><title>{d}: {_e(s.label)} '
                       f"{_e(fmt.format(v))}</title></circle>")
    for m in markers:
        x = f.x(m.date)
        what = "retrain queued" if m.fired else "no retrain"
        tip = f"{m.date}: {what}" + (": " + "; ".join(m.reasons) if m.reasons else "")
        if m.fired:
            out.append(f'<g class="decision fired" data-date="{_e(m.date)}"><title>{_e(tip)}</title>'
                       f'<line x1="{_n(x)}" x2="{_n(x)}" y1="{TOP}" y2="{_n(bottom)}" stroke="{COLORS["fired"]}" '
                       f'stroke-dasharray="2,2"/><path d="M{_n(x - 5)},{TOP - 8} L{_n(x + 5)},{TOP - 8} '
                       f'L{_n(x)},{TOP} Z" fill="{COLORS["fired"]}"/></g>')
        else:
            out.append(f'<g class="decision held" data-date="{_e(m.date)}"><title>{_e(tip)}</title>'
                       f'<circle cx="{_n(x)}" cy="{TOP - 4}" r="2.5" fill="none" stroke="{COLORS["held"]}"/></g>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{_n(f.plot_w)}" height="{_n(f.plot_h)}" fill="none" '
               f'stroke="#cbd5e0"/></svg>')
    return "".join(out)


# ------------------------------------------------------------------------- a model's history
def model_charts(rows: list[dict], decisions: dict[str, dict], *, threshold: float, critical: float,
                 min_confidence: float | None = None, max_error_increase: float | None = None) -> list[str]:
    """The charts of one model from its drift history rows (oldest first) and the decision shown
    per date ({date: decision row}): PSI (max feature PSI, prediction PSI when recorded) with the
    spec's threshold and critical lines, mean confidence, and error rate when labels exist. Every
    chart carries the decisions and the days that were not measured."""
    measured = [r for r in rows if r.get("status") == "ok"]
    gaps = [Gap(r["date"], r["status"], (r.get("error") or "")[:300] if r["status"] == "error" else "")
            for r in rows if r.get("status") in GAP_NOTE]
    markers = [Marker(date, d.get("decision") == "yes", tuple(d.get("reasons") or ()))
               for date, d in sorted(decisions.items())]
    dates = [r["date"] for r in rows]

    def series(column: str, key: str, label: str) -> Series:
        return Series(key, label, {r["date"]: r.get(column) for r in measured})

    def draw(title, ss, levels, css, **kw):
        return time_chart(title, ss, dates=dates, levels=levels, markers=markers, gaps=gaps, css=css, **kw)

    psi = [series("max_psi", "psi", "max feature PSI")]
    if any(r.get("prediction_psi") is not None for r in measured):
        psi.append(series("prediction_psi", "prediction_psi", "prediction PSI"))
    charts = [draw("PSI", psi, [Level("threshold", "threshold", threshold), Level("critical", "critical", critical)],
                   "psi-chart")]
    conf_levels = [Level("threshold", "retrain below", min_confidence)] if min_confidence is not None else []
    charts.append(draw("mean confidence", [series("mean_confidence", "confidence", "mean confidence")], conf_levels,
                       "confidence-chart", y_max=1.0))
    labelled = [r for r in measured if r.get("error_rate") is not None and (r.get("labeled_n") or 0) > 0]
    if labelled:
        errors = Series("error_rate", "error rate", {r["date"]: r["error_rate"] for r in labelled})
        ref = next((r.get("reference_error_rate") for r in reversed(labelled)
                    if r.get("reference_error_rate") is not None), None)
        levels = []
        if ref is not None:
            levels.append(Level("reference", "test", ref))
            if max_error_increase is not None:
                levels.append(Level("threshold", "retrain above", round(ref + max_error_increase, 6)))
        top = y_max_for(errors.values.values(), [lv.value for lv in levels])
        charts.append(draw("error rate (labelled rows)", [errors], levels, "error-chart", y_max=min(top, 1.0)))
    return charts
