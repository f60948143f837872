"""SD-JSCC: gradient-based semantic weights (eqs. 7-10), the semantic loss (eq. 13), two-stage training."""

import json

import keras
import numpy as np
import pytest
import sionna.phy
import tensorflow as tf

import linksim.schemes.jscc as jscc_module
from linksim.channels import AWGNChannel
from linksim.losses import MSELoss, SDJSCCSemanticLoss, SemanticLoss, gradient_importance, gradient_semantic_weights, semantic_weights
from linksim.registry import SCHEMES
from linksim.schemes.base import SchemeContext
from linksim.schemes.deepjscc import DeepJSCC
from linksim.schemes.sdjscc import SDJSCCNoGSWScheme, SDJSCCScheme
from linksim.store import ModelStore
from linksim.tasks import ImageClassifier, load_or_train_classifier
from linksim.training import TrainConfig, mse_loss, train_jscc

#: A tiny, fast downstream classifier (what it learns barely matters here).
TINY_CLASSIFIER = {"width": 4, "epochs": 1, "batch_size": 50, "augment": False}
N_TRAIN = 500
DATASET_SPEC = {"name": "embedded", "params": {}, "train_size": N_TRAIN}


@pytest.fixture(scope="module")
def data():
    """500 training images with labels and 128 held-out test images of the embedded Fashion-MNIST set."""
    from linksim.data import get_dataset
    from linksim.data.base import to_float

    ds = get_dataset("embedded")
    x, y = ds.load("train", N_TRAIN, seed=0)
    xt, _ = ds.load("test", 128, seed=0)
    return to_float(x), np.asarray(y), to_float(xt)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ModelStore([tmp_path_factory.mktemp("sdjscc-store")])


@pytest.fixture(scope="module")
def classifier(data, store):
    """The tiny classifier, trained for 1 epoch on the 500 images (and kept in the module's store)."""
    x, y, _ = data
    model, _ = load_or_train_classifier(store, dataset_spec=DATASET_SPEC, image_shape=(28, 28, 1), num_classes=10,
                                        x_train=x, y_train=y, seed=0, config=TINY_CLASSIFIER, progress=False)
    return model


# ------------------------------------------------------------------- GSW, eqs. 7-10
def _tail_float64(clf: ImageClassifier, f: np.ndarray) -> np.ndarray:
    """The classifier after conv4 (max-pool 2x2, flatten, dense + ReLU, logits) in numpy float64."""
    b, h, w, k = f.shape
    p = f[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, k).max(axis=(2, 4))
    hidden = np.maximum(p.reshape(b, -1) @ clf.dense.kernel.numpy().astype(np.float64)
                        + clf.dense.bias.numpy().astype(np.float64), 0.0)
    return hidden @ clf.logits.kernel.numpy().astype(np.float64) + clf.logits.bias.numpy().astype(np.float64)


def test_gsw_weights_match_finite_differences_of_the_logits_with_respect_to_the_feature_maps():
    keras.utils.set_random_seed(5)
    clf = ImageClassifier((28, 28, 1), 10, width=2)             # conv4: 4 maps of 14 x 14
    x = tf.random.uniform((6, 28, 28, 1), seed=6)
    out = clf.call_with_features(x, "conv4")
    f = out["conv4"].numpy().astype(np.float64)
    # the float64 tail reproduces the network's logits, so its differences are the network's
    np.testing.assert_allclose(_tail_float64(clf, f), out["logits"].numpy(), atol=1e-4)
    b, m, n, k = f.shape
    eps = 1e-6
    w_kc = np.zeros((10, k))                                   # eq. 8, averaged over the images
    for kk in range(k):
        shift = np.zeros_like(f)
        shift[..., kk] = eps                                   # f_k + eps at every (m, n): the sum over m, n of eq. 8
        d = (_tail_float64(clf, f + shift) - _tail_float64(clf, f - shift)) / (2 * eps)   # [B, C]
        w_kc[:, kk] = d.mean(axis=0) / (m * n)
    w_k = w_kc.mean(axis=0)                                    # eq. 9: the mean over all C logits
    scale = np.abs(w_kc).max()
    assert scale > 0
    # tolerance: 1e-4 of the largest gradient (float32 autodiff against float64 differences,
    # whose own error with eps = 1e-6 is about 1e-10)
    np.testing.assert_allclose(gradient_importance(clf, x, "conv4", per_class=True).numpy(), w_kc,
                               atol=1e-4 * scale, rtol=0)
    np.testing.assert_allclose(gradient_importance(clf, x, "conv4").numpy(), w_k, atol=1e-4 * scale, rtol=0)
    # eq. 10, with a temperature that spreads the weights (not the nearly uniform tau = 1)
    tau = 2.0 / np.std(w_k)
    expected = 3.0 * np.exp(tau * w_k) / np.exp(tau * w_k).sum()
    got = gradient_semantic_weights(clf, x, "conv4", tau=tau, r=3.0).numpy()
    np.testing.assert_allclose(got, expected, rtol=2e-3)
    assert got.max() / got.min() > 2.0
    # batching the images does not change the average
    np.testing.assert_allclose(gradient_importance(clf, x, "conv4", batch_size=4).numpy(), w_k,
                               atol=1e-4 * scale, rtol=0)


