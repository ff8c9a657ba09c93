"""Keras -> PyTorch PAT weight conversion against the official model built with tf-keras.

The reference below re-creates the official encoder (njacobsonlab/Pretrained-Actigraphy-Transformer,
PAT pretraining notebook) with the Keras 2 API and the official layer names; ``save_weights`` to
.h5 then writes the same legacy layout as the released PAT-{S,M,L}_29k_weights.h5 files.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import torch

from biotune.errors import InputFormatError, WeightsError
from biotune.mood.pat import PATClassifier, PATEncoder, count_parameters, pat_config, pat_parameter_count
from biotune.mood.pat_weights import convert_keras_weights, load_encoder_weights, read_encoder_state

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("tf_keras")
h5py = pytest.importorskip("h5py")
layers, models = keras.layers, keras.models

EXPECTED = {  # (encoder, encoder + head): the paper's 285K / 1.00M / 1.99M
    "S": (274_720, 287_265),
    "M": (993_440, 1_005_985),
    "L": (1_984_192, 1_996_737),
}


# ----------------------------------------------------------------- the official Keras model
def _transformer_block(embed_dim, num_heads, ff_dim, rate, name_prefix):
    inp = layers.Input(shape=(None, embed_dim), name=f"{name_prefix}_input")
    att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim, name=f"{name_prefix}_attention")
    a, weights = att(inp, inp, return_attention_scores=True)
    a = layers.Dropout(rate, name=f"{name_prefix}_dropout")(a)
    out1 = layers.LayerNormalization(epsilon=1e-6, name=f"{name_prefix}_norm1")(inp + a)
    ff = layers.Dense(ff_dim, activation="relu", name=f"{name_prefix}_ff1")(out1)
    ff = layers.Dense(embed_dim, name=f"{name_prefix}_ff2")(ff)
    ff = layers.Dropout(rate, name=f"{name_prefix}_dropout2")(ff)
    final = layers.LayerNormalization(epsilon=1e-6, name=f"{name_prefix}_norm2")(out1 + ff)
    return models.Model(inputs=inp, outputs=[final, weights], name=f"{name_prefix}_transformer")


def _tf_positional_embeddings(num_patches, embed_dim):
    position = tf.range(num_patches, dtype=tf.float32)[:, tf.newaxis]
    div_term = tf.exp(tf.range(0, embed_dim, 2, dtype=tf.float32) * (-tf.math.log(10000.0) / embed_dim))
    return tf.concat([tf.sin(position * div_term), tf.cos(position * div_term)], axis=-1)


def _keras_encoder(size):
    cfg = pat_config(size)
    n = 10080 // cfg.patch_size
    inp = layers.Input(shape=(10080,), name="inputs")
    x = layers.Reshape((n, cfg.patch_size), name="reshape")(inp)
    x = layers.Dense(96, name="dense")(x)
    x = x + _tf_positional_embeddings(n, 96)
    attention = []
    for i in range(cfg.num_layers):
        x, w = _transformer_block(96, cfg.num_heads, 256, 0.1, name_prefix=f"encoder_layer_{i + 1}")(x)
        attention.append(w)
    return models.Model(inputs=inp, outputs=[x] + attention, name="encoder_model")


def _keras_classifier(encoder):
    inp = layers.Input(shape=(10080,), name="finetuning_inputs")
    h = encoder(inp)[0]
    h = layers.GlobalAveragePooling1D(name="global_avg_pool")(h)
    h = layers.Dropout(0.1, name="dropout")(h)
    h = layers.Dense(128, activation="relu", name="dense_128")(h)
    out = layers.Dense(1, activation="sigmoid", name="output")(h)
    return models.Model(inputs=inp, outputs=out, name="finetuning_model")


@pytest.fixture(scope="module")
def keras_refs(tmp_path_factory):
    """Per size: the .h5 written by save_weights, a random input and the Keras encoder output."""
    tf.random.set_seed(1)
    root = tmp_path_factory.mktemp("keras_pat")
    rng = np.random.default_rng(0)
    out = {}
    for size in ("S", "M", "L"):
        enc = _keras_encoder(size)
        # make biases and norms non-trivial so a wrong mapping cannot hide behind zeros/ones
        enc.set_weights([w + rng.normal(0, 0.05, w.shape).astype("float32") for w in enc.get_weights()])
        h5 = root / f"PAT-{size}_test_weights.h5"
        enc.save_weights(str(h5))
        x = rng.normal(size=(2, 10080)).astype("float32")
        y = enc(x, training=False)[0].numpy()
        out[size] = {"h5": h5, "x": x, "y": y, "enc_params": enc.count_params(),
                     "clf_params": _keras_classifier(enc).count_params(),
                     "pos": _tf_positional_embeddings(10080 // pat_config(size).patch_size, 96).numpy()}
    return out


# ----------------------------------------------------------------- tests
def test_h5_has_the_legacy_layout(keras_refs):
    with h5py.File(keras_refs["M"]["h5"], "r") as fh:
        assert fh["encoder_layer_1_transformer/encoder_layer_1_attention/query/kernel:0"].shape == (96, 12, 96)
        assert fh["encoder_layer_2_transformer/encoder_layer_2_attention/attention_output/kernel:0"].shape == (12, 96, 96)
        assert fh["dense/dense/kernel:0"].shape == (18, 96)


@pytest.mark.parametrize("size", ["S", "M", "L"])
def test_param_counts_match_keras_reference(keras_refs, size):
    enc_n, clf_n = EXPECTED[size]
    assert keras_refs[size]["enc_params"] == enc_n
    assert keras_refs[size]["clf_params"] == clf_n
    assert count_parameters(PATEncoder(size)) == enc_n == pat_parameter_count(size, include_head=False)
    assert count_parameters(PATClassifier(size)) == clf_n == pat_parameter_count(size)


@pytest.mark.parametrize("size", ["S", "M", "L"])
def test_converted_encoder_matches_keras(keras_refs, size, tmp_path):
    ref = keras_refs[size]
    pt = convert_keras_weights(ref["h5"], size, tmp_path / f"pat_{size}.pt")
    enc = PATEncoder(size)
    load_encoder_weights(enc, pt)
    enc.eval()
    x = torch.from_numpy(ref["x"])
    # TF's float32 exp is 1 ulp off torch's for a few of the 48 frequencies, which moves sin/cos
    # at the last positions by up to ~1.2e-4 (position 1119 of PAT-L). Pin the encoding to TF's to check the weights at 1e-5,
    # then check the whole model end to end with our own (correctly rounded) encoding.
    assert np.abs(enc.pos_embedding.numpy() - ref["pos"]).max() < 3e-4
    with torch.no_grad():
        ours = enc(x).numpy()
        enc.pos_embedding.copy_(torch.from_numpy(ref["pos"]))
        pinned = enc(x).numpy()
    assert pinned.shape == ref["y"].shape
    assert np.abs(pinned - ref["y"]).max() < 1e-5
    assert np.abs(ours - ref["y"]).max() < 2e-4


def test_h5_loads_directly_and_into_a_classifier(keras_refs):
    ref = keras_refs["S"]
    clf = PATClassifier("S")
    load_encoder_weights(clf, ref["h5"])
    enc = PATEncoder("S")
    load_encoder_weights(enc, ref["h5"])
    for k, v in enc.state_dict().items():
        assert torch.equal(clf.encoder.state_dict()[k], v)


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_whole_model_h5_is_read_too(keras_refs, tmp_path):
    """model.save(...h5) nests the same layer groups under model_weights/."""
    enc = _keras_encoder("S")
    enc.load_weights(str(keras_refs["S"]["h5"]))
    whole = tmp_path / "encoder_small.h5"
    enc.save(str(whole))
    a = read_encoder_state(whole, "S")
    b = read_encoder_state(keras_refs["S"]["h5"], "S")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_wrong_size_names_tensor_and_shapes(keras_refs, tmp_path):
    with pytest.raises(WeightsError) as err:
        convert_keras_weights(keras_refs["S"]["h5"], "M", tmp_path / "x.pt")
    msg = str(err.value)
    assert "encoder_layer_1_attention/query/kernel" in msg
    assert "(96, 12, 96)" in msg and "(96, 6, 96)" in msg and "--size" in msg
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(WeightsError, match="--size"):  # L (patch 9) as M (patch 18)
        load_encoder_weights(PATEncoder("M"), keras_refs["L"]["h5"])
    with pytest.raises(WeightsError, match="--size"):  # M (2 layers) as S (1 layer): 12 heads first
        load_encoder_weights(PATEncoder("S"), keras_refs["M"]["h5"])
    pt = convert_keras_weights(keras_refs["S"]["h5"], "S", tmp_path / "s.pt")
    with pytest.raises(WeightsError, match="--size"):  # a converted .pt of the wrong size too
        load_encoder_weights(PATEncoder("M"), pt)


def test_truncated_and_garbage_files(keras_refs, tmp_path):
    data = keras_refs["S"]["h5"].read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 3])
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(b"PK\x03\x04 not really a zip")
    for path in (truncated, garbage):
        with pytest.raises(WeightsError):
            convert_keras_weights(path, "S", tmp_path / "out.pt")
    for path in (truncated, garbage, empty, bad_pt):
        with pytest.raises(WeightsError) as err:
            load_encoder_weights(PATEncoder("S"), path)
        assert isinstance(err.value, InputFormatError)  # WeightsFormatError is both
    not_pat = tmp_path / "not_pat.h5"
    with h5py.File(not_pat, "w") as fh:
        fh.create_dataset("something/kernel:0", data=np.zeros((3, 3)))
    with pytest.raises(WeightsError, match="no PAT encoder tensors"):
        load_encoder_weights(PATEncoder("S"), not_pat)
