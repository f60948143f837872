"""The deep hash network (DHD): its losses, the retrieval measures, the model store, the hashing task, the dhd loss."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from linksim.data import get_dataset
from linksim.store import ModelStore
from linksim.tasks import hashing as hn
from linksim.tasks.hashing import (DeepHashNetwork, augment_views, average_precision, bce_quantization_loss,
                                   cosine_similarity, draw_augmentation, hamming_distance, hash_proxy_loss,
                                   load_or_train_hash_network, mean_average_precision, self_distillation_loss,
                                   sign_codes)

DATASET_SPEC = {"name": "embedded", "params": {}, "train_size": 600}
#: A tiny, fast configuration for the store tests (what it learns does not matter there).
TINY = {"bits": 16, "width": 4, "epochs": 1, "batch_size": 100}


@pytest.fixture(scope="module")
def embedded():
    """600 training and 100 test images of the embedded Fashion-MNIST set (seeded, class-stratified)."""
    ds = get_dataset("embedded")
    x, y = ds.load("train", 600, seed=0)
    x_test, y_test = ds.load("test", 100, seed=0)
    return x.astype(np.float32) / 255.0, y, x_test.astype(np.float32) / 255.0, y_test


# ----------------------------------------------------------------------- measures
def test_hamming_distance_counts_the_differing_signs():
    a = np.array([[0.3, -0.2, 0.9, -0.1], [0.5, 0.5, 0.5, 0.5]])
    b = np.array([[0.1, 0.4, -0.9, -0.7], [-0.5, -0.5, -0.5, -0.5]])
    # signs: (+,-,+,-) vs (+,+,-,-): 2 differ; (+,+,+,+) vs (-,-,-,-): 4 differ
    assert hamming_distance(a, b).tolist() == [2, 4]


def test_sign_codes_map_zero_to_plus_one():
    assert sign_codes([[0.0, -0.0, -1e-9, 2.0]]).tolist() == [[1, 1, -1, 1]]


def test_cosine_similarity_matches_hand_computed_values():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    b = np.array([[0.0, 1.0], [1.0, 1.0], [4.0, 3.0]])
    np.testing.assert_allclose(cosine_similarity(a, b), [0.0, 1.0, 24.0 / 25.0], atol=1e-12)


def test_average_precision_matches_a_hand_computed_ranking():
    # gallery codes at Hamming distance 0, 1, 1, 2 from the query (K = 2); labels 1, 0, 1, 1
    q = np.array([[1.0, 1.0]])
    g = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    gl = np.array([1, 0, 1, 1])
    # ranking 0, 1, 2, 3 (the tie of items 1 and 2 broken by gallery order): relevant at ranks 1, 3, 4
    ap = average_precision(q, [1], g, gl, top_n=4)
    np.testing.assert_allclose(ap, [(1 / 1 + 2 / 3 + 3 / 4) / 3])
    # top 2: relevant only at rank 1 -> AP 1; no relevant item retrieved -> 0
    np.testing.assert_allclose(average_precision(q, [1], g, gl, top_n=2), [1.0])
    np.testing.assert_allclose(average_precision(q, [7], g, gl, top_n=4), [0.0])


def brute_force_map(q, ql, g, gl, top_n):
    """mAP@top_n written out query by query with Python loops (ties: smaller gallery index first)."""
    aps = []
    for i in range(len(q)):
        dist = [(int(np.sum(np.sign(q[i]) != np.sign(g[j]))), j) for j in range(len(g))]
        dist.sort()                                            # by distance, then by gallery index
        hits, total = 0, 0.0
        for rank, (_, j) in enumerate(dist[:top_n], start=1):
            if gl[j] == ql[i]:
                hits += 1
                total += hits / rank
        aps.append(total / hits if hits else 0.0)
    return float(np.mean(aps))


@pytest.mark.parametrize("seed,k,top_n", [(0, 4, 10), (1, 8, 25), (2, 16, 1000), (3, 3, 1), (4, 300, 50)])
def test_map_equals_a_brute_force_computation_on_random_codes(seed, k, top_n):
    # small K gives many ties in Hamming distance, so the tie-break is exercised
    rng = np.random.default_rng(seed)
    q, g = rng.standard_normal((40, k)), rng.standard_normal((120, k))
    ql, gl = rng.integers(0, 4, 40), rng.integers(0, 4, 120)
    assert mean_average_precision(q, ql, g, gl, top_n) == pytest.approx(brute_force_map(q, ql, g, gl, top_n),
                                                                         abs=1e-12)
    # chunking the queries changes nothing
    np.testing.assert_allclose(average_precision(q, ql, g, gl, top_n, chunk=7),
                               average_precision(q, ql, g, gl, top_n))


def test_average_precision_rejects_codes_of_different_lengths():
    with pytest.raises(ValueError, match="same K"):
        average_precision(np.ones((2, 4)), [0, 1], np.ones((3, 5)), [0, 1, 0])
    with pytest.raises(ValueError, match="top_n"):
        average_precision(np.ones((2, 4)), [0, 1], np.ones((3, 4)), [0, 1, 0], top_n=0)


# ----------------------------------------------------------------------- DHD losses
def test_hash_proxy_loss_matches_a_hand_computed_value():
    h = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    p = np.array([[2.0, 0.0], [0.0, 3.0]], np.float32)       # normalised: e1, e2
    y = np.array([0, 1])
    t = 0.2
    # image 1: cosines (1, 0); image 2: cosines (0.6, 0.8)
    l1 = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(0)))
    l2 = -math.log(math.exp(0.8 / t) / (math.exp(0.6 / t) + math.exp(0.8 / t)))
    assert float(hash_proxy_loss(h, p, y, t)) == pytest.approx((l1 + l2) / 2, rel=1e-5)


def test_self_distillation_loss_is_one_minus_cosine_and_stops_the_teachers_gradient():
    hs = tf.constant([[1.0, 0.0], [1.0, 1.0]])
    hw = tf.Variable([[0.0, 2.0], [3.0, 3.0]])
    with tf.GradientTape() as tape:
        tape.watch(hs)
        loss = self_distillation_loss(hs, hw)
    assert float(loss) == pytest.approx(((1 - 0) + (1 - 1)) / 2, abs=1e-6)
    g_s, g_w = tape.gradient(loss, [hs, hw])
    assert g_s is not None and g_w is None


def reference_bce_quantization(h, sigma):
    """DHD's BCEQuantization written as the reference code does (exp, then torch BCELoss's clamped logs)."""
    h = np.asarray(h, np.float64)
    y = (np.sign(h) + 1) / 2

    def bce(p, t):
        return -np.mean(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log(1 - p), -100))

    a = np.exp(-0.5 * ((h - 1) / sigma) ** 2)
    b = np.exp(-0.5 * ((h + 1) / sigma) ** 2)
    return bce(a, y) + bce(b, 1 - y)


def test_bce_quantization_loss_matches_the_reference_formula():
    h = np.array([[0.9, -0.3, 0.05, -0.99], [0.0, 0.5, -0.5, 0.2]], np.float32)
    assert float(bce_quantization_loss(h, 0.5)) == pytest.approx(reference_bce_quantization(h, 0.5), rel=1e-5)
    # hand-computed single element h = 1: y = 1, g_+1 = 1 -> 0; g_-1 = exp(-8), target 0 -> -log(1 - e^-8)
    assert float(bce_quantization_loss([[1.0]], 0.5)) == pytest.approx(-math.log(1 - math.exp(-8)), rel=1e-4)


def test_the_dhd_losses_have_finite_gradients_at_saturated_and_zero_hashes():
    # a saturated tanh gives exactly +-1 (then log(1 - g) = log 0 in the quantization loss); a zero vector has no
    # direction (the cosines' norms): neither may give a NaN gradient (it once killed a training run)
    h = tf.constant([[1.0, -1.0, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0]])
    with tf.GradientTape() as tape:
        tape.watch(h)
        loss = (bce_quantization_loss(h, 0.5) + self_distillation_loss(h, h + 0.1)
                + hash_proxy_loss(h, tf.eye(4)[:2], [0, 1]))
    g = tape.gradient(loss, h)
    assert np.isfinite(float(loss)) and np.all(np.isfinite(g.numpy()))


def test_bce_quantization_loss_is_smallest_at_the_hypercube_vertices():
    vals = [float(bce_quantization_loss([[v, -v]], 0.5)) for v in (0.1, 0.5, 0.9, 1.0)]
    assert vals == sorted(vals, reverse=True)


# ----------------------------------------------------------------------- network and augmentation
def test_the_hash_network_outputs_k_values_in_the_open_unit_interval_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    net = DeepHashNetwork((28, 28, 1), 10, bits=32, width=4, name="hashnet")
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
    h = net(x).numpy()
    assert h.shape == (3, 32) and np.all(np.abs(h) < 1)
    assert tuple(net.proxies.shape) == (10, 32)
    path = tmp_path / "m.keras"
    net.save(path)
    back = keras.saving.load_model(path)
    assert isinstance(back, DeepHashNetwork) and back.get_config() == net.get_config()
    np.testing.assert_allclose(back(x).numpy(), h, atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [({"bits": 1}, "bits"), ({"bits": 16.0}, "bits"), ({"width": 0}, "width"),
                                          ({"num_classes": 1}, "num_classes")])
def test_the_hash_network_refuses_bad_options(kwargs, match):
    args = {"image_shape": (28, 28, 1), "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        DeepHashNetwork(**args)


def test_the_identity_augmentation_leaves_images_unchanged_and_the_strong_one_changes_them():
    rng = np.random.default_rng(0)
    x = rng.random((6, 32, 32, 3)).astype(np.float32)
    identity = draw_augmentation(rng, 6, 0.0, rgb=True)
    np.testing.assert_allclose(augment_views(x, identity).numpy(), x, atol=1e-5)
    strong = augment_views(x, draw_augmentation(rng, 6, 1.0, rgb=True)).numpy()
    assert strong.shape == x.shape and strong.min() >= 0 and strong.max() <= 1
    assert np.abs(strong - x).mean() > 0.05


# ----------------------------------------------------------------------- training and the store
def test_a_short_training_run_stores_the_network_with_its_retrieval_map(tmp_path, embedded):
    x, y, x_test, y_test = embedded
    store = ModelStore([tmp_path / "store"])
    net, entry = load_or_train_hash_network(store, dataset_spec=DATASET_SPEC, image_shape=(28, 28, 1),
                                            num_classes=10, x_train=x, y_train=y, config=TINY, progress=False,
                                            x_test=x_test, y_test=y_test)
    card = entry.card()
    assert card["spec"]["model"]["bits"] == 16 and card["spec"]["training"]["temperature"] == 0.2
    assert card["retrieval"]["top_n"] == 1000 and 0 <= card["retrieval"]["map"] <= 1
    assert card["retrieval"]["n_queries"] == 100 and card["retrieval"]["n_gallery"] == 600
    again, entry2 = load_or_train_hash_network(store, dataset_spec=DATASET_SPEC, image_shape=(28, 28, 1),
                                               num_classes=10, x_train=None, y_train=None, config=TINY,
                                               progress=False, train_missing=False)
    assert entry2.path == entry.path
    np.testing.assert_allclose(again(x[:4]).numpy(), net(x[:4]).numpy(), atol=1e-6)
    # top_n is an evaluation option: not part of the key; bits are
    key = hn.hash_spec(dataset_spec=DATASET_SPEC, image_shape=(28, 28, 1), num_classes=10, config=TINY)
    assert key == hn.hash_spec(dataset_spec=DATASET_SPEC, image_shape=(28, 28, 1), num_classes=10,
                               config={**TINY, "top_n": 50})
    with pytest.raises(ValueError, match="no trained hash network"):
        load_or_train_hash_network(store, dataset_spec=DATASET_SPEC, image_shape=(28, 28, 1), num_classes=10,
                                   x_train=None, y_train=None, config={**TINY, "bits": 32}, progress=False,
                                   train_missing=False)


def test_a_hash_network_trains_on_rgb_images_and_resumes_from_its_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((64, 32, 32, 3)).astype(np.float32)
    y = np.arange(64) % 3
    keras.utils.set_random_seed(0)
    net = DeepHashNetwork((32, 32, 3), 3, bits=8, width=2)
    first = hn.train_hash_network(net, x, y, epochs=1, batch_size=16, seed=5, checkpoint_dir=tmp_path / "c",
                                  progress=False)
    assert first["epochs_run"] == 1 and np.isfinite(first["loss"][0])
    again = hn.train_hash_network(net, x, y, epochs=2, batch_size=16, seed=5, checkpoint_dir=tmp_path / "c",
                                  progress=False)
    assert again["epochs_run"] == 2 and set(again) >= {"proxy", "distill", "quant", "val_accuracy"}


@pytest.mark.parametrize("kwargs,match", [({"temperature": 0}, "temperature"), ({"weak_scale": 1.5}, "weak_scale"),
                                          ({"distill_weight": -1}, "distill_weight"), ({"epochs": 0}, "epochs")])
def test_training_refuses_bad_options(kwargs, match):
    net = DeepHashNetwork((8, 8, 1), 2, bits=4, width=1)
    with pytest.raises(ValueError, match=match):
        hn.train_hash_network(net, np.zeros((8, 8, 8, 1)), np.arange(8) % 2, progress=False, **kwargs)


def test_an_unknown_hash_option_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown hash option.*bitz.*allowed: bits"):
        hn.hash_spec(dataset_spec=DATASET_SPEC, image_shape=(28, 28, 1), num_classes=10, config={"bitz": 8})


def test_the_hashing_task_reports_perfect_agreement_on_the_originals_and_less_on_noisy_images(tmp_path, embedded):
    from linksim.tasks.base import TaskContext
    from linksim.tasks.retrieval import HashingTask

    x, y, x_test, y_test = embedded
    task = HashingTask(hash={**TINY, "top_n": 50})
    task.prepare(TaskContext(x_train=x, y_train=y, x_test=x_test, y_test=y_test, dataset_spec=DATASET_SPEC,
                             image_shape=(28, 28, 1), seed=0, store=ModelStore([tmp_path / "s"]), progress=False))
    ref = task.reference_row()
    assert ref["hash_cos"] == pytest.approx(1.0, abs=1e-6) and ref["hash_hamming"] == 0
    assert ref["retrieval_map"] == pytest.approx(
        mean_average_precision(hn.hash_outputs(task.model, x_test), y_test, hn.hash_outputs(task.model, x), y, 50))
    noisy = np.clip(x_test + np.random.default_rng(0).normal(0, 0.5, x_test.shape), 0, 1).astype(np.float32)
    idx = np.arange(len(noisy))
    # two batches, as the evaluation sends them
    outs = [task.evaluate(noisy[:60], idx[:60]), task.evaluate(noisy[60:], idx[60:])]
    row = task.summarise({k: np.concatenate([o[k] for o in outs]) for k in outs[0]}, idx)
    assert row["hash_cos"] < 1 and row["hash_hamming"] > 0
    assert row["hash_hamming_norm"] == pytest.approx(row["hash_hamming"] / 16)
    assert set(row) == set(task.metrics)


# ----------------------------------------------------------------------- the dhd loss
class LinearHash(keras.Model):
    """A fixed linear 'hash network' h = x_flat W (for hand-computed values), with a batch-norm-like statistic."""

    def __init__(self, w):
        super().__init__()
        self.w = self.add_weight(shape=w.shape, initializer=keras.initializers.Constant(w), name="w")
        self.bits = w.shape[1]

    def call(self, x, training=False):
        return tf.matmul(tf.reshape(x, (tf.shape(x)[0], -1)), self.w)


def test_the_dhd_loss_matches_a_hand_computed_value():
    from linksim.losses import DHDAlignmentLoss

    w = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)        # 1x2x1 images -> h = the two pixels
    x = np.array([[[[1.0], [0.0]]], [[[0.5], [0.5]]]], np.float32)
    x_hat = np.array([[[[0.0], [1.0]]], [[[0.5], [0.5]]]], np.float32)
    loss = DHDAlignmentLoss(lam=0.3)
    loss.set_hash_network(LinearHash(w))
    mse = ((1 + 1) + 0) / 4                                    # mean over the 4 pixel values
    cos_term = ((1 - 0) + (1 - 1)) / 2                         # cos 0 for image 1, 1 for image 2
    assert float(loss(tf.constant(x), tf.constant(x_hat))) == pytest.approx(mse + 0.3 * cos_term, rel=1e-6)
    assert float(loss(tf.constant(x), {"images": tf.constant(x_hat)})) == pytest.approx(mse + 0.3 * cos_term,
                                                                                        rel=1e-6)
    zero = DHDAlignmentLoss(lam=0.0)
    zero.set_hash_network(LinearHash(w))
    assert float(zero(tf.constant(x), tf.constant(x_hat))) == pytest.approx(mse, rel=1e-6)


@pytest.mark.parametrize("lam", [-0.1, math.nan, "big", True])
def test_the_dhd_loss_refuses_a_bad_lambda(lam):
    from linksim.losses import DHDAlignmentLoss

    with pytest.raises(ValueError, match="lam"):
        DHDAlignmentLoss(lam=lam)


def test_the_hash_network_gets_no_gradient_and_does_not_change_in_training():
    from linksim.losses import DHDAlignmentLoss
    from linksim.training import TrainConfig, train_jscc

    keras.utils.set_random_seed(0)
    net = DeepHashNetwork((8, 8, 1), 3, bits=8, width=2)
    loss = DHDAlignmentLoss(lam=1.0)
    loss.set_hash_network(net)
    before = [v.numpy().copy() for v in net.weights]          # trainable and batch-norm statistics

    class Scale(keras.Model):
        def __init__(self):
            super().__init__()
            self.a = self.add_weight(shape=(), initializer="ones", name="a")

        def call(self, images, snr_db=None, training=False):
            return tf.clip_by_value(images * self.a + 0.05 * tf.sin(images * 7.0), 0.0, 1.0)

    model = Scale()
    x = np.random.default_rng(0).random((40, 8, 8, 1)).astype(np.float32)
    with tf.GradientTape() as tape:
        value = loss(tf.constant(x), model(tf.constant(x)))
    grads = tape.gradient(value, model.trainable_variables + net.trainable_variables)
    assert grads[0] is not None and all(g is None for g in grads[1:])
    assert net.trainable_variables == []                      # frozen by the loss
    train_jscc(model, x, TrainConfig(epochs=2, batch_size=10, patience=5, snr_train_db=10.0), loss_fn=loss,
               progress=False)
    for b, v in zip(before, net.weights):
        np.testing.assert_array_equal(b, v.numpy())


# ----------------------------------------------------------------------- scenario, validate, catalog
SCENARIO = """\
name: t
seed: 3
dataset:
  name: embedded
  test_size: 8
