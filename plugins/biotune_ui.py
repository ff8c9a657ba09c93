"""The biotune page in the Airflow 3 UI: registered models, champion and challenger with their
metrics, the latest drift per model (PSI, Evidently report), links to the MLflow runs, per-model
charts of the monitoring history (biotune.charts: inline SVG, no asset from elsewhere) and every
family and person the platform serves.

A FastAPI app mounted at ``/biotune`` (``fastapi_apps``) with a nav entry (``external_views``).
It asks for the same login as the UI: the Airflow JWT from the ``Authorization: Bearer`` header or
the UI's ``_token`` cookie, validated by Airflow's own auth manager. Without one: 401 (or, for a
browser asking for HTML, a redirect to the login page).

Loaded by every Airflow component that loads plugins, so only FastAPI is imported at module level;
MLflow, SQLAlchemy and the biotune library are imported when a page is served.
"""

from __future__ import annotations

import html
import inspect
import logging
import os
from typing import Any
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

log = logging.getLogger(__name__)

URL_PREFIX = "/biotune"
COOKIE_NAME = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


class NotAuthenticated(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _auth_manager():
    from airflow.api_fastapi.app import create_auth_manager, get_auth_manager

    try:
        return get_auth_manager()
    except RuntimeError:  # not initialised in this process (e.g. the app served on its own)
        manager = create_auth_manager()
        manager.init()
        return manager


def _token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(COOKIE_NAME) or None


async def current_user(request: Request) -> Any:
    """The Airflow user behind the request, or NotAuthenticated (a 401 or a redirect to login)."""
    token = _token_of(request)
    if not token:
        raise NotAuthenticated("not authenticated: log in to Airflow first")
    manager = _auth_manager()
    try:
        user = manager.get_user_from_token(token)
        if inspect.isawaitable(user):
            user = await user
    except Exception as exc:  # jwt.InvalidTokenError, ExpiredSignatureError, a revoked token
        raise NotAuthenticated(f"invalid or expired token ({type(exc).__name__})") from exc
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView

    if not manager.is_authorized_view(access_view=AccessView.WEBSITE, user=user):
        raise HTTPException(status_code=403, detail="this user may not view the Airflow website")
    return user


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _login_url(request: Request) -> str:
    try:
        return _auth_manager().get_url_login(next_url=str(request.url))
    except Exception:  # noqa: BLE001
        return "/auth/login"


# ------------------------------------------------------------------------------------------ data
def mlflow_ui_url() -> str:
    return os.environ.get("BIOTUNE_MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")


def registry_rows() -> tuple[list[dict], str | None]:
    """(models, error): biotune.registry.list_models(), or the error text when MLflow cannot be read."""
    try:
        from biotune import registry

        return registry.list_models(), None
    except Exception as exc:  # noqa: BLE001 (the page shows the failure instead of a 500)
        log.warning("biotune page: cannot list models: %s", exc)
        from biotune.errors import redact

        return [], redact(f"{type(exc).__name__}: {exc}")


def latest_drift() -> tuple[dict[str, dict], str | None]:
    """{model: latest measured drift row} from the history store; ({}, None) before any drift run."""
    try:
        from biotune.monitoring import store

        if not store.exists():
            return {}, None  # do not create an empty SQLite file just by looking
        return store.latest(), None
    except Exception as exc:  # noqa: BLE001 (the page shows the failure instead of a 500)
        log.warning("biotune page: cannot read drift history: %s", exc)
        from biotune.errors import redact

        return {}, redact(f"{type(exc).__name__}: {exc}")


def drift_report_uri(model: str, date: str) -> str | None:
    from biotune.monitoring import store

    if not store.exists():
        return None
    rows = store.history(model, since=date, until=date)
    return rows[0]["report_uri"] if rows else None


def drift_timeline() -> tuple[dict[str, dict], str | None]:
    """(monitoring.store.timeline(), error): what the charts draw; ({}, None) before any drift run."""
    try:
        from biotune.monitoring import store

        if not store.exists():
            return {}, None
        return store.timeline(), None
    except Exception as exc:  # noqa: BLE001 (the page shows the failure instead of a 500)
        log.warning("biotune page: cannot read the drift timeline: %s", exc)
        from biotune.errors import redact

        return {}, redact(f"{type(exc).__name__}: {exc}")


def spec_limits(model: str):
    """The (drift, retraining) settings of a registered model's spec (per-person models: their
    spec's); the spec defaults for a model without a spec in models/."""
    from biotune.registry import spec_name_of
    from biotune.specs import Drift, Retraining, get_spec

    try:
        spec = get_spec(spec_name_of(model)[0])
        return spec.drift, spec.retraining
    except Exception:  # noqa: BLE001 (a model without a spec in models/: the defaults)
        return Drift(), Retraining()


def drift_thresholds(model: str) -> tuple[float, float]:
    """The model's own (threshold, critical) PSI from its spec."""
    drift, _ = spec_limits(model)
    return drift.threshold, drift.critical


def served(models: list[dict]) -> tuple[list[dict], list[dict]]:
    """(families, others): every family (biotune.family.families()) with its specs, each spec with
    its population model's registry row or its per-person rows ``<spec>--<person>``; ``others``: the
    registered models no spec of a family names."""
    from biotune.family import families
    from biotune.registry import spec_name_of

    by_spec: dict[str, dict] = {}
    for m in models:
        spec_name, person = spec_name_of(m["name"])
        entry = by_spec.setdefault(spec_name, {"model": None, "persons": []})
        if person:
            entry["persons"].append({"person": person, **m})
        else:
            entry["model"] = m
    out, named = [], set()
    for name, family in sorted(families().items()):
        specs = []
        for spec in sorted(family.specs(None), key=lambda sp: (sp.scope, sp.name)):
            named.add(spec.name)
            entry = by_spec.get(spec.name, {"model": None, "persons": []})
            specs.append({"spec": spec.name, "scope": spec.scope, "description": spec.description,
                          "model": entry["model"], "persons": sorted(entry["persons"], key=lambda p: p["person"])})
        out.append({"family": name, "dag_id": family.fine_tune_dag_id, "specs": specs})
    others = [m for m in models if spec_name_of(m["name"])[0] not in named]
    return out, others


# ------------------------------------------------------------------------------------------ page
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#1a202c}
h1{font-size:1.4rem;margin:0 0 .3rem} h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
table{border-collapse:collapse;width:100%;font-size:.9rem} th,td{border-bottom:1px solid #e2e8f0;
padding:.4rem .6rem;text-align:left;vertical-align:top} th{background:#f7fafc}
.muted{color:#718096} .bad{color:#c53030} .ok{color:#2f855a} code{font-size:.85rem}
.metrics{font-size:.8rem;color:#4a5568} .warn{font-size:.8rem;color:#975a16;background:#fffff0;
border-left:3px solid #d69e2e;padding:.2rem .4rem;margin-top:.3rem} .promoted{color:#2f855a}
h3{font-size:1rem;margin:1.2rem 0 .3rem} .charts{display:flex;flex-wrap:wrap;gap:.5rem}
.family{margin:.6rem 0} .family ul{margin:.2rem 0 .6rem 1.2rem;padding:0} .family li{margin:.15rem 0}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _fmt_metrics(metrics: dict | None, limit: int = 6) -> str:
    if not metrics:
        return ""
    from biotune.metrics import format_value

    keys = sorted(metrics, key=lambda k: (not k.startswith("test_"), k))[:limit]
    return ", ".join(f"{_e(k)}={_e(format_value(k, metrics[k]))}" for k in keys)


def _version_cell(name: str, v: dict | None) -> str:
    if not v:
        return '<span class="muted">none</span>'
    base = mlflow_ui_url()
    model_link = f'{base}/#/models/{quote(name, safe="")}/versions/{quote(str(v["version"]))}'
    run = ""
    if v.get("run_id"):
        run = f' · <a href="{_e(base)}/#/runs/{quote(v["run_id"])}" target="_blank" rel="noopener">run</a>'
    gate = f' <span class="muted">gate: {_e(v.get("gate_decision"))}</span>' if v.get("gate_decision") else ""
    warnings = "".join(f'<div class="warn">&#9888; {_e(w)}</div>' for w in v.get("warnings") or [])
    return (f'<a href="{_e(model_link)}" target="_blank" rel="noopener">v{_e(v["version"])}</a>{run}{gate}'
            f'<div class="metrics">{_fmt_metrics(v.get("metrics"))}</div>{warnings}')


def _challenger_cell(name: str, m: dict) -> str:
    """The challenger, or "promoted" when the alias still points at the champion's version (a
    registry written before promotion cleared it): one version is never shown twice."""
    challenger, champ = m.get("challenger"), m.get("champion")
    if challenger and champ and str(challenger["version"]) == str(champ["version"]):
        return f'<span class="promoted">promoted: v{_e(champ["version"])} is the champion</span>'
    return _version_cell(name, challenger)


def _drift_cell(name: str, row: dict | None) -> str:
    if not row:
        return '<span class="muted">no drift runs yet</span>'
    psi = row.get("max_psi")
    threshold, critical = drift_thresholds(name)
    if row.get("status") == "error":
        return (f'{_e(row.get("date"))}: <b class="bad">not measured</b>'
                f'<div class="metrics">{_e((row.get("error") or "")[:300])}</div>')
    psi_text = f"{float(psi):.3f}" if psi is not None else "n/a"
    cls = "bad" if psi is not None and float(psi) >= threshold else "ok"
    report = ""
    if row.get("report_uri"):
        href = f"{URL_PREFIX}/reports/{quote(name, safe='')}/{quote(str(row['date']), safe='')}"
        report = f' · <a href="{_e(href)}" target="_blank" rel="noopener">Evidently report</a>'
    return (f'{_e(row.get("date"))}: max PSI <b class="{cls}">{psi_text}</b>{report}'
            f'<div class="metrics">drifted: {_e(row.get("drifted_features") or "none")}'
            f'{" (" + _e(", ".join(map(str, row.get("drifted") or []))[:200]) + ")" if row.get("drifted") else ""}'
            f' at PSI &ge; {threshold:g}; alert at {critical:g}</div>')


def _state(m: dict | None) -> str:
    """A registered model's serving state in a few words (the families section)."""
    if not m:
        return '<span class="muted">not trained yet</span>'
    if m.get("champion"):
        warn = " &#9888;" if m["champion"].get("warnings") else ""
        return f'<span class="ok">champion v{_e(m["champion"]["version"])}</span>{warn}'
    latest = m.get("latest_version")
    gate = (m.get("challenger") or {}).get("gate_decision")
    return (f'<span class="muted">no champion (latest v{_e(latest)}'
            f'{": gate " + _e(gate) if gate else ""})</span>')


def _families_html(families: list[dict], others: list[dict]) -> str:
    parts = []
    for fam in families:
        items = []
        for sp in fam["specs"]:
            if sp["scope"] != "person":
                items.append(f'<li data-spec="{_e(sp["spec"])}"><b>{_e(sp["spec"])}</b>: {_state(sp["model"])}</li>')
                continue
            people = []
            for p in sp["persons"]:
                state = (_state(p) if p.get("champion") else
                         f'population model serves (fallback): {_state(p)}')
                people.append(f'<li data-person="{_e(p["person"])}" data-model="{_e(p["name"])}">'
                              f'{_e(p["person"])}: {state}</li>')
            served = (f'{len(people)} {"person" if len(people) == 1 else "people"}<ul>{"".join(people)}</ul>'
                      if people else '<span class="muted">no person calibrated yet: the population model '
                                     'serves everyone</span>')
            items.append(f'<li data-spec="{_e(sp["spec"])}"><b>{_e(sp["spec"])}</b> (per person): {served}</li>')
        dag = f' <span class="muted">fine-tune DAG {_e(fam["dag_id"])}</span>' if fam.get("dag_id") else ""
        parts.append(f'<div class="family" data-family="{_e(fam["family"])}"><b>{_e(fam["family"])}</b>{dag}'
                     f'<ul>{"".join(items) or "<li class=muted>no model specs</li>"}</ul></div>')
    if others:
        parts.append('<div class="family"><b>registered without a spec in models/</b><ul>'
                     + "".join(f'<li data-model="{_e(m["name"])}">{_e(m["name"])}: {_state(m)}</li>' for m in others)
                     + "</ul></div>")
    return f'<section id="families"><h2>Families and people served</h2>{"".join(parts)}</section>'


def _decision_text(d: dict) -> str:
    what = "retrain queued" if d.get("decision") == "yes" else "no retrain"
    return f'{_e(d.get("date"))}: <b>{what}</b> ({_e("; ".join(d.get("reasons") or []))})'


def _charts_html(timeline: dict[str, dict]) -> str:
    from biotune.charts import model_charts

    sections = []
    for model, t in sorted(timeline.items()):
        drift, retraining = spec_limits(model)
        charts = model_charts(t["rows"], t["decisions"], threshold=drift.threshold, critical=drift.critical,
                              min_confidence=retraining.min_confidence,
                              max_error_increase=retraining.max_error_rate_increase)
        shown = [t["decisions"][d] for d in sorted(t["decisions"])]
        fired = [d for d in shown if d.get("decision") == "yes"]
        notes = []
        if shown:
            notes.append(f"latest decision {_decision_text(shown[-1])}")
        if fired and fired[-1] is not shown[-1]:
            notes.append(f"last retrain queued {_decision_text(fired[-1])}")
        note = "".join(f'<div class="metrics">{n}</div>' for n in notes)
        sections.append(f'<section class="model-charts" data-model="{_e(model)}"><h3>{_e(model)}</h3>{note}'
                        f'<div class="charts">{"".join(charts)}</div></section>')
    if not sections:
        return ""
    return ('<h2>Monitoring over time</h2><p class="muted">Shaded days were not measured (grey: no batch, yellow: '
            'too few rows, red: error); red triangles: a retrain was queued, hollow circles: the rule said no '
            '(hover for the reasons).</p>' + "".join(sections))


def render_page(models: list[dict], model_error: str | None, drift: dict[str, dict], drift_error: str | None,
                user_name: str, *, timeline: dict[str, dict] | None = None,
                families: tuple[list[dict], list[dict]] | None = None) -> str:
    from biotune.registry import spec_name_of

    rows = []
    for m in models:
        if spec_name_of(m["name"])[1]:
            continue  # one person's model: listed under its spec in the families section
        rows.append(f'<tr data-model="{_e(m["name"])}"><td><b>{_e(m["name"])}</b>'
                    f'<div class="muted">latest v{_e(m.get("latest_version"))}</div></td>'
                    f'<td class="champion">{_version_cell(m["name"], m.get("champion"))}</td>'
                    f'<td class="challenger">{_challenger_cell(m["name"], m)}</td>'
                    f'<td class="drift">{_drift_cell(m["name"], drift.get(m["name"]))}</td></tr>')
    if not rows:
        rows.append('<tr><td colspan="4" class="muted">no registered models yet: run a fine-tuning DAG '
                    '(e.g. mood_population_finetune)</td></tr>')
    errors = ""
    if model_error:
        errors += f'<p class="bad">MLflow registry unavailable: {_e(model_error)}</p>'
    if drift_error:
        errors += f'<p class="bad">drift history unavailable: {_e(drift_error)}</p>'
    drift_note = "" if drift or drift_error or models else '<p class="muted">no drift runs yet</p>'
    orphan = [f"<li>{_e(k)}: {_drift_cell(k, v)}</li>" for k, v in sorted(drift.items())
              if k not in {m["name"] for m in models}]
    orphan_html = f"<h2>Drift of unregistered models</h2><ul>{''.join(orphan)}</ul>" if orphan else ""
    charts_html = _charts_html(timeline or {})
    families_html = _families_html(*families) if families else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>biotune models</title><style>{STYLE}</style></head>
<body>
<h1>biotune: models</h1>
<p class="muted">Champion and challenger per registered model (MLflow aliases), the latest drift check and
links to <a href="{_e(mlflow_ui_url())}" target="_blank" rel="noopener">MLflow</a>. Signed in as {_e(user_name)}.</p>
{errors}
<table id="models"><thead><tr><th>model</th><th>champion</th><th>challenger</th><th>latest drift</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{drift_note}{orphan_html}
{charts_html}
{families_html}
</body></html>"""


def _served_or_none(models: list[dict]):
    try:
        return served(models)
    except Exception as exc:  # noqa: BLE001 (a broken spec folder must not take the page down)
        log.warning("biotune page: cannot list the families: %s", exc)
        return None


def _user_name(user: Any) -> str:
    for attr in ("get_name", "get_id"):
        fn = getattr(user, attr, None)
        if callable(fn):
            try:
                return str(fn())
            except Exception:  # noqa: BLE001
                pass
    return str(user)


def create_app() -> FastAPI:
    app = FastAPI(title="biotune", description="biotune models, champions and drift", docs_url=None,
                  redoc_url=None, openapi_url=None)

    @app.exception_handler(NotAuthenticated)
    async def _not_authenticated(request: Request, exc: NotAuthenticated):
        if _wants_html(request):
            return RedirectResponse(_login_url(request), status_code=302)
        return JSONResponse({"detail": exc.reason}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.get("/", response_class=HTMLResponse)
    def page(user=Depends(current_user)) -> HTMLResponse:
        models, model_error = registry_rows()
        drift, drift_error = latest_drift()
        timeline, timeline_error = drift_timeline()
        return HTMLResponse(render_page(models, model_error, drift, drift_error or timeline_error, _user_name(user),
                                        timeline=timeline, families=_served_or_none(models)))

    @app.get("/api/models")
    def models_json(user=Depends(current_user)) -> JSONResponse:
        models, model_error = registry_rows()
        drift, drift_error = latest_drift()
        from fastapi.encoders import jsonable_encoder

        body = {"models": models, "drift": drift, "errors": {"registry": model_error, "drift": drift_error},
                "mlflow_ui": mlflow_ui_url()}
        return JSONResponse(jsonable_encoder(body), status_code=200 if not model_error else 503)

    @app.get("/reports/{model}/{date}", response_class=HTMLResponse)
    def report(model: str, date: str, user=Depends(current_user)) -> HTMLResponse:
        """The Evidently HTML of one drift_history row. Only objects under the lake's reports/ prefix
        are served, whatever the table says (it may be a shared database others can write)."""
        from biotune import storage
        from biotune.errors import BiotuneError

        try:
            uri = drift_report_uri(model, date)
            if not uri or not storage.is_within(uri, storage.lake_path("reports")):
                raise HTTPException(status_code=404, detail=f"no drift report recorded for {model} on {date}")
            return HTMLResponse(storage.read_text(uri))
        except BiotuneError:
            raise HTTPException(status_code=404, detail=f"no drift report recorded for {model} on {date}") from None

    return app


app = create_app()


class BiotuneUIPlugin(AirflowPlugin):
    name = "biotune_ui"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "biotune models"}]
    external_views = [{
        "name": "biotune models",
        "href": URL_PREFIX.lstrip("/") + "/",  # relative: works behind a proxy with a base path
        "url_route": "biotune",
        "destination": "nav",
        "category": "browse",
    }]
