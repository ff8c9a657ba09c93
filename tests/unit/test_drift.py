"""biotune.drift: PSI equal to Evidently 0.7.23's stattest, quantile PSI, errors, predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biotune import drift
from biotune.errors import DriftError

ev_stattests = pytest.importorskip("evidently.legacy.calculations.stattests")
from evidently.legacy.core import ColumnType  # noqa: E402

psi_stat_test = ev_stattests.psi_stat_test


def evidently_psi(ref: pd.Series, cur: pd.Series, kind: ColumnType = ColumnType.Numerical) -> float:
    """Evidently's normal path: ±inf -> NaN, dropna, then its PSI stattest."""
    r = ref.replace([-np.inf, np.inf], np.nan).dropna()
    c = cur.replace([-np.inf, np.inf], np.nan).dropna()
    return float(psi_stat_test(r, c, kind, None).drift_score)


rng = np.random.default_rng(20240611)


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    n, m = 3000, 2000
    base = rng.normal(size=n)
    return {
        "normal": (base, rng.normal(size=m)),
        "shifted": (base, rng.normal(0.7, 1.3, m)),
        "constant": (np.full(n, 3.5), np.full(m, 3.5)),
        "constant_vs_moved": (np.full(n, 3.5), rng.normal(3.5, 1, m)),
        "one_bin": (base, np.full(m, 0.1234)),
        "one_bin_outlier": (base, np.r_[np.full(m - 3, 1e6), base[:3]]),
        "disjoint": (base, rng.normal(50, 1, m)),
        "integers": (rng.integers(0, 200, n), rng.integers(30, 260, m)),
        "few_integers": (rng.integers(0, 6, n), rng.integers(0, 9, m)),
        "twenty_one_values": (rng.integers(0, 21, n).astype(float), rng.integers(0, 21, m).astype(float)),
        "rounded_grid": (np.round(base, 1), np.round(rng.normal(0.2, 1, m), 1)),
        "small_n": (rng.normal(size=25), rng.normal(0.5, 1, 7)),
        "tiny_n": (np.arange(22.0), np.array([0.0, 21.0])),
        "float32": (base.astype(np.float32), rng.normal(0.1, 1, m).astype(np.float32)),
        "large_offset": (1e6 + base, 1e6 + rng.normal(0.2, 1, m)),
        "power_of_two_n": (rng.normal(size=1024), rng.normal(size=1024)),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_evidently_mode_equals_evidently_stattest(name):
    r, c = _cases()[name]
    ref = pd.DataFrame({"x": r})
    cur = pd.DataFrame({"x": c})
    ours = drift.psi(ref, cur, method="evidently")["x"]
    assert ours == pytest.approx(evidently_psi(ref["x"], cur["x"]), abs=1e-6, rel=1e-9)


def test_evidently_mode_vectorised_frame_with_nan_and_inf():
    cases = _cases()
    n = 3000
    ref = pd.DataFrame({k: v[0] for k, v in cases.items() if len(v[0]) == n})
    cur = pd.DataFrame({k: v[1] for k, v in cases.items() if len(v[0]) == n})
    ref.loc[::7, "normal"] = np.nan
    cur.loc[::5, "shifted"] = np.inf
    cur["integers"] = cur["integers"].astype(float)
    cur.loc[::11, "integers"] = -np.inf
    got = drift.psi(ref, cur, method="evidently")
    for col in ref.columns:
        assert got[col] == pytest.approx(evidently_psi(ref[col], cur[col]), abs=1e-6, rel=1e-9), col


def test_values_exactly_on_bin_edges_binned_like_numpy():
    """Values placed on the Sturges edges (and within 1 ulp of them) must land where numpy puts them."""
    for seed in range(8):
        g = np.random.default_rng(seed)
        scale = 10.0 ** g.integers(-3, 4)
        lo, hi = -3.0 * scale, 7.0 * scale
        r = np.r_[lo, hi, g.uniform(lo, hi, 498)]
        m = 300
        # edges depend only on (min, max, n): build them for the final sizes
        edges = np.histogram_bin_edges(np.r_[lo, hi, np.full(len(r) + m - 2, lo)], bins="sturges")
        on = np.r_[edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)]
        on = on[(on >= lo) & (on <= hi)]
        c = np.r_[on, g.uniform(lo, hi, m - on.size)]
        assert np.array_equal(np.histogram_bin_edges(np.r_[r, c], bins="sturges"), edges)
        ref, cur = pd.DataFrame({"x": r}), pd.DataFrame({"x": c})
        assert drift.psi(ref, cur, method="evidently")["x"] == pytest.approx(
            evidently_psi(ref["x"], cur["x"]), abs=1e-9
        )


