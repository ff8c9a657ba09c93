"""The Evidently report shows the PSI the drift history records: same method, values and drifted
count (issue 9 item 7), and a family can monitor an architecture on its own input (mood's PAT)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biotune import drift, monitoring
from biotune.errors import DriftError
from biotune.family import Architecture, Batch, Family, families
from biotune.specs import ModelSpec


def _report_figures(page: str) -> tuple[dict[str, float], int, int]:
    """Per-column drift scores and 'N out of M' drifted, as Evidently's HTML shows them."""
    rows = re.findall(r'"column_name": "([^"]+)", "column_type".*?"drift_score": ([-0-9.eE+]+)', page, re.S)
    count = re.search(r"columns \((\d+) out of (\d+)\)", page)
    return {c: float(v) for c, v in rows}, int(count.group(1)), int(count.group(2))


@pytest.fixture(scope="module")
def mood_day():
    """Generated mood batches: an ordinary day (the reference) and a shifted one, as frames + arrays."""
    from biotune.synthetic.batches import day_batch

    def arrays(frame):
        return np.stack(frame["activity"].to_numpy()), np.stack(frame["state"].to_numpy())

    return arrays(day_batch("2026-01-01", 160, seed=1)), arrays(day_batch("2026-01-02", 120, seed=2, shifted=True))


def test_report_shows_the_history_psi_for_a_quantile_spec(home, mood_day):
    """Before: the history said 9 drifted (max 3.65), the report 11 (max 4.14) on a generated day."""
    from biotune.mood.scoring import batch_features

    (ra, rs), (ca, cs) = mood_day
    ref, cur = batch_features(ra, rs), batch_features(ca, cs)
    spec = ModelSpec(name="mood-depression-xgb", family="mood", task="depression", architecture={"kind": "xgboost"},
                     drift={"method": "quantile", "bins": 10, "threshold": 0.2, "critical": 0.25, "min_rows": 5})
    row = monitoring.measure(ref, cur, spec, proba=np.full(len(cur), 0.3), prediction=np.zeros(len(cur)))
    uri = monitoring.write_report(ref, cur, spec.name, "2026-01-02", None, list(ref.columns), version="3",
                                  method=spec.drift.method, threshold=spec.drift.threshold)
    page = Path(uri).read_text()
    shown, n_drifted, n_columns = _report_figures(page)
    assert n_columns == 36 and row["drifted_features"] >= 3  # a real shift: the figures are worth comparing
    assert n_drifted == row["drifted_features"]
    assert max(shown.values()) == pytest.approx(row["max_psi"], abs=1e-6)  # Evidently prints 6 decimals
    assert shown == pytest.approx({k: v for k, v in row["psi"].items()}, abs=1e-6)
    title = re.search(r"<title>(.*?)</title>", page).group(1)
    assert "mood-depression-xgb" in title and "v3" in title and "2026-01-02" in title and "quantile" in title


def test_report_in_evidently_mode_is_evidentlys_own_psi(tmp_path):
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"a": rng.normal(size=300), "k": rng.integers(0, 5, 300), "g": rng.choice(list("xyz"), 300)})
    cur = pd.DataFrame({"a": rng.normal(0.8, 1, 200), "k": rng.integers(0, 6, 200), "g": rng.choice(list("xy"), 200)})
    figures = drift.evidently_report_html(ref, cur, tmp_path / "r.html", method="evidently", threshold=0.1)
    ours = drift.psi(ref, cur, method="evidently")
    shown, n_drifted, _ = _report_figures((tmp_path / "r.html").read_text())
    assert shown == pytest.approx(ours.to_dict(), abs=1e-6)
    assert n_drifted == figures.n_drifted == int((ours >= 0.1).sum())


def test_report_refuses_figures_other_than_the_measured(tmp_path):
    rng = np.random.default_rng(4)
    ref, cur = pd.DataFrame({"a": rng.normal(size=200)}), pd.DataFrame({"a": rng.normal(1, 1, 150)})
    wrong = drift.psi_result(ref, cur, method="evidently")  # the old mismatch: another method than the spec's
    with pytest.raises(DriftError, match="method"):
        drift.evidently_report_html(ref, cur, tmp_path / "r.html", method="quantile", measured=wrong)
    tampered = drift.psi_result(ref, cur, method="quantile")
    tampered.psi = tampered.psi * 0.5
    with pytest.raises(DriftError, match="disagrees"):
        drift.evidently_report_html(ref, cur, tmp_path / "r.html", method="quantile", measured=tampered)
    assert not (tmp_path / "r.html").exists()


