"""The downstream classifier: task metrics, a short training run, the model store, resume."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from linksim.data import get_dataset
from linksim.store import ModelStore
from linksim.tasks import classifier as clf
from linksim.tasks.classifier import (FEATURE_LAYERS, ImageClassifier, accuracy, load_or_train_classifier,
                                      macro_f1, predict_labels, train_classifier)

DATASET_SPEC = {"name": "embedded", "params": {}, "train_size": 600}
#: A tiny, fast configuration for the store tests (what it learns does not matter there).
TINY = {"width": 4, "epochs": 1, "batch_size": 100, "augment": False}


@pytest.fixture(scope="module")
def embedded():
    """2,000 training and 500 test images of the embedded Fashion-MNIST set (seeded, class-stratified)."""
    ds = get_dataset("embedded")
    x, y = ds.load("train", 2000, seed=0)
    x_test, y_test = ds.load("test", 500, seed=0)
    return ds, x, y, x_test, y_test


def per_class_f1_by_definition(y_true, y_pred, num_classes):
    """Macro F1 written out class by class, skipping classes absent from both label arrays."""
    scores = []
    for c in range(num_classes):
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(y_true, y_pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(y_true, y_pred) if t == c and p != c)
        if tp + fp + fn == 0:
            continue
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return float(np.mean(scores))


# ----------------------------------------------------------------------- metrics
def test_accuracy_is_the_fraction_of_correct_labels():
    assert accuracy([0, 1, 2, 3], [0, 1, 0, 3]) == 0.75
    assert accuracy(np.array([5]), np.array([5])) == 1.0


def test_accuracy_rejects_arrays_of_different_length():
    with pytest.raises(ValueError, match="same length"):
        accuracy([0, 1, 2], [0, 1])


def test_macro_f1_matches_a_hand_computed_example():
    # class 0: tp 2, fp 1, fn 0 -> F1 4/5; class 1: tp 1, fp 1, fn 1 -> 1/2; class 2: tp 0, fp 0, fn 1 -> 0;
    # class 3 occurs nowhere and is skipped: mean of (4/5, 1/2, 0) = 13/30 (counting it as 0 would give 13/40)
    y_true = [0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 0, 1]
    assert macro_f1(y_true, y_pred, num_classes=4) == pytest.approx(13 / 30, abs=1e-12)


def test_macro_f1_matches_its_definition_on_random_labels():
    rng = np.random.default_rng(3)
    for trial in range(20):
        n, k = int(rng.integers(1, 60)), int(rng.integers(2, 8))
        y_true = rng.integers(0, k, n)
        y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, k, n))
        assert macro_f1(y_true, y_pred, k) == pytest.approx(per_class_f1_by_definition(y_true, y_pred, k),
                                                            abs=1e-12), f"trial {trial}"


def test_macro_f1_is_one_for_perfect_predictions_and_rejects_labels_out_of_range():
    assert macro_f1([0, 1, 1, 2], [0, 1, 1, 2], 3) == 1.0
    with pytest.raises(ValueError, match=r"range\(3\)"):
        macro_f1([0, 1, 3], [0, 1, 2], 3)


# ------------------------------------------------------------------------- model
def test_classifier_rejects_invalid_arguments_with_the_allowed_values():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        ImageClassifier((28, 28, 1), 1)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\)"):
        ImageClassifier((28, 28, 1), 10, dropout=1.0)
    with pytest.raises(ValueError, match="image_shape must be"):
        ImageClassifier((28, 28), 10)


def test_feature_maps_of_the_named_conv_layers_have_the_documented_shapes():
    model = ImageClassifier((28, 28, 1), 10, width=8)
    x = tf.random.uniform((2, 28, 28, 1))
    out = model.call_with_features(x, FEATURE_LAYERS)
    assert out["conv1"].shape == (2, 28, 28, 8) and out["conv2"].shape == (2, 28, 28, 8)
    assert out["conv3"].shape == (2, 14, 14, 16) and out["conv4"].shape == (2, 14, 14, 16)
    np.testing.assert_allclose(out["logits"].numpy(), model(x).numpy(), atol=1e-5)
    feats = model.feature_model("conv3")(x)
    np.testing.assert_allclose(feats["features"].numpy(), out["conv3"].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="conv1, conv2, conv3, conv4"):
        model.feature_model("dense")


def test_class_scores_have_gradients_with_respect_to_the_feature_maps():
    model = ImageClassifier((32, 32, 3), 10, width=8)
    with tf.GradientTape() as tape:
        out = model.call_with_features(tf.random.uniform((2, 32, 32, 3)), "conv4")
        score = tf.reduce_sum(out["logits"][:, 3])
    grad = tape.gradient(score, out["conv4"])
    assert grad.shape == (2, 16, 16, 16) and float(tf.reduce_sum(tf.abs(grad))) > 0


# ---------------------------------------------------------------------- training
def test_two_epochs_on_2000_images_beat_chance_clearly_on_500_test_images(embedded):
    ds, x, y, x_test, y_test = embedded
    keras.utils.set_random_seed(0)
    model = ImageClassifier(ds.image_shape, ds.num_classes)
    history = train_classifier(model, x, y, epochs=2, batch_size=64, learning_rate=1e-3, val_fraction=0.1,
                               seed=0, progress=False)
    assert history["epochs_run"] == 2 and len(history["val_accuracy"]) == 2
    # chance is 0.1; with 500 test images the standard error of an accuracy near 0.7 is about 0.02
    assert accuracy(y_test, predict_labels(model, x_test)) > 0.6


def test_a_classifier_saved_in_the_store_reloads_with_identical_predictions(tmp_path, embedded):
    ds, x, y, x_test, _ = embedded
    store = ModelStore([tmp_path])
    model, entry = load_or_train_classifier(store, dataset_spec=DATASET_SPEC, image_shape=ds.image_shape,
                                            num_classes=10, x_train=x[:600], y_train=y[:600], seed=1,
                                            config=TINY, progress=False)
    card = entry.card()
    assert card["task"] == "classifier" and card["spec"]["model"]["width"] == 4
    # how long it trained and on what (the cost facts of every card)
    assert card["train_seed"] == card["spec"]["seed"] == 1 and card["train_images"] == 540
    assert card["train_steps"] > 0 and card["train_seconds"] > 0 and card["machine"]["cpu_count"] >= 1
    # the recorded validation accuracy is a count over the 60 held-out images (10 % of 600), of the
    # restored model: its accuracy on them, computed independently, is the same number
    from linksim.tasks.classifier import _split

    _, val_idx = _split(y[:600], 0.1, 1)
    assert len(val_idx) == 60
    val_acc = accuracy(y[:600][val_idx], predict_labels(model, x[:600][val_idx]))
    assert card["final_val_accuracy"] == pytest.approx(val_acc)
    reloaded, _ = store.load("classifier", card["spec"])
    assert isinstance(reloaded, ImageClassifier) and reloaded.get_config() == model.get_config()
    np.testing.assert_array_equal(predict_labels(reloaded, x_test[:200]), predict_labels(model, x_test[:200]))
    np.testing.assert_allclose(reloaded(x_test[:8].astype(np.float32) / 255).numpy(),
                               model(x_test[:8].astype(np.float32) / 255).numpy(), atol=1e-5)


def test_load_or_train_trains_once_then_loads_from_the_store(tmp_path, embedded, monkeypatch):
    ds, x, y, *_ = embedded
    store = ModelStore([tmp_path])
    calls = []
    real_train = clf.train_classifier

    def counting_train(*args, **kwargs):
        calls.append(kwargs)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(clf, "train_classifier", counting_train)
    kwargs = dict(dataset_spec=DATASET_SPEC, image_shape=ds.image_shape, num_classes=10, x_train=x[:600],
                  y_train=y[:600], seed=2, config=TINY, progress=False)
    _, first = load_or_train_classifier(store, **kwargs)
    _, second = load_or_train_classifier(store, **kwargs)
    assert len(calls) == 1
    assert second.path == first.path and second.card()["saved"] == first.card()["saved"]
    # a different training configuration is another model
    load_or_train_classifier(store, **{**kwargs, "config": {**TINY, "dropout": 0.1}})
    assert len(calls) == 2


def test_a_missing_classifier_without_training_asks_to_run_linksim_train(tmp_path):
    with pytest.raises(ValueError, match="run `linksim train`"):
        load_or_train_classifier(ModelStore([tmp_path]), dataset_spec=DATASET_SPEC, image_shape=(28, 28, 1),
                                 num_classes=10, x_train=None, y_train=None, seed=0, train_missing=False)


def test_an_unknown_config_key_lists_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match="allowed: width, dropout, batch_norm, epochs"):
        load_or_train_classifier(ModelStore([tmp_path]), dataset_spec=DATASET_SPEC, image_shape=(28, 28, 1),
                                 num_classes=10, x_train=None, y_train=None, seed=0, config={"epoch": 3})


def test_an_interrupted_training_resumes_after_the_last_finished_epoch(tmp_path, embedded):
    ds, x, y, *_ = embedded

    class Interrupt(Exception):
        pass

    def stop_after_epoch_1(epoch, logs):
        if epoch == 1:
            raise Interrupt

    settings = dict(epochs=2, batch_size=100, learning_rate=1e-3, val_fraction=0.1, seed=0, progress=False,
                    augment=False, checkpoint_dir=tmp_path / "ckpt")
    keras.utils.set_random_seed(0)
    with pytest.raises(Interrupt):
        train_classifier(ImageClassifier(ds.image_shape, 10, width=4), x[:600], y[:600],
                         callbacks=[stop_after_epoch_1], **settings)
    first = json.loads((tmp_path / "ckpt" / "history.json").read_text())
    assert first["epoch"] == [1]

    epochs_seen = []
    history = train_classifier(ImageClassifier(ds.image_shape, 10, width=4), x[:600], y[:600],
                               callbacks=[lambda e, logs: epochs_seen.append(e)], **settings)
    assert epochs_seen == [2]  # only the missing epoch ran
    assert history["epoch"] == [1, 2] and history["epochs_run"] == 2
    assert history["loss"][0] == first["loss"][0]  # epoch 1 was kept, not redone