def test_softmax_probabilities_would_make_eq_9_vanish_so_the_weights_use_logits():
    # why y^c are logits: the class-mean gradient of softmax scores is exactly zero (they sum to 1)
    keras.utils.set_random_seed(7)
    clf = ImageClassifier((28, 28, 1), 10, width=2)
    x = tf.random.uniform((4, 28, 28, 1), seed=8)
    with tf.GradientTape() as tape:
        out = clf.call_with_features(x, "conv4")
        tape.watch(out["conv4"])
        mean_prob = tf.reduce_mean(tf.nn.softmax(out["logits"]))
    g = tape.gradient(mean_prob, out["conv4"])
    assert float(tf.reduce_max(tf.abs(g))) < 1e-7
    assert float(tf.reduce_max(tf.abs(gradient_importance(clf, x, "conv4")))) > 1e-5


@pytest.mark.parametrize("weights_from", ["calibration", "batch"])
def test_as_tau_goes_to_zero_the_weights_become_r_over_k_and_the_loss_the_ablation_times_r_over_k(
        weights_from, classifier, data):
    x, _, xt = data
    r = 3.0
    sd = SemanticLoss(classifier, "conv4", weights_from=weights_from, calibration_images=x[:100], tau=1e-6, r=r)
    ablation = SemanticLoss(classifier, "conv4", gsw=False)
    k = ablation.num_feature_maps
    assert k == 8
    np.testing.assert_array_equal(ablation.weights.numpy(), np.ones(k))
    x_hat = np.clip(xt[:32] + np.random.default_rng(0).normal(0, 0.1, xt[:32].shape), 0, 1).astype(np.float32)
    np.testing.assert_allclose(sd.batch_weights(xt[:32]).numpy(), r / k, rtol=1e-5)
    loss_sd, loss_ablation = float(sd(xt[:32], x_hat)), float(ablation(xt[:32], x_hat))
    assert loss_ablation > 0
    np.testing.assert_allclose(loss_sd, loss_ablation * r / k, rtol=1e-5)