snr_db: [0]
rate:
  channel_uses: 196
schemes:
  - type: uncoded
metrics: [psnr, hash_cos, hash_hamming, hash_hamming_norm, retrieval_map]
task:
  hash: {bits: 32, epochs: 3}
"""

JSCC_DHD = """\
  - type: jscc
    architecture: {type: deepjscc}
    stages:
      - losses: [{type: dhd, lam: 0.1}]
        epochs: 1
"""


def _scenario_error(tmp_path, text) -> str:
    from linksim.scenario import ScenarioError, load_scenario

    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    return str(exc.value)


def test_a_scenario_names_the_hash_network_in_its_task_block_and_a_dhd_stage(tmp_path):
    from linksim.scenario import load_scenario

    p = tmp_path / "s.yaml"
    p.write_text(SCENARIO.replace("schemes:\n  - type: uncoded\n", "schemes:\n" + JSCC_DHD))
    scen = load_scenario(p)
    assert scen.data["task"]["hash"] == {"bits": 32, "epochs": 3}
    assert scen.schemes[0]["stages"][0]["losses"][0] == {"type": "dhd", "lam": 0.1}


@pytest.mark.parametrize("old,new,field,words", [
    ("bits: 32", "bits: 0", "task.hash.bits", "an integer in 2..1024"),
    ("bits: 32", "bitz: 32", "task.hash.bitz", "allowed: bits, width"),
    ("epochs: 3", "epochs: -1", "task.hash.epochs", "positive integer"),
    ("hash: {bits: 32, epochs: 3}", "hash: 7", "task.hash", "must be of type object"),
    ("epochs: 3", "top_n: 0", "task.hash.top_n", "positive integer"),
])
def test_validate_names_the_file_line_and_field_of_a_bad_hash_option(tmp_path, old, new, field, words):
    msg = _scenario_error(tmp_path, SCENARIO.replace(old, new))
    assert "s.yaml:13" in msg and field in msg and words in msg


def test_validate_refuses_a_bad_dhd_lambda(tmp_path):
    msg = _scenario_error(tmp_path, SCENARIO.replace("schemes:\n  - type: uncoded\n", "schemes:\n" + JSCC_DHD)
                          .replace("lam: 0.1", "lam: -1"))
    assert "lam" in msg and ">= 0" in msg and "stages[0].losses[0]" in msg


def test_the_catalog_hash_options_are_the_real_ones():
    from linksim import catalog

    assert set(catalog.HASH_OPTIONS) == set(hn.HASH_OPTIONS)
    for key, value in {**hn.DEFAULT_MODEL, **hn.DEFAULT_TRAINING, **hn.DEFAULT_EVAL}.items():
        assert catalog.HASH_OPTIONS[key](value) is None, key


# ----------------------------------------------------------------------- shipped networks
EMBEDDED = {"name": "embedded", "params": {}, "train_size": None}


def test_every_shipped_hash_network_is_the_default_network_of_the_embedded_data_set_for_its_bits():
    from linksim.store import SHIPPED_DIR, spec_key

    shipped = sorted(p for p in SHIPPED_DIR.glob("hashnet-*") if (p / "card.json").exists())
    assert shipped, "no shipped hash network"
    bits = []
    for path in shipped:
        import json

        card = json.loads((path / "card.json").read_text())
        k = card["spec"]["model"]["bits"]
        spec = hn.hash_spec(dataset_spec=EMBEDDED, image_shape=(28, 28, 1), num_classes=10, config={"bits": k})
        assert path.name == f"hashnet-{spec_key(spec)}", path.name     # what `task: {hash: {bits: K}}` asks for
        assert card["retrieval"]["top_n"] == 1000 and card["retrieval"]["n_queries"] == 1000
        assert card["retrieval"]["map"] > 0.7, (k, card["retrieval"]["map"])
        assert (path / "model.keras").stat().st_size < 400_000       # the weights budget
        bits.append(k)
    assert 32 in bits


def test_the_shipped_32_bit_network_loads_without_training():
    from linksim.store import SHIPPED_DIR

    net, entry = load_or_train_hash_network(ModelStore([SHIPPED_DIR]), dataset_spec=EMBEDDED, image_shape=(28, 28, 1),
                                            num_classes=10, x_train=None, y_train=None, config={"bits": 32},
                                            progress=False, train_missing=False)
    assert isinstance(net, DeepHashNetwork) and net.bits == 32 and entry.path.parent == SHIPPED_DIR