def test_sturges_edges_match_numpy():
    g = np.random.default_rng(3)
    for n in (2, 3, 7, 64, 100, 1023, 1024, 4096, 10_000):
        for dtype in (np.float64, np.float32, np.int64, np.int32):
            a = (g.normal(size=n) * 1000).astype(dtype)
            got = drift._sturges_edges(a.min(), a.max(), a.size, a.dtype)
            want = np.histogram_bin_edges(a, bins="sturges")
            assert got.dtype == want.dtype and np.array_equal(got, want), (n, dtype)


def test_categorical_equals_evidently():
    ref = pd.Series(rng.choice(["a", "b", "c", "d"], 4000, p=[0.4, 0.3, 0.2, 0.1]))
    cur = pd.Series(rng.choice(["a", "b", "c", "e"], 1500, p=[0.1, 0.2, 0.3, 0.4]))
    want = evidently_psi(ref, cur, ColumnType.Categorical)
    assert drift.psi_categorical(ref, cur) == pytest.approx(want, abs=1e-9)
    # the frame version, with a category dtype carrying an unused category and a NaN
    rf = pd.DataFrame({"g": ref.astype(pd.CategoricalDtype(list("abcdez")))})
    cf = pd.DataFrame({"g": cur.astype(pd.CategoricalDtype(list("abcdez")))})
    rf.loc[3, "g"] = np.nan
    got = drift.psi_categorical_frame(rf, cf)["g"]
    assert got == pytest.approx(evidently_psi(rf["g"], cf["g"], ColumnType.Categorical), abs=1e-9)
    # small sample: Evidently's floor is 1e-4 there
    assert drift.psi_categorical(["a", "a", "b"], ["a", "c"]) == pytest.approx(
        evidently_psi(pd.Series(["a", "a", "b"]), pd.Series(["a", "c"]), ColumnType.Categorical), abs=1e-9
    )


def test_mixed_frame_dispatches_by_dtype():
    ref = pd.DataFrame({"num": rng.normal(size=2000), "cat": rng.choice(list("xyz"), 2000), "flag": rng.random(2000) < 0.3})
    cur = pd.DataFrame({"num": rng.normal(1, 1, 900), "cat": rng.choice(list("xyw"), 900), "flag": rng.random(900) < 0.6})
    res = drift.psi_result(ref, cur, method="evidently")
    assert res.kinds == {"num": "numerical", "cat": "categorical", "flag": "categorical"}
    assert res.psi["num"] == pytest.approx(evidently_psi(ref["num"], cur["num"]), abs=1e-9)
    assert res.psi["cat"] == pytest.approx(evidently_psi(ref["cat"], cur["cat"], ColumnType.Categorical), abs=1e-9)
    assert res.psi["flag"] == pytest.approx(evidently_psi(ref["flag"], cur["flag"], ColumnType.Categorical), abs=1e-9)


def test_quantile_mode_identical_near_zero_and_shift_large():
    ref = pd.DataFrame({"a": rng.normal(size=20_000), "b": rng.exponential(size=20_000)})
    same = pd.DataFrame({"a": rng.normal(size=20_000), "b": rng.exponential(size=20_000)})
    shifted = pd.DataFrame({"a": rng.normal(1.0, 1, 20_000), "b": rng.exponential(3, 20_000)})
    assert (drift.psi(ref, ref)).abs().max() < 1e-12
    assert drift.psi(ref, same).max() < 0.01
    assert (drift.psi(ref, shifted) > 0.25).all()


def test_quantile_mode_few_values_collapses_edges_and_floors():
    ref = pd.DataFrame({"k": np.repeat([0, 1, 2], [600, 300, 100]), "c": np.ones(1000)})
    cur = pd.DataFrame({"k": np.repeat([0, 1, 2], [100, 300, 600]), "c": np.ones(1000)})
    got = drift.psi(ref, cur, method="quantile", bins=10)
    shares_r, shares_c = np.array([0.6, 0.3, 0.1]), np.array([0.1, 0.3, 0.6])
    assert got["k"] == pytest.approx(np.sum((shares_r - shares_c) * np.log(shares_r / shares_c)))
    assert got["c"] == 0.0
    moved = drift.psi(ref, pd.DataFrame({"k": np.full(50, 5), "c": np.full(50, 7.0)}))
    # everything in a bin the reference never filled: floored at EPS, finite and large
    assert np.isfinite(moved).all() and (moved > 1).all()


def test_errors_empty_missing_and_extra_columns():
    ref = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    with pytest.raises(DriftError, match="current data has no rows"):
        drift.psi(ref, ref.iloc[:0])
    with pytest.raises(DriftError, match="reference data has no rows"):
        drift.psi(ref.iloc[:0], ref, method="evidently")
    with pytest.raises(DriftError, match=r"missing from the current data: \['b'\]") as e:
        drift.psi(ref, ref[["a"]])
    assert e.value.where and e.value.fix
    with pytest.raises(DriftError, match="unknown PSI method"):
        drift.psi(ref, ref, method="kl")
    with pytest.raises(DriftError, match="numerical .* but categorical"):
        drift.psi(ref, ref.assign(b=ref["b"].astype(str)))
    res = drift.psi_result(ref, ref.assign(z=1.0, y="q"))
    assert res.extra_columns == ["z", "y"] and list(res.psi.index) == ["a", "b"]
    assert drift.psi(ref, ref.assign(z=1.0)).attrs["extra_columns"] == ["z"]