def test_per_batch_weights_equal_calibrated_weights_on_the_same_images_also_inside_tf_function(classifier, data):
    x, _, _ = data
    tau = 3000.0
    per_batch = SemanticLoss(classifier, "conv4", weights_from="batch", tau=tau, r=8.0)
    assert per_batch.weights is None
    expected = gradient_semantic_weights(classifier, x[:48], "conv4", tau=tau, r=8.0).numpy()
    assert expected.max() / expected.min() > 1.2                   # not uniform: the check has teeth
    graph = tf.function(per_batch.batch_weights, input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)])
    np.testing.assert_allclose(graph(tf.constant(x[:48])).numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(per_batch.batch_weights(x[:48]).numpy(), expected, rtol=1e-4)


def test_the_semantic_loss_is_eq_13_computed_by_hand(classifier, data):
    _, _, xt = data
    w = np.linspace(0.5, 2.0, 8).astype(np.float32)
    loss = SemanticLoss(classifier, "conv4", weights=w)
    x, x_hat = xt[:5], xt[5:10]
    f = classifier.call_with_features(x, "conv4")["conv4"].numpy()
    f_hat = classifier.call_with_features(x_hat, "conv4")["conv4"].numpy()
    by_hand = np.mean([sum(w[k] * np.sum((f_hat[b, ..., k] - f[b, ..., k]) ** 2) for k in range(8))
                       for b in range(5)])
    np.testing.assert_allclose(float(loss(x, x_hat)), by_hand, rtol=1e-5)
    # identical images: zero up to the float rounding of the features (measured: 0 on an Intel Xeon,
    # 1.6e-14 on an AMD EPYC, against a loss of order by_hand between different images)
    assert abs(float(loss(x, x))) <= 1e-9 * by_hand


def test_a_large_tau_spreads_the_weights_which_still_sum_to_r(classifier, data):
    x, _, _ = data
    w_raw = gradient_importance(classifier, x[:200], "conv4").numpy()
    w = semantic_weights(w_raw, tau=5.0 / np.std(w_raw), r=8.0).numpy()
    np.testing.assert_allclose(w.sum(), 8.0, rtol=1e-5)
    assert w.max() / w.min() > 10
    assert np.argmax(w) == np.argmax(w_raw)


def test_invalid_loss_options_list_the_allowed_values(classifier):
    with pytest.raises(ValueError, match="weights_from must be one of calibration, batch"):
        SemanticLoss(classifier, weights_from="epoch")
    with pytest.raises(ValueError, match="layer must be one of conv1, conv2, conv3, conv4"):
        SemanticLoss(classifier, "dense", gsw=False)
    with pytest.raises(ValueError, match="needs calibration_images"):
        SemanticLoss(classifier)
    with pytest.raises(ValueError, match="classes must be one of all, predicted"):
        gradient_importance(classifier, np.zeros((1, 28, 28, 1), np.float32), classes="top5")
    with pytest.raises(ValueError, match="tau must be a positive finite number"):
        semantic_weights(np.zeros(3), tau=0.0)


# ---------------------------------------------------------------- fine-tuning
def _semantic_loss_on(model, loss, images, snr_db=10.0):
    sionna.phy.config.seed = 11                               # the same channel noise for every evaluation
    return float(np.mean([float(loss(images[j:j + 64], model(images[j:j + 64], tf.constant(snr_db))))
                          for j in range(0, len(images), 64)]))


def test_a_short_semantic_fine_tuning_lowers_the_semantic_loss_on_held_out_images(classifier, data):
    x, _, xt = data
    keras.utils.set_random_seed(1)
    sionna.phy.config.seed = 1
    model = DeepJSCC((28, 28, 1), 64, filters=[4, 4, 4, 4], quantizer="binary")
    # stage 1: three epochs of MSE training (15 batches of 32 each)
    train_jscc(model, x, TrainConfig(epochs=3, batch_size=32, learning_rate=3e-3, snr_train_db=10.0, seed=1),
               progress=False)
    stage1 = [v.numpy() for v in model.weights]
    loss = SemanticLoss(classifier, "conv4", calibration_images=x[:200], tau=3000.0, r=8.0)
    before = _semantic_loss_on(model, loss, xt)
    after = {}
    for name, loss_fn in (("semantic", loss), ("mse", mse_loss)):
        for v, w in zip(model.weights, stage1):
            v.assign(w)
        history = train_jscc(model, x, TrainConfig(epochs=2, batch_size=32, learning_rate=3e-3,
                                                   snr_train_db=10.0, seed=1), loss_fn=loss_fn, progress=False)
        assert history["epochs_run"] == 2
        after[name] = _semantic_loss_on(model, loss, xt)
    # measured: 80.2 before, 64.5 after semantic fine-tuning, 75.2 after as many MSE steps instead
    assert after["semantic"] < 0.9 * before, (before, after)
    assert after["semantic"] < after["mse"], (before, after)   # it is the loss, not just more training


# --------------------------------------------------------------------- scheme
def _context(data, store, train_missing=True, labels=True, k=64):
    x, y, _ = data
    # what the runner passes: the training labels and the scenario's task field
    extra = {"train_labels": y, "task": {"classifier": TINY_CLASSIFIER}} if labels else {}
    return SchemeContext(image_shape=(28, 28, 1), channel_uses=k, train_images=x, channel=AWGNChannel(), seed=0,
                         dataset_spec=DATASET_SPEC, store=store, progress=False, train_missing=train_missing,
                         extra=extra)


TINY_SCHEME = dict(snr_train_db=10.0, filters=[4, 4, 4, 4], epochs=1, steps_per_epoch=3, batch_size=32,
                   finetune_epochs=1, finetune_steps_per_epoch=3, label="tiny")


@pytest.fixture
def train_calls(monkeypatch):
    """Every train_jscc call of either stage, with the loss it was given."""
    calls = []
    real = train_jscc

    def counting(model, x, config, **kw):
        calls.append(kw.get("loss_fn", mse_loss))
        return real(model, x, config, **kw)

    monkeypatch.setattr(jscc_module, "train_jscc", counting)     # the one place every JSCC stage trains
    return calls


def test_scheme_trains_stage_1_and_stage_2_once_then_loads_from_the_store(data, store, classifier, train_calls):
    _, _, xt = data
    s1 = SDJSCCScheme(calibration_size=64, **TINY_SCHEME)
    s1.prepare(_context(data, store))
    assert len(train_calls) == 2
    assert isinstance(train_calls[0], MSELoss) and isinstance(train_calls[1], SDJSCCSemanticLoss)  # stage 1, 2
    assert isinstance(train_calls[1].loss, SemanticLoss)
    card = json.loads(s1.entry.card_file.read_text())
    assert s1.entry.path.name.startswith("sdjscc-") and card["key"] in s1.entry.path.name
    assert card["latent_bits_per_image"] == 128 and card["epochs_run"] == 1
    assert len(card["semantic_weights"]) == 8
    np.testing.assert_allclose(sum(card["semantic_weights"]), 8.0, rtol=1e-5)     # r = K by default
    # stage 1 is the deepjscc model with the binary quantizer, in the store under its own key
    stage1_card = json.loads(s1.stage1_entry.card_file.read_text())
    assert stage1_card["spec"]["scheme"] == "deepjscc" and stage1_card["spec"]["model"]["quantizer"] == "binary"
    assert card["spec"]["stage1"] == stage1_card["spec"]

    s2 = SDJSCCScheme(calibration_size=64, **TINY_SCHEME)
    s2.prepare(_context(data, store, train_missing=False))   # would raise if anything had to be trained
    assert len(train_calls) == 2
    assert s2.entry.path == s1.entry.path and s2.stage1_entry.path == s1.stage1_entry.path
    assert s2.semantic_weights == card["semantic_weights"]
    np.testing.assert_array_equal(s1.encode(xt[:4]).numpy(), s2.encode(xt[:4]).numpy())
    res = s2.evaluate(s2.encode(xt[:4]), 10.0)
    assert res.images.shape == (4, 28, 28, 1)
    assert res.counts["source_bits"] == 4 * 128 and res.counts["channel_uses"] == 4 * 64

    # the ablation is another model (key and name), fine-tuned from the same stage 1
    ablation = SDJSCCNoGSWScheme(**TINY_SCHEME)
    ctx = _context(data, store)
    assert ablation.store_spec(ctx) != s1.store_spec(ctx)
    assert ablation.store_spec(ctx)["stage1"] == s1.store_spec(ctx)["stage1"]
    ablation.prepare(ctx)
    assert len(train_calls) == 3 and train_calls[2].gsw is False   # stage 1 loaded, only stage 2 trained
    assert ablation.entry.path.name.startswith("sdjscc_nogsw-") and ablation.entry.path != s1.entry.path


def test_both_schemes_are_registered_and_the_ablation_is_sdjscc_without_gsw():
    assert SCHEMES.get("sdjscc") is SDJSCCScheme
    assert SCHEMES.get("sdjscc_nogsw") is SDJSCCNoGSWScheme
    assert issubclass(SDJSCCNoGSWScheme, SDJSCCScheme) and not SDJSCCNoGSWScheme.gsw
    with pytest.raises(ValueError, match="option\\(s\\) tau do not apply"):
        SDJSCCNoGSWScheme(tau=10.0)


def test_scheme_options_outside_their_allowed_values_are_explained():
    with pytest.raises(ValueError, match="quantizer must be one of binary, onoff"):
        SDJSCCScheme(quantizer=None)
    with pytest.raises(ValueError, match="weights_from must be one of calibration, batch"):
        SDJSCCScheme(weights_from="each_step")
    with pytest.raises(ValueError, match="feature_layer must be one of conv1, conv2, conv3, conv4"):
        SDJSCCScheme(feature_layer="logits")
    with pytest.raises(ValueError, match="finetune_epochs must be a positive integer"):
        SDJSCCScheme(finetune_epochs=0)


def test_a_context_without_training_labels_is_a_clear_error(data, store):
    with pytest.raises(ValueError, match=r"context.extra\['train_labels'\] is missing"):
        SDJSCCScheme(**TINY_SCHEME).prepare(_context(data, store, labels=False))
