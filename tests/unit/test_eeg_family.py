"""The EEG family's adapter to the contract: settings, sweep planning, batches, checkpoint choice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from biotune.errors import MissingInputError, SpecError, WeightsError
from biotune.family import get_family
from biotune.specs import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "models" / "eeg-remission-mamba2.yaml"
TINY = {"d_state": 8, "headdim": 8, "chunk_size": 8}


def _spec(tmp_path, **changes):
    import yaml

    raw = yaml.safe_load(SPEC.read_text())
    for key, value in changes.items():
        section, _, field = key.partition(".")
        raw[section][field] = value
    path = tmp_path / "eeg-remission-mamba2.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


def test_registered_and_light_to_import():
    fam = get_family("eeg")
    assert fam.fine_tune_dag_id == "eeg_sft" and set(fam.architectures) == {"mamba2"}
    probe = ("import sys, json; import biotune.eeg.family, biotune.eeg.sweep; "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'pandas', 'numpy', 'mlflow'})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT / "include")}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_run_config_from_spec_and_params(tmp_path):
    from biotune.eeg.pipeline import run_config

    spec = load_spec(SPEC)
    cfg = run_config(spec)
    assert (cfg.d_model, cfg.n_layers, cfg.mask_ratio, cfg.style, cfg.freeze_backbone) == (64, 2, 0.5, "mae", True)
    assert cfg.backbone == {"d_state": 64, "headdim": 32, "expand": 2, "chunk_size": 64}
    cfg = run_config(spec, {"d_model": 32, "mask_ratio": 0.25, "mask_style": "bert", "epochs": 3, "freeze_backbone": False,
                            "n_layers": None, "checkpoint": ""})
    assert (cfg.d_model, cfg.n_layers, cfg.mask_ratio, cfg.style, cfg.epochs) == (32, 2, 0.25, "bert", 3)
    assert cfg.freeze_backbone is False and cfg.checkpoint is None
    assert run_config(_spec(tmp_path, **{"training.mode": "full"})).freeze_backbone is False
    with pytest.raises(SpecError, match="architecture.params.d_modle"):
        run_config(_spec(tmp_path, **{"architecture.params": {"d_modle": 64}}))
    with pytest.raises(SpecError, match="pretrain must be one of"):
        run_config(spec, {"pretrain": "sometimes"})
    with pytest.raises(SpecError, match=r"mask_ratio must be in \(0, 1\)"):
        run_config(spec, {"mask_ratio": 1.0})


def test_sweep_variants_and_conf():
    from biotune.eeg import sweep

    planned = sweep.variants({"mask_ratios": [0.25, 0.5, 0.5], "mask_styles": ["mae", "bert"]})
    assert [v["label"] for v in planned] == ["m25_mae", "m50_mae", "m25_bert", "m50_bert"]
    assert [v["label"] for v in sweep.variants({})] == ["m25_mae", "m50_mae", "m75_mae"]
    with pytest.raises(SpecError, match="not in"):
        sweep.variants({"mask_ratios": [0.5, 1.5]})
    with pytest.raises(SpecError, match="unknown masking style"):
        sweep.variants({"mask_styles": ["gpt"]})
    form = sweep.sweep_params()
    assert {"mask_ratios", "mask_styles", "source", "labels", "epochs"} <= set(form) and "mask_ratio" not in form
    sweep.check_conf({"mask_ratios": [0.5]}, form)
    with pytest.raises(SpecError, match="mask_ratio"):
        sweep.check_conf({"mask_ratio": 0.5}, form)


def test_sources_name_the_missing_file(tmp_path):
    fam = get_family("eeg")
    (tmp_path / "recordings").mkdir()
    with pytest.raises(MissingInputError, match="no labels file"):
        fam.sources({"source": str(tmp_path / "recordings"), "labels": str(tmp_path / "labels.csv")})
    (tmp_path / "labels.csv").write_text("Participant,Remission\nP001,1\n")
    assert fam.sources({"source": str(tmp_path / "recordings"), "labels": str(tmp_path / "labels.csv")}) == [
        {"path": str(tmp_path / "labels.csv"), "suite": "eeg_labels", "reader": "csv"}]


def test_demo_batch_has_the_rows_asked_for(home):
    from biotune import validation

    fam = get_family("eeg")
    path = fam.demo_batch("2026-03-01", 7, seed=2)
    assert path == fam.batch_uri("2026-03-01")
    batch = fam.read_batch(path)
    assert len(batch) == 7 and len(set(batch.ids)) == 7
    assert list(batch.labels.columns) == ["remission"] and set(batch.labels["remission"].dropna()) <= {0.0, 1.0}
    x = fam.batch_inputs(None, batch)
    assert x.shape == (7, 40, 4, 64) and x.dtype == np.float32
    feats = fam.drift_features(None, batch)
    assert len(feats) == 7 and "alpha_asymmetry" in feats.columns and np.isfinite(feats.to_numpy()).all()
    outcome = validation.run_suite(fam.batch_validation_frame(path), "eeg_batch", where=path)
    assert outcome.success


def test_flat_channel_fails_the_batch_suite(home):
    from biotune import validation

    fam = get_family("eeg")
    frame = fam.batch_validation_frame(fam.demo_batch("2026-03-02", 6, seed=4))
    frame.loc[2, "rms_AF7"] = 0.0  # an electrode off: no signal
    assert not validation.run_suite(frame, "eeg_batch", where="batch").success


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    from biotune.eeg.dataset import prepare_dataset
    from biotune.eeg.synth import write_dataset

    root = tmp_path_factory.mktemp("eeg_family")
    gen = write_dataset(str(root / "src"), participants=9, seconds=12, seed=5, fmt="plain")
    return prepare_dataset(gen["source"], gen["labels"], str(root / "run"), window_seconds=2), root


def test_checkpoint_given_discovered_or_missing(small_dataset, tmp_path):
    from biotune.eeg.pipeline import prepare_backbone
    from biotune.eeg.pretrain import pretrain
    from biotune.eeg.primary import read_primary

    dataset, root = small_dataset
    spec = _spec(tmp_path, **{"architecture.params": {"d_model": 16, "n_layers": 1, **TINY}})
    params = {"pretrain": "never", "checkpoints_root": str(root / "ck")}
    with pytest.raises(MissingInputError, match="no pretrained checkpoint mamba2_eeg_d16_l1_m50_mae") as err:
        prepare_backbone(spec, dataset, params)
    assert "biotune eeg pretrain" in err.value.fix
    ck = pretrain(read_primary(dataset["primary"]), str(root / "ck"), d_model=16, n_layers=1, backbone=TINY,
                  epochs=1, num_threads=1)
    found = prepare_backbone(spec, dataset, params)
    assert found["origin"] == "discovered" and found["checkpoint"] == ck["path"] and found["pretraining_run_id"] is None
    assert found["dataset"]["dataset_name"] == dataset["dataset_name"]
    given = prepare_backbone(spec, dataset, {**params, "checkpoint": ck["path"]})
    assert given["origin"] == "given"
    other = dict(dataset, sub_window_seconds=0.5)  # a dataset tokenised differently: the checkpoint does not fit
    with pytest.raises(WeightsError, match="tokens.sub_samples"):
        prepare_backbone(spec, other, {**params, "checkpoint": ck["path"]})


def test_participant_metrics_vote_over_windows():
    from biotune.eeg.pipeline import participant_metrics

    ids = np.array(["a", "a", "b", "b", "c", "c"])
    y = np.array([1, 1, 0, 0, 1, 1])
    p = np.array([0.9, 0.3, 0.2, 0.4, 0.7, 0.6])  # means: a 0.6, b 0.3, c 0.65
    m = participant_metrics(ids, y, p)
    assert m["n"] == 3 and m["accuracy"] == 1.0 and m["auc"] == 1.0


def test_source_folder_layouts(tmp_path):
    fam = get_family("eeg")
    (tmp_path / "recordings" / "P001").mkdir(parents=True)
    (tmp_path / "labels.csv").write_text("Participant,Remission\nP001,1\n")
    expected = (str(tmp_path / "recordings"), str(tmp_path / "labels.csv"))
    assert fam._paths({"source": str(tmp_path)}) == expected  # the generator's / landing folder's layout
    assert fam._paths({"source": str(tmp_path / "recordings")}) == expected  # labels beside the recordings
    assert fam._paths({"source": str(tmp_path / "recordings"), "labels": "/x/l.csv"})[1] == "/x/l.csv"
    assert fam.sources({"source": str(tmp_path)})[0]["path"] == expected[1]