# ------------------------------------------------------------------ drift features per architecture


class _Own(Architecture):
    kind = "own"

    def drift_features(self, family, spec, batch):
        return pd.DataFrame({"own": batch.data})

    def reference_frame(self, family, spec, dataset):
        return pd.DataFrame({"own": [1.0], "y": [0]})


class _Plain(Architecture):
    kind = "plain"


class _Fam(Family):
    name = "hooktest"
    architectures = {"own": _Own(), "plain": _Plain()}

    def drift_features(self, spec, batch):
        return pd.DataFrame({"family": batch.data})

    def reference_frame(self, spec, dataset):
        return pd.DataFrame({"family": [1.0], "y": [0]})


def _spec_of(kind: str) -> ModelSpec:
    return ModelSpec(name=f"hooktest-y-{kind}", family="hooktest", task="y", architecture={"kind": kind})


def test_drift_features_per_architecture_hook():
    fam, batch = _Fam(), Batch(path="-", ids=[0, 1], labels=None, data=[0.5, 0.7])
    assert list(fam.model_drift_features(_spec_of("own"), batch).columns) == ["own"]
    assert list(fam.model_drift_features(_spec_of("plain"), batch).columns) == ["family"]  # the default
    assert list(fam.model_reference_frame(_spec_of("own"), {}).columns) == ["own", "y"]
    assert list(fam.model_reference_frame(_spec_of("plain"), {}).columns) == ["family", "y"]
    # every registered architecture but mood's PAT keeps its family's drift features (today's behaviour)
    own = sorted(f"{name}/{kind}" for name, f in families().items() for kind, a in f.architectures.items()
                 if type(a).drift_features is not Architecture.drift_features)
    assert own == ["mood/pat"]


# ------------------------------------------------------------------ PAT's own input


def test_pat_drift_features_on_generated_minutes(mood_day):
    from biotune.family import get_family
    from biotune.mood.activity_week import ACTIVITY_WEEK_FEATURE_NAMES, activity_week_features
    from biotune.mood.features import SLEEP_FEATURE_NAMES
    from biotune.mood.scoring import reference_features

    (ra, rs), (ca, cs) = mood_day
    ref = activity_week_features(ra, rs)
    assert list(ref.columns) == ACTIVITY_WEEK_FEATURE_NAMES and len(ref) == len(ra)
    assert ref["sleep_share"].dropna().between(0, 1).all() and ref["missing_share"].between(0, 1).all()
    assert ref["sleep_share"].notna().mean() > 0.9  # NaN only for a week never scored (all non-wear)
    night, day = ref[["activity_h02", "activity_h03"]].mean().mean(), ref[["activity_h14", "activity_h15"]].mean().mean()
    assert night < day  # people sleep at night in the generator, and the features see it
    hand = np.nanmean(ra[0].reshape(7, 24, 60)[:, 14, :])
    assert ref.loc[0, "activity_h14"] == pytest.approx(hand)
    shifted = drift.psi(ref, activity_week_features(ca, cs), method="quantile", bins=10)
    assert (shifted >= 0.2).sum() >= 3  # the generator's later, shorter sleep shows on PAT's input

    mood = get_family("mood")
    batch = Batch(path="-", ids=np.arange(len(ca)), labels=None, data={"activity": ca, "state": cs})
    pat = ModelSpec(name="mood-depression-pat", family="mood", task="depression", architecture={"kind": "pat"})
    xgb = ModelSpec(name="mood-depression-xgb", family="mood", task="depression", architecture={"kind": "xgboost"})
    assert list(mood.model_drift_features(xgb, batch).columns) == SLEEP_FEATURE_NAMES
    pat_features = mood.model_drift_features(pat, batch)
    assert list(pat_features.columns[: len(ACTIVITY_WEEK_FEATURE_NAMES)]) == ACTIVITY_WEEK_FEATURE_NAMES
    # the logged reference picks the columns: PAT's own for new champions, the 36 for older ones
    assert list(reference_features(ref.assign(depression=0)).columns) == ACTIVITY_WEEK_FEATURE_NAMES
    old = pat_features[SLEEP_FEATURE_NAMES].assign(depression=0)
    assert list(reference_features(old).columns) == SLEEP_FEATURE_NAMES
