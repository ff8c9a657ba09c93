"""Per-person calibration (LoRA adapter + continued boosting, time-split gate, fallback) and serving."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from biotune.errors import MissingInputError
from biotune.mood.pat import PATConfig
from biotune.mood.personal import calibrate, crypto, labels, platt, population, predict, store
from biotune.mood.personal.dataset import DailyTable, PersonDays, person_days, series_digest
from biotune.mood.personal.health import import_health
from biotune.mood.personal.names import SLEEP_FEATURE_NAMES
from biotune.mood.personal.synth_files import generate_persons

TINY = PATConfig("tiny", patch_size=144, num_layers=1, num_heads=2, embed_dim=32, key_dim=16, ff_dim=64)
TASK = "depressive"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Five generated persons imported, labelled, featurized; population from three of them."""
    from biotune import monitoring
    from biotune.mood.personal.daily import features_for

    root = tmp_path_factory.mktemp("world")
    mp = pytest.MonkeyPatch()
    mp.setenv(crypto.ENV_KEY, crypto.new_key())
    mp.setenv("BIOTUNE_DRIFT_DB", f"sqlite:///{root / 'biotune.db'}")
    mp.setenv("BIOTUNE_LAKE", str(root / "lake"))
    base = str(root / "store")
    persons = generate_persons(5, root / "persons", days=110, seed=7, filler=0.0)
    series = {}
    for p in persons:
        s, e, r = import_health(p["export_zip"], quarantine=False)
        store.write_import(p["person_id"], s, e, r, base=base)
        series[p["person_id"]] = s
        labels.add_rows(list(csv.DictReader(open(p["labels_csv"]))))
    tables = {}
    for (pid, s), f in zip(series.items(), features_for(list(series.values()))):
        t = DailyTable(np.array(f.index, dtype="datetime64[D]"), f[SLEEP_FEATURE_NAMES].to_numpy(np.float64),
                       f["valid"].to_numpy(bool), series_digest(s))
        store.write_file(pid, "daily.npz.enc", t.to_npz(), base)
        tables[pid] = t
    days = {pid: person_days(crypto.pseudonym(pid), TASK, series[pid], tables[pid], labels.list_labels(pid))
            for pid in series}
    pids = list(series)
    pm = population.train_population([days[p] for p in pids[:3]], TASK, pat_config=TINY, pat_epochs=2, val_every=3,
                                     version="v1", seed=1)
    population.save(pm, root / "population" / TASK)
    yield {"root": root, "base": base, "series": series, "days": days, "pids": pids, "pop": pm, "persons": persons}
    monitoring.dispose()
    mp.undo()


@pytest.fixture(scope="module")
def calibrated(world):
    pid = world["pids"][3]
    outcome = calibrate.calibrate_person(pid, TASK, world["pop"], base=world["base"], pat_epochs=3, seed=1)
    return pid, outcome


def test_names_match_the_feature_code():
    from biotune.mood.features import SLEEP_FEATURE_NAMES as reference

    assert SLEEP_FEATURE_NAMES == reference


def test_numpy_pat_matches_torch_with_and_without_lora():
    import torch

    from biotune.mood.pat import PATClassifier
    from biotune.mood.personal import patnp

    torch.manual_seed(0)
    for cfg in (TINY, "S"):
        model = PATClassifier(cfg).eval()
        x = torch.randn(1, 10080)
        with torch.no_grad():
            ref = model(x).numpy()
        state = patnp.to_numpy_state(model)
        config = {**model.config.__dict__}
        assert np.allclose(patnp.logits(state, config, x.numpy()), ref, atol=2e-4)
    model = PATClassifier(TINY)
    lora_model = calibrate._lora(model, 8, 16)
    for name, p in lora_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)           # peft starts B at 0: make the adapter matter
    lora_model.eval()
    with torch.no_grad():
        ref = lora_model(x).numpy()
    adapter = calibrate.adapter_state(lora_model, train_head=True)
    assert set(k.split(".lora_")[0] for k in adapter if "lora" in k) == {"encoder.layers.0.attention.query",
                                                                       "encoder.layers.0.attention.value"}
    merged = patnp.merge_lora(patnp.to_numpy_state(PATClassifier(TINY).eval()) | {
        k.replace(".base_layer", ""): v for k, v in patnp.to_numpy_state(lora_model).items() if "lora" not in k},
        adapter, 16 / 8)
    assert np.allclose(patnp.logits(merged, TINY.__dict__, x.numpy()), ref, atol=2e-4)


def test_numpy_trees_match_xgboost_with_missing_values():
    import xgboost as xgb

    from biotune.mood.personal.xgbnp import Forest

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 36))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 30]) + rng.normal(size=300) * 0.5 > 0).astype(int)
    model = xgb.XGBClassifier(n_estimators=30, max_depth=3, base_score=0.3).fit(x, y)
    forest = Forest.from_json(bytes(model.get_booster().save_raw("json")))
    assert np.allclose(forest.predict_proba(x), model.predict_proba(x)[:, 1], atol=1e-6)


