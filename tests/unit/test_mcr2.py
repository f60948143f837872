"""The coding-rate-reduction JSCC (linksim.schemes.mcr2): ΔR, the gate, the nearest-subspace classifier, the scheme."""

import numpy as np
import pytest
import tensorflow as tf

from linksim.channels import AWGNChannel
from linksim.registry import LOSSES
from linksim.schemes.base import BatchResult, SchemeContext
from linksim.schemes.mcr2 import (MCR2JSCC, MCR2Architecture, MCR2JSCCScheme,
                                  NearestSubspaceClassifier, TemperatureSchedule, class_coding_rate, coding_rate,
                                  level_features, rate_reduction)
from linksim.store import ModelStore, default_store
from linksim.tasks.feature_classification import FeatureClassificationTask


# ------------------------------------------------------------------ ΔR against a direct computation
def _direct(z, y, num_classes, eps2=0.5):
    """ΔR as written (d x d matrices, Π_j diagonal), float64."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    m, d = z.shape
    zt = z.T
    r = 0.5 * np.linalg.slogdet(np.eye(d) + d / (m * eps2) * zt @ zt.T)[1]
    rc = 0.0
    for j in range(num_classes):
        pi = np.diag((y == j).astype(float))
        t = np.trace(pi)
        if t:
            rc += t / (2 * m) * np.linalg.slogdet(np.eye(d) + d / (t * eps2) * zt @ pi @ zt.T)[1]
    return r, rc


@pytest.mark.parametrize("m,d,c,eps2,seed", [(20, 7, 4, 0.5, 0), (12, 30, 3, 0.5, 1), (32, 16, 5, 0.1, 2),
                                             (9, 9, 6, 1.0, 3)])
def test_rate_reduction_matches_the_formula_with_d_by_d_matrices(m, d, c, eps2, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(m, d))
    y = rng.integers(0, c, m)
    y[0] = c - 1
    r, rc = _direct(z, y, c, eps2)
    zf = tf.constant(z, tf.float32)
    # float32 Cholesky of m x m against float64 slogdet of d x d: 1e-4 relative
    assert float(coding_rate(zf, eps2)) == pytest.approx(r, rel=1e-4)
    assert float(class_coding_rate(zf, y, c, eps2)) == pytest.approx(rc, rel=1e-4)
    assert float(rate_reduction(zf, y, c, eps2)) == pytest.approx(r - rc, rel=1e-4, abs=1e-5)


def test_an_empty_class_adds_nothing_and_the_features_are_normalised():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(15, 6)).astype(np.float32)
    y = rng.integers(0, 3, 15)
    # classes 3 and 4 are empty: the same R^c as with 3 classes; scaling a feature changes nothing
    assert float(class_coding_rate(z, y, 5)) == pytest.approx(float(class_coding_rate(z, y, 3)), rel=1e-6)
    z2 = z * rng.uniform(0.1, 10.0, size=(15, 1)).astype(np.float32)
    assert float(rate_reduction(z2, y, 3)) == pytest.approx(float(rate_reduction(z, y, 3)), rel=1e-5)


def test_rate_reduction_is_non_negative_and_prefers_orthogonal_class_subspaces():
    rng = np.random.default_rng(5)
    for _ in range(20):                      # ΔR >= 0 (the classes' coding rates cannot exceed the whole's)
        m, d, c = rng.integers(4, 40), rng.integers(2, 20), rng.integers(1, 6)
        z = rng.normal(size=(m, d)).astype(np.float32)
        assert float(rate_reduction(z, rng.integers(0, c, m), c)) >= -1e-4
    y = np.repeat(np.arange(4), 10)
    ortho = np.zeros((40, 8), np.float32)
    for j in range(4):                       # class j in its own 2-dim coordinate subspace
        ortho[y == j, 2 * j:2 * j + 2] = rng.normal(size=(10, 2))
    collapsed = np.tile(rng.normal(size=(1, 8)), (40, 1)) + 0.01 * rng.normal(size=(40, 8))
    shared = rng.normal(size=(40, 8))        # every class spread over the same space
    v_o, v_c, v_s = (float(rate_reduction(a.astype(np.float32), y, 4)) for a in (ortho, collapsed, shared))
    assert v_o > v_s > v_c >= 0
    assert v_c < 0.01


def test_the_mcr2_loss_reads_received_or_sent_features_and_refuses_a_model_without_them():
    loss = LOSSES.create("mcr2", eps2=0.5, features="transmitted")
    loss.num_classes = 3
    rng = np.random.default_rng(6)
    out = {"features": tf.constant(rng.normal(size=(12, 10)), tf.float32),
           "sent": tf.constant(rng.normal(size=(12, 10)), tf.float32)}
    y = rng.integers(0, 3, 12)
    assert float(loss(None, out, y)) == pytest.approx(-float(rate_reduction(out["sent"], y, 3)), rel=1e-6)
    with pytest.raises(ValueError, match="returns its features"):
        loss(None, tf.zeros((2, 4, 4, 1)), y)
    with pytest.raises(ValueError, match="features must be one of received, transmitted"):
        LOSSES.create("mcr2", features="decoded")
    with pytest.raises(ValueError, match="eps2"):
        LOSSES.create("mcr2", eps2=0)


# ------------------------------------------------------------------ the gate
def test_the_gate_sends_whole_groups_in_a_thermometer_and_keeps_unit_energy_per_used_symbol():
    tf.random.set_seed(0)
    model = MCR2JSCC((8, 8, 1), 16, filters=(4, 4, 4, 4), gate=True, groups=4, always_on=1, gate_units=8)
    x = tf.random.uniform((64, 8, 8, 1), seed=1)
    snr = tf.constant(np.linspace(0, 20, 64), tf.float32)
    for training in (False, True):
        sym, mask = model.transmit(x, snr, training=training)
        mask = mask.numpy()
        assert set(np.unique(mask)) <= {0.0, 1.0}          # hard values forward, also in training
        groups = mask.reshape(64, 4, 4)
        assert (groups == groups[:, :, :1]).all()                          # whole groups of k / G symbols
        on = groups[:, :, 0]
        assert (on[:, 0] == 1).all() and (np.diff(on, axis=1) <= 0).all()  # always-on first, then a thermometer
        power = np.abs(sym.numpy()) ** 2
        assert np.allclose(power.sum(1) / mask.sum(1), 1.0, atol=1e-5)    # mean energy 1 per used symbol
        assert (power[mask == 0] == 0).all()
    forced, fmask = model.transmit(x[:5], snr[:5], groups_on=tf.constant([1, 3, 4, 0, 9]))
    assert fmask.numpy().sum(1).tolist() == [4, 12, 16, 4, 16]     # forced counts clipped to always_on .. G
    out = model(x, snr)
    y = out["features"].numpy()
    k = 16
    for b in range(64):   # nothing is received where nothing was sent
        n = int(out["num_symbols"][b])
        assert (y[b, n:k] == 0).all() and (y[b, k + n:] == 0).all()


def test_the_straight_through_choice_passes_a_gradient_to_the_policy():
    model = MCR2JSCC((8, 8, 1), 16, filters=(4, 4, 4, 4), gate=True, groups=4, always_on=1, gate_units=8)
    x = tf.random.uniform((8, 8, 8, 1), seed=2)
    with tf.GradientTape() as tape:
        out = model(x, tf.fill([8], 10.0), training=True)
        loss = LOSSES.create("gate_rate", lam=1.0)(x, out) + tf.reduce_mean(tf.square(out["images"] - x))
    grads = tape.gradient(loss, model.gate.trainable_variables)
    assert all(g is not None and float(tf.norm(g)) > 0 for g in grads)


def test_the_temperature_is_annealed_geometrically_over_the_epochs():
    model = MCR2JSCC((8, 8, 1), 16, filters=(4, 4, 4, 4), gate=True, groups=4, always_on=1)
    sch = TemperatureSchedule(model, 2.0, 0.2, 11)
    assert sch.tau(0) == pytest.approx(2.0) and sch.tau(10) == pytest.approx(0.2)
    assert sch.tau(5) == pytest.approx(np.sqrt(2.0 * 0.2))
    sch.set_epoch(10)
    assert float(model.gate.tau) == pytest.approx(0.2)


def test_the_architecture_checks_its_options():
    with pytest.raises(ValueError, match="always_on must be at most groups"):
        MCR2Architecture(groups=2, always_on=3)
    with pytest.raises(ValueError, match="multiple of groups"):
        MCR2Architecture(groups=8, gate=True).build((8, 8, 1), 12)
    assert MCR2Architecture(groups=8).build((8, 8, 1), 12).channel_uses == 12   # no gate: any k
    with pytest.raises(ValueError, match="gate must be true or false"):
        MCR2Architecture(gate="yes")
    with pytest.raises(ValueError, match="gate_lambda"):
        MCR2JSCCScheme(gate_lambda=-1, gate=True)
    with pytest.raises(ValueError, match="gate_lambda is the cost of the gate's channel uses: it needs gate: true"):
        MCR2JSCCScheme(gate_lambda=0.1)


def test_a_gate_that_wont_fit_is_a_validate_error_naming_the_field(tmp_path):
    from linksim.catalog import check_scheme

    problems = list(check_scheme("mcr2_jscc", {"groups": 2, "always_on": 3, "gate": True}))
    assert any(p[0] == ("always_on",) and "at most groups" in p[1] for p in problems)
    problems = list(check_scheme("mcr2_jscc", {"gate_lambda": 0.1}))
    assert any(p[0] == ("gate_lambda",) and "gate: true" in p[1] for p in problems)
    problems = list(check_scheme("mcr2_jscc", {"groups": 8, "gate": True}, channel_uses=[100]))
    assert any(p[0] == ("groups",) and "not a multiple of groups (8)" in p[1] for p in problems)
    assert not list(check_scheme("mcr2_jscc", {"groups": 4, "gate": True}, channel_uses=[100]))
    assert not list(check_scheme("mcr2_jscc", {"groups": 8}, channel_uses=[100]))   # without a gate any k


# ------------------------------------------------------------------ nearest-subspace classification
def test_nearest_subspace_classifier_finds_the_class_of_noisy_subspace_samples():
    rng = np.random.default_rng(7)
    d, r, c = 24, 3, 4
    bases = [np.linalg.qr(rng.normal(size=(d, r)))[0] for _ in range(c)]

    def draw(n):
        y = rng.integers(0, c, n)
        z = np.stack([bases[j] @ rng.normal(size=r) for j in y]) + 0.05 * rng.normal(size=(n, d))
        return z, y

    clf = NearestSubspaceClassifier(r).fit(*draw(400))
    z, y = draw(300)
    assert np.mean(clf.predict(z) == y) > 0.98         # 300 samples, nearly orthogonal subspaces
    # the residual is ||z - U U^T z||^2 of the unit-norm feature
    u = z[0] / np.linalg.norm(z[0])
    want = [np.sum((u - b @ (b.T @ u)) ** 2) for b in clf.bases]
    assert np.allclose(clf.residuals(z[:1])[0], want, atol=1e-10)


def test_level_features_take_the_real_and_imaginary_parts_of_the_first_symbols():
    slots = np.arange(2 * 6)[None].astype(float)           # k = 6: re 0..5, im 6..11
    assert level_features(slots, 2, 6).tolist() == [[0, 1, 6, 7]]


# ------------------------------------------------------------------ training with labels, the task, the row
def _context(x, y, store, k=16, channel=None):
    return SchemeContext(image_shape=x.shape[1:], channel_uses=k, train_images=x, channel=channel or AWGNChannel(),
                         seed=0, dataset_spec={"name": "test", "params": {}, "train_size": len(x)}, store=store,
                         progress=False, extra={"train_labels": y, "num_classes": 3})


def _tiny_data(n=96, seed=8):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.zeros((n, 8, 8, 1), np.float32)
    for i, c in enumerate(y):   # class c: a bright quadrant
        x[i, 4 * (c % 2):4 * (c % 2) + 4, 4 * (c // 2):4 * (c // 2) + 4] = 0.8
    return np.clip(x + 0.05 * rng.normal(size=x.shape), 0, 1).astype(np.float32), y


def test_a_gated_scheme_trains_with_labels_reports_used_channel_uses_and_classifies_features(tmp_path):
    x, y = _tiny_data()
    s = MCR2JSCCScheme(gate=True, groups=4, always_on=1, filters=[4, 4, 4, 4], beta=0.01, gate_lambda=0.01,
                       epochs=2, steps_per_epoch=3, batch_size=32, subspace_dim=2, classifier_images=64,
                       label="tiny gated")
    seen = []
    loss = s.stages[0].losses[1]
    call = loss.__call__
    loss.__class__ = type("Recording", (type(loss),), {"__call__": lambda self, a, o, lab=None: (seen.append(lab),
                                                                                                   call(a, o, lab))[1]})
    s.prepare(_context(x, y, ModelStore([tmp_path])))
    # training batches (32) and the validation set (traced or eager) all came with their labels
    assert seen and all(lab is not None for lab in seen) and 32 in [lab.shape[0] for lab in seen]
    assert s.entry.card()["mcr2_eps2"] == 0.5 and s.entry.card()["num_classes"] == 3
    assert sorted(s.classifiers) == [4, 8, 12, 16]          # one classifier per number of symbols sent
    res = s.evaluate(s.encode(x[:20]), 10.0)
    used = res.outputs["used_channel_uses"]
    assert res.counts["used_channel_uses"] == used.sum() and res.counts["channel_uses"] == 20 * 16
    assert set(used.tolist()) <= {4, 8, 12, 16}
    assert res.counts["used_channel_uses_sq"] == (used ** 2).sum()
    assert res.outputs["feature_class"].shape == (20,)
    # the stored model is loaded (not retrained) by a second scheme of the same spec
    s2 = MCR2JSCCScheme(gate=True, groups=4, always_on=1, filters=[4, 4, 4, 4], beta=0.01, gate_lambda=0.01,
                        epochs=2, steps_per_epoch=3, batch_size=32, subspace_dim=2, classifier_images=64)
    ctx = _context(x, y, ModelStore([tmp_path]))
    ctx.train_missing = False
    s2.prepare(ctx)
    assert s2.entry.path == s.entry.path


def test_without_labels_the_scheme_says_what_it_needs(tmp_path):
    x, _ = _tiny_data(16)
    s = MCR2JSCCScheme(filters=[4, 4, 4, 4], groups=4, epochs=1, steps_per_epoch=1, batch_size=8)
    ctx = _context(x, None, ModelStore([tmp_path]))
    ctx.extra = {}
    with pytest.raises(ValueError, match="training labels"):
        s.prepare(ctx)


def test_the_feature_task_scores_the_schemes_classes_and_gives_nan_to_others():
    from linksim.tasks.base import TaskContext

    task = FeatureClassificationTask()
    task.prepare(TaskContext(x_train=None, y_train=np.zeros(3), x_test=None, y_test=np.array([0, 1, 2, 1]),
                             dataset_spec={}, image_shape=(8, 8, 1), seed=0))
    out = task.evaluate_result(BatchResult(np.zeros((2, 8, 8, 1)), {}, {"feature_class": np.array([2, 1])}),
                               np.array([2, 3]))
    assert out["correct"].tolist() == [1.0, 1.0]
    none = task.evaluate_result(BatchResult(np.zeros((2, 8, 8, 1)), {}), np.array([0, 1]))
    assert np.isnan(task.summarise(none, [0, 1])["feature_accuracy"])
    assert task.summarise({"correct": np.array([1.0, 0.0, 1.0, 1.0])}, range(4)) == {"feature_accuracy": 0.75}


def test_a_row_gives_the_mean_and_spread_of_the_channel_uses_spent():
    from linksim.run.evaluation import Aggregate, make_row

    class S:
        label, digital = "s", False

    used = np.array([32, 64, 64, 128])
    agg = Aggregate()
    agg.add({"images": 4, "source_bits": float("nan"), "channel_uses": 4 * 128,
             "used_channel_uses": int(used.sum()), "used_channel_uses_sq": int((used ** 2).sum())}, {})
    row = make_row(S(), {"snr_db": 0.0}, agg, (8, 8, 1), 0.0)
    assert row["used_channel_uses"] == pytest.approx(used.mean())
    assert row["used_channel_uses_std"] == pytest.approx(used.std())
    assert row["channel_uses"] == 128


def test_a_df_relay_re_encodes_as_many_groups_as_it_received(tmp_path):
    from linksim.channels.relay import MultiHopChannel

    x, y = _tiny_data(64)
    chain = MultiHopChannel(hops=2, relay="df")
    s = MCR2JSCCScheme(gate=True, groups=4, always_on=1, filters=[4, 4, 4, 4], epochs=1, steps_per_epoch=2,
                       batch_size=32, subspace_dim=2, classifier_images=64)
    s.prepare(_context(x, y, ModelStore([tmp_path]), channel=chain))
    seen = []
    regen = s._regenerate_impl

    def spy(yy, no):
        out = regen(yy, no)
        seen.append((np.sum(np.abs(yy.numpy()) > 0, 1), np.sum(np.abs(out.numpy()) > 0, 1)))
        return out

    s.channel = chain.bind(regenerate=spy)
    s._receive = s._receive_impl            # eager, to watch the relay
    res = s.evaluate(s.encode(x[:16]), [10.0, 10.0])
    (got, sent), = seen
    assert (sent == got).all() and (got == res.outputs["used_channel_uses"]).all()


# ------------------------------------------------------------------ the shipped models
def test_every_shipped_gated_model_spends_fewer_channel_uses_at_high_snr_and_never_more_than_k():
    import dataclasses

    from linksim.data import get_dataset
    from linksim.data.base import to_float
    from test_jscc_composition import _scenario_contexts

    gated = [(opts, ctx) for name, _, opts, ctx in _scenario_contexts()
             if name == "mcr2_gated.yaml" and opts.get("gate")]
    assert len(gated) == 4
    x_test = to_float(get_dataset("embedded").load("test", 200, seed=1234)[0])
    for opts, ctx in gated:
        opts = {k: v for k, v in opts.items() if k != "type"}
        s = MCR2JSCCScheme(**opts)
        s.prepare(dataclasses.replace(ctx, store=default_store(), train_missing=False, progress=False))
        state = s.encode(x_test)
        low, high = (s.evaluate(state, snr).outputs["used_channel_uses"] for snr in (0.0, 20.0))
        k = ctx.channel_uses
        assert low.max() <= k and high.max() <= k
        assert high.mean() < low.mean(), opts["label"]    # 200 test images, the policy's argmax: deterministic


@pytest.mark.parametrize("relay,params", [("af", {}), ("qf", {"bits": 4})])
def test_gated_transmissions_cross_af_and_qf_relays_with_their_length(tmp_path, relay, params):
    from linksim.channels.relay import MultiHopChannel

    x, y = _tiny_data(64)
    chain = MultiHopChannel(hops=2, relay=relay, relay_params=params)
    s = MCR2JSCCScheme(gate=True, groups=4, always_on=1, filters=[4, 4, 4, 4], epochs=1, steps_per_epoch=2,
                       batch_size=32, subspace_dim=2, classifier_images=64)
    s.prepare(_context(x, y, ModelStore([tmp_path]), channel=chain))
    state = s.encode(x[:16])
    images, slots, used = (t.numpy() for t in s._receive(state, tf.constant([6.0, 12.0])))
    k = 16
    assert np.isfinite(images).all() and set(used.tolist()) <= {4, 8, 12, 16}
    for b in range(16):   # the relays forward the used symbols only: nothing arrives beyond them
        n = int(used[b])
        assert (slots[b, n:k] == 0).all() and (slots[b, k + n:] == 0).all()
        assert np.abs(slots[b, :n]).sum() > 0


def test_the_temperature_of_a_resumed_run_is_that_of_its_epoch_not_the_checkpointed_one(tmp_path):
    from linksim.training import TrainConfig, train_jscc

    x, y = _tiny_data(64)
    model = MCR2JSCC((8, 8, 1), 16, filters=(4, 4, 4, 4), gate=True, groups=4, always_on=1)
    sch = TemperatureSchedule(model, 2.0, 0.2, 4)
    cfg = TrainConfig(epochs=4, batch_size=32, snr_train_db=[0, 20], steps_per_epoch=1, seed=3)
    seen = []

    def record(epoch, logs):
        seen.append((epoch, float(model.gate.tau.numpy())))
        if epoch == 2 and len(seen) == 2:
            raise KeyboardInterrupt     # interrupted after epoch 2's checkpoint

    with pytest.raises(KeyboardInterrupt):
        train_jscc(model, x, cfg, loss_fn=lambda a, o: tf.reduce_mean(tf.square(a - o["images"])),
                   checkpoint_dir=tmp_path, progress=False, callbacks=[record], schedules=[sch])
    model.set_temperature(5.0)                                    # whatever a new process starts with
    train_jscc(model, x, cfg, loss_fn=lambda a, o: tf.reduce_mean(tf.square(a - o["images"])),
               checkpoint_dir=tmp_path, progress=False, callbacks=[record], schedules=[sch])
    # every epoch (1-based e) ran at tau(e - 1), the resumed epochs 3 and 4 too
    assert [e for e, _ in seen] == [1, 2, 3, 4]
    assert [t for _, t in seen] == pytest.approx([sch.tau(e - 1) for e, _ in seen], rel=1e-6)


def test_labels_ride_along_when_training_through_a_chain_at_one_snr(tmp_path):
    x, y = _tiny_data(64)
    s = MCR2JSCCScheme(filters=[4, 4, 4, 4], groups=4, beta=0.01, epochs=1, steps_per_epoch=2, batch_size=32,
                       snr_train_db=10, subspace_dim=2, classifier_images=64,
                       train_channel={"type": "multihop", "hops": 2, "relay": "af"})
    s.prepare(_context(x, y, ModelStore([tmp_path])))     # validation batches: (x, labels) with one SNR
    assert s.entry.card()["epochs_run"] == 1
