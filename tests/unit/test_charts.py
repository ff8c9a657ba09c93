"""biotune.charts: a model's monitoring history as inline SVG (thresholds, decisions, days not measured)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from biotune import charts

NS = {"s": "http://www.w3.org/2000/svg"}


def _svg(text: str) -> ET.Element:
    return ET.fromstring(text)  # well-formed XML, or this raises


def _by_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{{{NS['s']}}}{tag}") if cls in (e.get("class") or "").split()]


def _title(el: ET.Element) -> str:
    t = el.find("s:title", NS)
    return t.text if t is not None else ""


def _row(date: str, status: str = "ok", psi: float | None = None, conf: float | None = 0.8, **kw) -> dict:
    return {"model": "mood-depression-xgb", "date": date, "status": status, "max_psi": psi, "mean_confidence": conf,
            "prediction_psi": None, "error_rate": None, "labeled_n": 0, **kw}


ROWS = [_row("2026-01-01", psi=0.05), _row("2026-01-02", psi=0.20), _row("2026-01-03", "missing", conf=None),
        _row("2026-01-04", "small", psi=0.9, conf=0.5), _row("2026-01-05", psi=0.40), _row("2026-01-06", psi=0.45)]
DECISIONS = {"2026-01-05": {"date": "2026-01-05", "decision": "no", "reasons": ["drift streak 2 < 3"]},
             "2026-01-06": {"date": "2026-01-06", "decision": "yes",
                            "reasons": ["yes: drift on 3 consecutive batches", "544 new labels on record"]}}


def test_threshold_and_critical_lines_sit_at_their_values():
    psi = _svg(charts.model_charts(ROWS, DECISIONS, threshold=0.2, critical=0.25)[0])
    (threshold,) = _by_class(psi, "line", "threshold")
    (critical,) = _by_class(psi, "line", "critical")
    # the point measured at exactly the threshold lies on the threshold line
    at_threshold = [c for c in _by_class(psi, "circle", "psi") if c.get("data-date") == "2026-01-02"][0]
    assert threshold.get("y1") == threshold.get("y2") == at_threshold.get("cy")
    assert float(critical.get("y1")) < float(threshold.get("y1"))  # higher value, higher on the chart
    # and where the frame puts it: TOP + (1 - v / y_max) * plot height, y_max a tenth above the largest PSI
    plot_h = charts.HEIGHT - charts.TOP - charts.BOTTOM
    assert abs(float(threshold.get("y1")) - (charts.TOP + (1 - 0.2 / (0.45 * 1.1)) * plot_h)) < 0.06
    assert "threshold 0.2" in _title(threshold) and "critical 0.25" in _title(critical)


def test_one_marker_per_fired_decision_with_its_reasons():
    for svg in charts.model_charts(ROWS, DECISIONS, threshold=0.2, critical=0.25, min_confidence=0.6):
        root = _svg(svg)
        fired = _by_class(root, "g", "fired")
        assert [g.get("data-date") for g in fired] == ["2026-01-06"]
        assert _title(fired[0]) == ("2026-01-06: retrain queued: yes: drift on 3 consecutive batches; "
                                    "544 new labels on record")
        held = _by_class(root, "g", "held")
        assert [g.get("data-date") for g in held] == ["2026-01-05"] and "no retrain" in _title(held[0])


def test_days_not_measured_are_bands_not_zero_drift():
    psi = _svg(charts.model_charts(ROWS, DECISIONS, threshold=0.2, critical=0.25)[0])
    points = {c.get("data-date"): float(c.get("data-value")) for c in _by_class(psi, "circle", "psi")}
    assert set(points) == {"2026-01-01", "2026-01-02", "2026-01-05", "2026-01-06"}  # no 0 on 01-03, no 0.9 on 01-04
    gaps = {r.get("data-date"): r.get("class") for r in _by_class(psi, "rect", "gap")}
    assert gaps == {"2026-01-03": "gap gap-missing", "2026-01-04": "gap gap-small"}
    assert "no batch landed" in _title(_by_class(psi, "rect", "gap-missing")[0])
    # the line breaks across the gap: two segments (M ... L ..., M ... L ...)
    (path,) = _by_class(psi, "path", "psi")
    assert re.findall(r"[ML]", path.get("d")) == ["M", "L", "M", "L"]
    # nothing is drawn at y of zero drift for the missing day
    zero_y = str(round(charts.TOP + (charts.HEIGHT - charts.TOP - charts.BOTTOM), 1))
    assert all(c.get("cy") != zero_y for c in _by_class(psi, "circle", "point"))


def test_prediction_psi_and_error_rate_only_when_recorded():
    without = charts.model_charts(ROWS, {}, threshold=0.2, critical=0.25)
    assert len(without) == 2 and "prediction PSI" not in without[0]  # PSI and confidence: no labels, no error chart
    rows = [{**r, "prediction_psi": 0.1, "error_rate": 0.3, "labeled_n": 50, "reference_error_rate": 0.2}
            if r["status"] == "ok" else r for r in ROWS]
    psi, conf, err = charts.model_charts(rows, {}, threshold=0.2, critical=0.25, max_error_increase=0.05)
    assert len(_by_class(_svg(psi), "circle", "prediction_psi")) == 4
    levels = {e.get("class"): float(e.get("data-value")) for e in _by_class(_svg(err), "line", "level")}
    assert levels == {"level reference": 0.2, "level threshold": 0.25}
    assert len(_by_class(_svg(err), "circle", "error_rate")) == 4


def test_text_is_escaped_and_empty_history_still_draws():
    svg = charts.time_chart("<b>", [charts.Series("psi", "a&b", {})],
                            markers=[charts.Marker("2026-01-01", True, ("<script>",))])
    root = _svg(svg)
    assert "<script>" not in svg and _title(_by_class(root, "g", "fired")[0]).endswith("<script>")