def test_platt_is_monotone_and_narrows_with_data():
    rng = np.random.default_rng(0)

    def sample(n):
        p = rng.random(n)
        return p, (rng.random(n) < p).astype(int)

    small, big = sample(30), sample(600)
    cs, cb = platt.fit(*small), platt.fit(*big)
    assert (cs[:, 0] >= 0).all()
    grid = np.linspace(0.05, 0.95, 10)
    assert np.all(np.diff(platt.apply(cb, grid)[0]) > 0)
    w_small = np.subtract(*platt.interval(platt.apply(cs, grid)[1])[::-1]).mean()
    w_big = np.subtract(*platt.interval(platt.apply(cb, grid)[1])[::-1]).mean()
    assert w_big < w_small
    flipped = platt.fit(1 - big[0], big[1], n_boot=0)
    assert flipped[0, 0] == 0.0                  # never inverts a ranking: an anti-informative model -> base rate


def test_calibration_outcome(world, calibrated):
    pid, out = calibrated
    assert out.person == crypto.pseudonym(pid) and out.task == TASK
    assert out.population_fingerprint == world["pop"].fingerprint and out.population_version == "v1"
    fit, val, test = (out.split[k] for k in ("fit", "val", "test"))
    assert fit[1] < val[0] and val[1] < test[0]                       # time split, never random
    assert fit[2] + val[2] + test[2] == out.n_days >= 30
    assert out.metrics["population"]["n"] == out.metrics["personal"]["n"] == test[2]   # the same later days
    assert set(out.metrics["personal"]["components"]) == {"xgb", "pat"}
    assert out.decision in ("personal", "population") and out.reasons
    assert {"xgb", "pat", "ensemble"} <= set(out.calibrators) and 0 < out.uncertain_from < 1
    # a threshold above every probability exactly when the FPR bound could not be met on these days
    assert (out.threshold < 1) == out.fpr_bound["certified"] and out.threshold >= out.uncertain_from
    assert out.seconds["total"] < 60
    saved = calibrate.read_outcome(pid, TASK, world["base"])
    assert saved["decision"] == out.decision and saved["metrics"] == json.loads(json.dumps(out.metrics))
    if out.decision == "personal":
        assert 0 < out.adapter_bytes < 1_000_000
        assert "personal AUC" in out.reasons[-1] and "beats" in out.reasons[-1]


def test_continued_boosting_keeps_the_population_trees(world):
    import xgboost as xgb

    d = world["days"][world["pids"][3]]
    fit, val, _ = calibrate.split_by_time(len(d), 0.4)
    F, V = d.take(fit), d.take(val)
    pop = world["pop"].xgb.get_booster()
    b2 = calibrate.boost_on(world["pop"].xgb, F.X, F.y, V.X, V.y, weight=2.0, rounds=15)
    b1 = calibrate.boost_on(world["pop"].xgb, F.X, F.y, V.X, V.y, weight=1.0, rounds=15)
    n = pop.num_boosted_rounds()
    assert b2.num_boosted_rounds() >= n
    assert b2.get_dump()[:n] == pop.get_dump()                     # the champion's trees, unchanged
    m = xgb.DMatrix(F.X, feature_names=list(SLEEP_FEATURE_NAMES))
    assert not np.allclose(b2.predict(m), b1.predict(m)) or b2.num_boosted_rounds() == n


def test_fallbacks_are_recorded(world):
    d = world["days"][world["pids"][4]]
    out, art = calibrate.calibrate_days(d, world["pop"], policy={"personal_min_days": 10_000})
    assert out.decision == "population" and "only" in out.reasons[0] and "labelled days" in out.reasons[0]
    assert art == {} and out.calibrators
    one_class = PersonDays(d.person, TASK, d.dates, d.X, d.weeks, np.where(np.arange(len(d)) > len(d) * 0.5, 0, d.y))
    out, _ = calibrate.calibrate_days(one_class, world["pop"])
    assert out.decision == "population" and "one class" in out.reasons[0]
    out, art = calibrate.calibrate_days(d, world["pop"], policy={"personal_margin": 1.0}, pat_epochs=1)
    assert out.decision == "population" and "does not beat" in out.reasons[-1] and "adapter" not in art
    # a gain over a population that is poor on this person is not enough: the spec's minimum holds too
    out, art = calibrate.calibrate_days(d, world["pop"], policy={"personal_margin": -1.0, "personal_min_auc": 1.01},
                                        pat_epochs=1)
    assert out.decision == "population" and "misses the minimum 1.010" in out.reasons[-1] and "adapter" not in art


