"""DeepJSCC: layers, power normalisation, quantizer, save/reload, training, resume, model store."""

import json
import warnings

import keras
import numpy as np
import pytest
import sionna.phy
import tensorflow as tf

from linksim.channels import AWGNChannel
from linksim.schemes.base import SchemeContext
from linksim.schemes.deepjscc import DeepJSCC, DeepJSCCScheme
from linksim.schemes.deepjscc_layers import (BinaryQuantizer, DeepJSCCDecoder, DeepJSCCEncoder,
                                             PowerNormalization, latent_channels)
from linksim.store import ModelStore
from linksim.training import TrainConfig, train_jscc


@pytest.fixture(scope="module")
def fmnist():
    from linksim.data import get_dataset
    from linksim.data.base import to_float

    ds = get_dataset("embedded")
    x, _ = ds.load("train", 1200, seed=0)
    xt, _ = ds.load("test", 64, seed=0)
    return to_float(x), to_float(xt)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 250.0])
def test_power_normalisation_gives_unit_mean_energy_per_image(scale):
    # 16 images x 486 symbols: the energy is normalised per image, so every image is 1 to float precision
    z = tf.random.normal([16, 7, 7, 20], seed=1) * scale + 0.3 * scale
    x = PowerNormalization(486)(z)
    assert x.shape == (16, 486) and x.dtype == tf.complex64
    energy = tf.reduce_mean(tf.abs(x) ** 2, axis=1).numpy()
    np.testing.assert_allclose(energy, 1.0, atol=1e-4)


@pytest.mark.parametrize("shape,k", [((28, 28, 1), 486), ((28, 28, 1), 1), ((32, 32, 3), 512),
                                     ((32, 32, 3), 257), ((64, 48, 3), 1000)])
