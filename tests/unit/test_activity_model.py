"""The CNN-BiLSTM (Keras 3 / TensorFlow) and head-only transfer, on tiny configs and tiny
generated data: exact parameter count, save/load with the architecture check, training above
chance, the transfer policy (refusals, frozen layers untouched, 30/70 mix, metrics) and the
workflow that refuses to tune while the diagnostic fails."""

from __future__ import annotations

import os

os.environ.setdefault("BIOTUNE_TF_THREADS", "1")  # before TensorFlow starts: the machine is shared

import numpy as np
import pytest

from biotune.activity import CLASSES, synth
from biotune.activity.config import read_training_config
from biotune.activity.model import (
    SEED_PARAMETERS,
    SIGNATURE,
    build_model,
    load_model,
    parameter_count,
    predict_proba,
    save_model,
    train_source,
)
from biotune.activity.transfer import check_transfer_data, confusion_plot, freeze_head_only, head_only_transfer
from biotune.activity.windows import WindowSet
from biotune.activity.workflow import split_people, transfer_model, windows
from biotune.errors import DataValidationError, WeightsError

KW = dict(bouts_per_class=1, bout_seconds=(16.0, 18.0))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("activity_model")
    paths = synth.write_demo(out, seed=2, source_persons=3, garmin_persons=2, mismatches=False, **KW)
    synth.write_mismatch(out / "bad", "wrong_units", persons=2, seed=2, **KW)
    paths["bad"] = str(out / "bad")
    cfg = read_training_config(paths["config"])
    paths["cfg"] = cfg
    paths["src"] = windows(paths["source"], cfg)
    paths["gar"] = windows(paths["garmin"], cfg)
    return paths


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    train, val = split_people(demo["src"])
    model, history = train_source(train, val, size="small", epochs=4, batch_size=16, patience=4, seed=0)
    path = save_model(model, tmp_path_factory.mktemp("m") / "source.keras")
    return model, history, path, val


def test_seed_architecture_parameter_count():
    model = build_model("seed")
    assert model.count_params() == parameter_count("seed") == SEED_PARAMETERS == 499_131
    assert tuple(type(layer).__name__ for layer in model.layers) == SIGNATURE
    assert model.input_shape == (None, 200, 6) and model.output_shape == (None, 11)
    assert build_model("tiny").count_params() == parameter_count("tiny") < 20_000


def test_train_save_load(trained, demo):
    model, history, path, val = trained
    # it learns: training accuracy (batch statistics) well above chance (0.09) after 4 short epochs;
    # held-out accuracy is not asserted: BatchNorm's moving averages need more steps than a test has
    assert history["accuracy"][-1] > 0.3 and history["loss"][-1] < history["loss"][0]
    proba = predict_proba(model, val.x)
    assert proba.shape == (len(val), 11) and np.allclose(proba.sum(1), 1, atol=1e-5)
    loaded = load_model(path)
    assert np.allclose(predict_proba(loaded, val.x[:8]), proba[:8], atol=1e-5)


def test_refuses_other_architectures(tmp_path):
    import keras

    other = keras.Sequential([keras.Input((200, 6)), keras.layers.Flatten(), keras.layers.Dense(11, activation="softmax")])
    other.save(tmp_path / "other.keras")
    with pytest.raises(WeightsError, match="not the seed's 1D-CNN-BiLSTM") as e:
        load_model(tmp_path / "other.keras")
    assert "models/pretrained" in e.value.fix
    five = build_model("tiny", n_classes=5)
    five.save(tmp_path / "five.keras")
    with pytest.raises(WeightsError, match=r"Dense\(5, softmax\)"):
        load_model(tmp_path / "five.keras")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="cannot load"):
        load_model(tmp_path / "broken.keras")
    (tmp_path / "model.h5").write_bytes(b"")
    with pytest.raises(WeightsError, match="not a Keras 3 .keras file"):
        load_model(tmp_path / "model.h5")


def test_transfer_refusals(demo):
    gar = demo["gar"]
    with pytest.raises(DataValidationError) as e:
        check_transfer_data(gar, min_windows=10_000)
    assert "fewer than the 10000 required" in str(e.value)
    one = gar.subset(gar.person == gar.person[0])
    one.session[:] = one.session[0]
    with pytest.raises(DataValidationError, match="one person/session"):
        check_transfer_data(one, min_windows=10)
    unlabelled = WindowSet(gar.x, None, gar.session, gar.person, gar.start_s)
    with pytest.raises(DataValidationError, match="unlabelled"):
        check_transfer_data(unlabelled)


def test_head_only_transfer(trained, demo, tmp_path):
    _, _, path, _ = trained
    model = load_model(path)
    frozen_before = [w.copy() for w in (layer.get_weights() for layer in model.layers[:-4]) for w in w]
    head_before = model.layers[-1].get_weights()[0].copy()
    result = head_only_transfer(model, demo["src"], demo["gar"], epochs=2, patience=2, min_new_windows=50, seed=0)
    frozen_after = [w for w in (layer.get_weights() for layer in model.layers[:-4]) for w in w]
    assert all(np.array_equal(a, b) for a, b in zip(frozen_before, frozen_after))  # BN statistics included
    assert not np.array_equal(head_before, model.layers[-1].get_weights()[0])
    assert (result.frozen_layers, result.trainable_layers) == (13, 4)
    assert result.trainable_params + result.frozen_params == model.count_params()
    assert abs(result.source_share - 0.3) < 0.02 and result.n_new_val > 0
    assert set(result.val_groups).isdisjoint(result.train_groups)
    assert list(result.per_class) == list(CLASSES) and np.array(result.confusion).shape == (11, 11)
    assert np.array(result.confusion).sum() == result.n_new_val
    assert result.params["learning_rate"] == 1e-4 and result.params["batch_size"] == 32
    assert 0 <= result.accuracy_after <= 1 and "f1_standing" in result.metrics()
    assert confusion_plot(result.confusion, tmp_path / "cm.png").endswith("cm.png")
    with pytest.raises(Exception, match="trainable_last"):
        freeze_head_only(model, 0)


def test_transfer_refused_while_pipeline_fails(trained, demo, tmp_path):
    _, _, path, _ = trained
    with pytest.raises(DataValidationError, match="pipeline diagnostic failed") as e:
        transfer_model(path, demo["source"], demo["bad"], demo["config"], str(tmp_path / "t.keras"),
                       min_new_windows=50, epochs=1)
    assert "accel_units" in str(e.value)
    assert not (tmp_path / "t.keras").exists()  # no model touched