@pytest.mark.parametrize("method", ["quantile", "evidently"])
def test_all_nan_column_is_reported_not_zero(method):
    ref = pd.DataFrame({"a": rng.normal(size=200), "gone": np.nan, "s": ["x"] * 200})
    cur = pd.DataFrame({"a": rng.normal(size=100), "gone": rng.normal(size=100), "s": [None] * 100})
    res = drift.psi_result(ref, cur, method=method)
    assert np.isnan(res.psi["gone"]) and np.isnan(res.psi["s"]) and np.isfinite(res.psi["a"])
    assert "gone" in res.not_computable["gone"] and "reference" in res.not_computable["gone"]
    assert "current" in res.not_computable["s"]
    summary = drift.drift_summary(res.psi)
    assert set(summary["not_computable"]) == {"gone", "s"} and summary["n_computable"] == 1
    assert any("gone" in r for r in summary["reasons"])


def test_drift_summary():
    s = pd.Series({"a": 0.05, "b": 0.21, "c": 0.4, "d": np.nan})
    out = drift.drift_summary(s, threshold=0.2, critical=0.25)
    assert out["drifted"] == ["c", "b"] and out["n_drifted"] == 2 and out["critical"]
    assert out["max_psi"] == 0.4 and out["max_feature"] == "c" and out["critical_features"] == ["c"]
    assert out["reasons"][0].startswith("c: PSI 0.400 >= critical")
    calm = drift.drift_summary(pd.Series({"a": 0.01}))
    assert not calm["drift"] and not calm["critical"] and "no feature reached" in calm["reasons"][0]
    with pytest.raises(DriftError):
        drift.drift_summary(s, threshold=0.3, critical=0.2)


def test_prediction_drift_collapse_and_psi():
    classes = list(range(5))
    ref = rng.choice(classes, 2000)
    cur = np.r_[np.zeros(900, int), rng.choice(classes, 100)]
    out = drift.prediction_drift(ref, cur, classes=classes)
    assert out["collapse"] and out["top_classes"][0] == "0" and out["top1_share"] >= 0.9
    assert out["psi"] == pytest.approx(
        evidently_psi(pd.Series(ref), pd.Series(cur), ColumnType.Categorical), abs=1e-9
    )
    assert any("class 0 takes" in r for r in out["reasons"])
    two = drift.prediction_drift(ref, np.r_[np.full(450, 1), np.full(400, 3), rng.choice(classes, 150)])
    assert two["collapse"] and any("classes 1 and 3" in r for r in two["reasons"])
    calm = drift.prediction_drift(ref, rng.choice(classes, 1000))
    assert not calm["collapse"] and calm["psi"] < 0.05
    # binary task where the reference is itself imbalanced: concentrated but no collapse
    b_ref = (rng.random(1000) < 0.1).astype(int)
    b_cur = (rng.random(1000) < 0.12).astype(int)
    flat = drift.prediction_drift(b_ref, b_cur)
    assert not flat["collapse"] and "not a collapse" in flat["reasons"][0]
    # probabilities are accepted (argmax)
    proba = np.eye(3)[np.zeros(50, int)]
    assert drift.prediction_drift(np.eye(3)[rng.choice(3, 60)], proba)["collapse"]
    with pytest.raises(DriftError):
        drift.prediction_drift(ref, [])


def test_confidence_summary():
    out = drift.confidence_summary([0.9, 0.1, 0.5, 0.55])
    assert out["mean_confidence"] == pytest.approx((0.9 + 0.9 + 0.5 + 0.55) / 4)
    assert out["share_below"] == 0.5 and out["kind"] == "binary"
    multi = drift.confidence_summary([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    assert multi["mean_confidence"] == pytest.approx(0.55) and multi["share_below"] == 0.5
    with pytest.raises(DriftError):
        drift.confidence_summary([0.2, 1.3])
    with pytest.raises(DriftError):
        drift.confidence_summary([])


def test_evidently_report_html(tmp_path):
    n = 400
    ref = pd.DataFrame({f"f{i}": rng.normal(size=n) for i in range(30)})
    ref["grp"] = rng.choice(list("abc"), n)
    cur = ref.sample(300, random_state=1).reset_index(drop=True)
    cur["f0"] += 3
    out = drift.evidently_report_html(ref, cur, tmp_path / "sub" / "drift.html").path
    html = (tmp_path / "sub" / "drift.html").read_text()
    assert out.endswith("drift.html") and len(html) > 50_000
    assert "f29" in html and "grp" in html
    assert not list((tmp_path / "sub").glob("*.tmp"))