def test_prediction_serves_and_flags(world, calibrated):
    pid, out = calibrated
    pops = predict.load_populations([TASK], str(world["root"] / "population"))
    (p,) = predict.predict(pid, pops, base=world["base"])
    assert p.served_by == out.decision and p.population_version == "v1"
    assert 0 <= p.interval[0] <= p.probability <= p.interval[1] <= 1
    assert set(p.components) == {"xgb", "pat"} and p.decision in ("positive", "negative", "uncertain")
    (q,) = predict.predict(pid, pops, base=world["base"], max_width=0.0)
    assert q.decision == "uncertain" and "withheld" in q.reason
    # between the bounded threshold and the point threshold a day is withheld, saying why
    saved = calibrate.read_outcome(pid, TASK, world["base"])
    banded = {**saved, "threshold": 2.0, "uncertain_from": 0.0}
    store.write_file(pid, calibrate.calibration_file(TASK, calibrate.OUTCOME),
                     json.dumps(banded).encode(), world["base"])
    try:
        (b,) = predict.predict(pid, pops, base=world["base"], max_width=1.0)
        assert b.decision == "uncertain" and "false-positive rate is bounded" in b.reason
    finally:
        store.write_file(pid, calibrate.calibration_file(TASK, calibrate.OUTCOME),
                         json.dumps(saved).encode(), world["base"])
    never = world["pids"][4]
    (r,) = predict.predict(never, pops, base=world["base"])
    assert r.served_by == "population" and "not calibrated" in r.reason
    with pytest.raises(MissingInputError, match="unknown person"):
        predict.predict("nobody", pops, base=world["base"])


def test_adapter_is_never_mixed_with_another_population(world, tmp_path):
    pid = world["pids"][3]
    base = str(tmp_path / "store")
    for name in (store.MINUTES, store.REPORT, "daily.npz.enc"):
        store.write_file(pid, name, store.read_file(pid, name, world["base"]), base)
    out = calibrate.calibrate_person(pid, TASK, world["pop"], base=base, pat_epochs=1,
                                     policy={"personal_margin": -1.0})          # promote whatever it scores
    assert out.decision == "personal" and 0 < out.adapter_bytes < 1_000_000
    (same,) = predict.predict(pid, predict.load_populations([TASK], str(world["root"] / "population")), base=base)
    assert same.served_by == "personal"
    newer = population.train_population([world["days"][p] for p in world["pids"][:3]], TASK, pat_config=TINY,
                                        pat_epochs=1, val_every=3, version="v2", seed=2)
    population.save(newer, tmp_path / "v2" / TASK)
    (p,) = predict.predict(pid, predict.load_populations([TASK], str(tmp_path / "v2")), base=base)
    assert p.served_by == "population" and "re-calibrate" in p.reason and "v1" in p.reason and "v2" in p.reason


def test_sleep_csv_person_uses_xgboost_only(world):
    from biotune.mood.personal.sleepcsv import import_sleep_csv

    p = world["persons"][4]
    s, e, r = import_sleep_csv(p["sleep_csv"], quarantine=False)
    store.write_import("csv-person", s, e, r, base=world["base"])
    for row in csv.DictReader(open(p["labels_csv"])):
        labels.add("csv-person", row["kind"], row["start"], row["end"],
                   int(row["severity"]) if row["severity"] else None, require_known=False)
    out = calibrate.calibrate_person("csv-person", TASK, world["pop"], base=world["base"])
    assert any("no activity data" in r for r in out.reasons)
    assert set(out.metrics.get("personal", {}).get("components", {"xgb": 0})) == {"xgb"}
    (pred,) = predict.predict("csv-person", predict.load_populations([TASK], str(world["root"] / "population")),
                              base=world["base"])
    assert set(pred.components) == {"xgb"} and not pred.disagreement


def test_cli_predict(world, calibrated, capsys):
    from biotune.mood.personal import cli

    pid, _ = calibrated
    parser = argparse.ArgumentParser()
    mood = parser.add_subparsers(dest="group").add_parser("mood").add_subparsers(dest="cmd")
    cli.add_commands(mood)
    args = parser.parse_args(["mood", "predict", "--person", pid, "--population", str(world["root"] / "population"),
                              "--store", world["base"], "--json"])
    assert args.func(args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["task"] == TASK and row["served_by"] in ("personal", "population")
    args = parser.parse_args(["mood", "predict", "--person", pid, "--population", str(world["root"] / "nothing"),
                              "--store", world["base"]])
    with pytest.raises(MissingInputError, match="no population models"):
        args.func(args)


def test_serving_path_imports_no_torch_pandas_or_xgboost(world, calibrated):
    pid, _ = calibrated
    code = f"""
import sys, json
sys.path.insert(0, {str(Path(__file__).resolve().parents[2] / 'include')!r})
from biotune.mood.personal import predict
pops = predict.load_populations([{TASK!r}], {str(world['root'] / 'population')!r})
out = predict.predict({pid!r}, pops, base={world['base']!r})
print(json.dumps({{"heavy": [m for m in ("torch", "pandas", "xgboost", "sklearn") if m in sys.modules],
                  "p": out[0].probability}}))
"""
    env = {**__import__("os").environ}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [] and got["p"] is not None