def test_encoder_spends_exactly_k_channel_uses_for_any_size_divisible_by_4(shape, k):
    enc = DeepJSCCEncoder(shape, k)
    x = enc(tf.random.uniform([3, *shape], seed=2))
    assert x.shape == (3, k)
    assert latent_channels(shape, k) * (shape[0] // 4) * (shape[1] // 4) >= 2 * k
    np.testing.assert_allclose(tf.reduce_mean(tf.abs(x) ** 2, axis=1).numpy(), 1.0, atol=1e-4)
    dec = DeepJSCCDecoder(shape, k)
    assert dec(x).shape == (3, *shape)


def test_encoder_rejects_a_size_the_strides_do_not_divide():
    with pytest.raises(ValueError, match="divisible by the encoder's stride 4"):
        DeepJSCCEncoder((30, 30, 1), 100)
    with pytest.raises(ValueError, match="quantizer must be one of null, binary, onoff"):
        DeepJSCCEncoder((28, 28, 1), 100, quantizer="ternary")
    with pytest.raises(ValueError, match="keying must be one of antipodal, onoff"):
        BinaryQuantizer(10, keying="ask")


def test_binary_quantizer_sends_qpsk_symbols_with_a_straight_through_gradient():
    q = BinaryQuantizer(50)
    z = tf.Variable(tf.random.normal([4, 100], seed=3))
    with tf.GradientTape() as tape:
        x = q(z)
        loss = tf.reduce_sum(tf.math.real(x) * 1.0 + tf.math.imag(x) * 2.0)
    values = np.unique(np.round(np.concatenate([tf.math.real(x).numpy().ravel(),
                                                tf.math.imag(x).numpy().ravel()]) * np.sqrt(2), 6))
    np.testing.assert_array_equal(values, [-1.0, 1.0])
    np.testing.assert_allclose(tf.reduce_mean(tf.abs(x) ** 2).numpy(), 1.0, atol=1e-6)
    grad = tape.gradient(loss, z)
    assert grad is not None and np.all(np.abs(grad.numpy()) > 0)
    # the bits are 1 exactly where the latent is above 0 (sigmoid above 0.5)
    np.testing.assert_array_equal(q.bits(z).numpy(), (z.numpy() > 0).astype(np.float32))


def test_onoff_keying_sends_the_same_bits_as_levels_0_and_1():
    """Algorithm 1 of the SD-JSCC paper: q in {0, 1} goes on the channel; same bits as the antipodal map."""
    z = tf.random.normal([64, 200], seed=5)
    antipodal, onoff = BinaryQuantizer(100), BinaryQuantizer(100, keying="onoff")
    x = onoff(z)
    re, im = tf.math.real(x).numpy(), tf.math.imag(x).numpy()
    bits = onoff.bits(z).numpy()
    np.testing.assert_array_equal(np.concatenate([re, im], axis=1), bits)
    np.testing.assert_array_equal(bits, antipodal.bits(z).numpy())
    # energy per complex symbol = b_re + b_im: twice the fraction of ones (about 1 for balanced bits)
    np.testing.assert_allclose(np.mean(np.abs(x.numpy()) ** 2), 2 * bits.mean(), rtol=1e-6)
    # half the distance between levels of the antipodal map (sqrt 2 vs 1): 3 dB at equal average energy
    a = tf.math.real(antipodal(z)).numpy()
    assert np.isclose(np.ptp(a), np.sqrt(2)) and np.isclose(np.ptp(re), 1.0)
    encoder = DeepJSCCEncoder((28, 28, 1), 49, [4, 4, 4, 4], 3, "onoff")
    assert encoder.to_symbols.keying == "onoff"


def test_decoder_with_snr_side_info_uses_the_snr():
    dec = DeepJSCCDecoder((28, 28, 1), 100, snr_side_info=True)
    y = tf.complex(tf.random.normal([2, 100], seed=4), tf.random.normal([2, 100], seed=5))
    a, b = dec(y, tf.constant(0.0)), dec(y, tf.constant(20.0))
    assert float(tf.reduce_max(tf.abs(a - b))) > 0
    with pytest.raises(ValueError, match="needs snr_db"):
        dec(y)


@pytest.mark.parametrize("layer", [PowerNormalization(10), BinaryQuantizer(10), BinaryQuantizer(10, keying="onoff"),
                                   DeepJSCCEncoder((28, 28, 1), 97, [8, 8, 8, 8], 3, "binary"),
                                   DeepJSCCDecoder((32, 32, 3), 97, [8, 8, 8, 8], 3, True)])
def test_layer_config_round_trips(layer):
    cfg = keras.layers.serialize(layer)
    again = keras.layers.deserialize(json.loads(json.dumps(cfg)))
    assert type(again) is type(layer) and again.get_config() == layer.get_config()


def test_saved_and_reloaded_model_gives_identical_outputs(tmp_path, fmnist):
    x, _ = fmnist
    keras.utils.set_random_seed(0)
    model = DeepJSCC((28, 28, 1), 486, quantizer=None)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    imgs = tf.constant(x[:8])
    sionna.phy.config.seed = 42
    a = model(imgs, tf.constant(5.0)).numpy()
    sionna.phy.config.seed = 42
    b = again(imgs, tf.constant(5.0)).numpy()
    np.testing.assert_array_equal(a, b)
    sionna.phy.config.seed = 43  # a different noise realisation does change the output: the check can fail
    assert np.abs(again(imgs, tf.constant(5.0)).numpy() - a).max() > 1e-4


def test_the_store_deflates_saved_models_and_they_reload_identically(tmp_path, fmnist):
    import zipfile

    from linksim.store import ModelStore, deflate_keras_file

    keras.utils.set_random_seed(0)
    model = DeepJSCC((28, 28, 1), 486, quantizer=None)
    plain = tmp_path / "plain.keras"
    model.save(plain)
    entry = ModelStore([tmp_path / "store"]).save("deepjscc", {"k": 1}, model, {}, {})
    with zipfile.ZipFile(entry.model_file) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    assert entry.model_file.stat().st_size < 0.95 * plain.stat().st_size
    again = keras.saving.load_model(entry.model_file)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    size = entry.model_file.stat().st_size
    deflate_keras_file(entry.model_file)  # already deflated: left alone
    assert entry.model_file.stat().st_size == size


def test_a_store_shares_loaded_models_only_inside_its_block(tmp_path):
    from linksim.store import ModelStore

    keras.utils.set_random_seed(0)
    store = ModelStore([tmp_path / "store"])
    store.save("deepjscc", {"k": 2}, DeepJSCC((28, 28, 1), 64, filters=[4, 4, 4, 4]), {}, {})
    a, _ = store.load("deepjscc", {"k": 2})
    b, _ = store.load("deepjscc", {"k": 2})
    assert a is not b                      # outside the block every load is a fresh model
    with store.sharing_loaded_models():
        c, _ = store.load("deepjscc", {"k": 2})
        d, _ = store.load("deepjscc", {"k": 2})
        assert c is d                      # one model for every chain of a sweep
        store.save("deepjscc", {"k": 2}, DeepJSCC((28, 28, 1), 64, filters=[4, 4, 4, 4]), {}, {})
        e, _ = store.load("deepjscc", {"k": 2})
        assert e is not c                  # a rewritten file is loaded again
    f, _ = store.load("deepjscc", {"k": 2})
    assert f is not e


def _val_mse(model, x, snr_db=10.0):
    sionna.phy.config.seed = 7
    return float(tf.reduce_mean(tf.square(model(tf.constant(x), tf.constant(snr_db)) - x)))


def test_a_short_training_run_lowers_the_validation_mse(fmnist):
    # 1,080 training images, 2 epochs; 64 held-out test images at 10 dB
    x, xt = fmnist
    keras.utils.set_random_seed(1)
    model = DeepJSCC((28, 28, 1), 486, filters=[8, 16, 16, 16])
    before = _val_mse(model, xt)
    hist = train_jscc(model, x, TrainConfig(epochs=2, batch_size=32, seed=1), progress=False)
    after = _val_mse(model, xt)
    assert hist["epochs_run"] == 2 and len(hist["val_loss"]) == 2
    assert after < 0.5 * before, (before, after)


class _Stop(Exception):
    pass


def test_interrupted_training_resumes_after_the_last_finished_epoch(tmp_path, fmnist):
    x, _ = fmnist
    cfg = dict(epochs=3, batch_size=64, seed=2, steps_per_epoch=4, patience=10)

    def stop_after_two(epoch, logs):
        if epoch == 2:
            raise _Stop

    keras.utils.set_random_seed(2)
    model = DeepJSCC((28, 28, 1), 64, filters=[4, 4, 4, 4])
    with pytest.raises(_Stop):
        train_jscc(model, x[:400], TrainConfig(**cfg), checkpoint_dir=tmp_path, progress=False,
                   callbacks=[stop_after_two])
    first_two = json.loads((tmp_path / "history.json").read_text())
    assert first_two["epoch"] == [1, 2]

    seen = []
    keras.utils.set_random_seed(99)  # a fresh model: everything must come from the checkpoint
    again = DeepJSCC((28, 28, 1), 64, filters=[4, 4, 4, 4])
    hist = train_jscc(again, x[:400], TrainConfig(**cfg), checkpoint_dir=tmp_path, progress=False,
                      callbacks=[lambda e, logs: seen.append(e)])
    assert seen == [3]                     # only the missing epoch ran
    assert hist["epoch"] == [1, 2, 3] and hist["epochs_run"] == 3
    assert hist["loss"][:2] == first_two["loss"]


def _context(x, store, train_missing=True, k=64):
    return SchemeContext(image_shape=(28, 28, 1), channel_uses=k, train_images=x, channel=AWGNChannel(),
                         seed=3, dataset_spec={"name": "embedded", "params": {}, "train_size": len(x)},
                         store=store, progress=False, train_missing=train_missing)


def _tiny_scheme(**kw):
    return DeepJSCCScheme(snr_train_db=[0, 10], filters=[4, 4, 4, 4], epochs=1, steps_per_epoch=3,
                          label="tiny", **kw)


def test_scheme_trains_once_then_loads_from_the_store(tmp_path, fmnist):
    x, xt = fmnist
    store = ModelStore([tmp_path])
    s1 = _tiny_scheme()
    s1.prepare(_context(x[:300], store))
    card = json.loads((s1.entry.path / "card.json").read_text())
    assert card["snr_train_db"] == [0, 10] and card["channel_uses"] == 64 and card["epochs_run"] == 1
    assert card["key"] in s1.entry.path.name
    s2 = _tiny_scheme()
    s2.prepare(_context(x[:300], store, train_missing=False))   # would raise if it had to train
    st1, st2 = s1.encode(xt[:4]), s2.encode(xt[:4])
    np.testing.assert_array_equal(st1.numpy(), st2.numpy())
    res = s2.evaluate(st2, 10.0)
    assert res.images.shape == (4, 28, 28, 1) and res.counts["channel_uses"] == 4 * 64
    assert np.isnan(res.counts["source_bits"])
    q = _tiny_scheme(quantizer="binary")
    assert q.store_spec(_context(x[:300], store)) != s1.store_spec(_context(x[:300], store))


def test_missing_model_without_training_is_a_clear_error(tmp_path, fmnist):
    x, _ = fmnist
    with pytest.raises(ValueError, match="run `linksim train`"):
        _tiny_scheme().prepare(_context(x[:300], ModelStore([tmp_path]), train_missing=False))


def test_a_corrupted_stored_model_is_retrained_not_used(tmp_path, fmnist):
    x, _ = fmnist
    store = ModelStore([tmp_path])
    s1 = _tiny_scheme()
    s1.prepare(_context(x[:300], store))
    s1.entry.model_file.write_bytes(b"not a zip file")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="no trained model"):
            _tiny_scheme().prepare(_context(x[:300], store, train_missing=False))
    assert any("cannot be loaded" in str(m.message) for m in w)
    s3 = _tiny_scheme()
    s3.prepare(_context(x[:300], store))          # retrains and overwrites the broken file
    reloaded = keras.saving.load_model(s3.entry.model_file)   # the rewritten file holds the retrained model
    for a, b in zip(reloaded.get_weights(), s3.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_card_that_does_not_match_its_key_is_not_used(tmp_path, fmnist):
    x, _ = fmnist
    store = ModelStore([tmp_path])
    s1 = _tiny_scheme()
    s1.prepare(_context(x[:300], store))
    card = json.loads(s1.entry.card_file.read_text())
    card["spec"]["seed"] = 12345
    s1.entry.card_file.write_text(json.dumps(card))
    with pytest.warns(UserWarning, match="does not match its key"):
        assert store.find("deepjscc", s1.store_spec(_context(x[:300], store))) is None


def _bound(model, k=64):
    """A deepjscc scheme transmitting with ``model`` over one AWGN hop (as a run binds a loaded model)."""
    s = DeepJSCCScheme()
    s.context = _context(np.zeros((4, 28, 28, 1), np.float32), None, k=k)
    s._bind(s.context, model, None)
    return s


def _encoder_then_receiver(s, x, snrs):
    """The reference: the compiled encoder, then the compiled channel and decoder, per SNR point."""
    sionna.phy.config.seed = 5
    symbols = s._encode(tf.constant(x))
    return [s._receive(symbols, tf.constant(v, tf.float32)).numpy() for v in snrs], symbols.numpy()


@pytest.mark.parametrize("batch", [16, 3])
def test_a_transmission_is_encoded_once_with_the_results_of_encoder_then_receiver(fmnist, batch):
    # the first SNR point runs encoder + channel + decoder in one call and keeps the symbols for the next ones;
    # batches of at most SMALL_BATCH images run encoder and decoder under XLA (float rounding), the noise as before
    keras.utils.set_random_seed(0)
    s = _bound(DeepJSCC((28, 28, 1), 64, filters=(4, 4, 4, 4)))
    x = fmnist[1][:batch]
    ref, ref_symbols = _encoder_then_receiver(s, x, (0.0, 10.0, 20.0))
    sionna.phy.config.seed = 5
    state = s.encode(x)
    assert state.symbols is None                                   # nothing computed before the first point
    got = [s.evaluate(state, v).images for v in (0.0, 10.0, 20.0)]
    assert state.symbols is not None
    tol = 1e-6 if batch > s.SMALL_BATCH else 1e-5   # measured: identical, and ~1e-7 under XLA
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=0, atol=tol)
    np.testing.assert_allclose(state.numpy(), ref_symbols, rtol=0, atol=10 * tol)
    counts = s.evaluate(state, 10.0).counts
    assert counts["images"] == batch and counts["channel_uses"] == batch * 64 and np.isnan(counts["source_bits"])
