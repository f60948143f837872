"""PCA-DeepJSCC: the closed-form allocation, the gain header, and the model at initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from linksim.schemes.deepjscc_pca import (PCADeepJSCC, PCADeepJSCCArchitecture, PCADeepJSCCScheme,
                                          linear_allocation_gains)
from linksim.schemes.gain_header import decode_header, encode_with_header, header_stats


def _allocation_numpy(lam, snr_db, k):
    """Reference: bisection on the water level of the KKT conditions (independent of the closed form)."""
    s2 = 0.5 * 10 ** (-snr_db / 10)
    lo, hi = 1e-12, 1e12
    for _ in range(200):
        t = np.sqrt(lo * hi)
        p = np.maximum(np.sqrt(s2 * lam) * t - s2, 0)
        lo, hi = (t, hi) if p.sum() < k else (lo, t)
    return p, s2


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_linear_allocation_gains_meets_the_budget_and_matches_an_independent_bisection(snr_db):
    lam = np.sort(np.random.default_rng(0).exponential(size=200) ** 3)[::-1].astype(np.float32)
    k = 60
    gain, lmmse = linear_allocation_gains(lam, snr_db, k)
    p = (gain.numpy()[0] ** 2) * lam
    ref, s2 = _allocation_numpy(lam.astype(np.float64), snr_db, k)
    assert p.sum() == pytest.approx(k, rel=1e-4)
    np.testing.assert_allclose(p, ref, rtol=2e-3, atol=1e-4 * k / len(lam))
    # the LMMSE receive gain of every active component
    act = p > 0
    np.testing.assert_allclose(lmmse.numpy()[0][act], (gain.numpy()[0] * lam / (p + s2))[act], rtol=1e-5)


def test_linear_allocation_gains_takes_one_snr_per_image():
    lam = np.array([4.0, 2.0, 1.0, 0.1], np.float32)
    gain, _ = linear_allocation_gains(lam, tf.constant([0.0, 30.0]), 2)
    g = gain.numpy()
    assert g.shape == (2, 4)
    # at low SNR the weak components are switched off, at high SNR all are on
    assert g[0, 3] == 0 and (g[1] > 0).all()


def test_the_gain_header_brings_the_payload_back_exactly_without_noise_and_every_image_has_energy_k():
    rng = np.random.default_rng(1)
    k = 50
    payload = rng.normal(size=(300, 2 * k - 1)) * np.exp(rng.normal(size=(300, 1)))   # gains over ~2 decades
    stats = header_stats(payload, k)
    x = encode_with_header(tf.constant(payload, tf.float32), k, stats)
    energy = tf.reduce_sum(tf.abs(x) ** 2, axis=1).numpy()
    np.testing.assert_allclose(energy, k, rtol=1e-5)
    back, _ = decode_header(x, k, stats)
    ell = (0.5 * np.log((payload ** 2).sum(1) / k) - stats[0]) / stats[1]
    inside = np.abs(ell) < 4                                  # outside [-4, 4] the header clips
    np.testing.assert_allclose(back.numpy()[inside], payload[inside], rtol=2e-4, atol=2e-5)


def test_the_gain_headers_error_has_the_stated_standard_deviation():
    # 4000 images, 10 dB: the header's error std is sqrt(no / 2) / A standard deviations of log r
    # (A^2 = 0.02 k); tolerance 5 % (the sample std of 4000 Gaussians is within 3.4 % at 3 sigma)
    rng = np.random.default_rng(2)
    k, n = 100, 4000
    payload = rng.normal(size=(n, 2 * k - 1)) * np.exp(0.3 * rng.normal(size=(n, 1)))
    stats = header_stats(payload, k)
    x = encode_with_header(tf.constant(payload, tf.float32), k, stats).numpy()
    no = 0.1
    noise = (rng.normal(size=x.shape) + 1j * rng.normal(size=x.shape)) * np.sqrt(no / 2)
    y = tf.constant((x + noise).astype(np.complex64))
    ell = (0.5 * np.log((payload ** 2).sum(1) / k) - stats[0]) / stats[1]
    ell_hat = (np.concatenate([np.real(y.numpy()), np.imag(y.numpy())], 1)[:, -1]) / np.sqrt(0.02 * k)
    assert np.std(ell_hat - ell) == pytest.approx(np.sqrt(no / 2) / np.sqrt(0.02 * k), rel=0.05)


def _images(n, seed=0):
    """Smooth random 'images' with a strong principal structure (fast, no data set)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(60, 16 * 16)) * np.exp(-np.arange(60) / 12)[:, None]
    x = 0.5 + 0.05 * (rng.normal(size=(n, 60)) @ base) + 0.01 * rng.normal(size=(n, 16 * 16))
    return np.clip(x, 0, 1).reshape(n, 16, 16, 1).astype(np.float32)


@pytest.mark.parametrize("adaptive", [False, True])
def test_an_initialised_model_is_the_linear_code_with_the_gain_header(adaptive):
    # 2000 test images of 256 pixels at 10 dB, 100 channel uses: the model at initialisation (unclipped)
    # against linksim.schemes.LinearCode with the gain header, an independent implementation (numpy fit,
    # its own encoder and receiver), each with its own seeded noise draw; tolerance 0.1 dB in MSE
    # (the two noise draws move a 512,000-pixel MSE by far less)
    import sionna.phy

    from linksim.schemes import LinearCode

    x_tr, x_te = _images(4000, 0), _images(2000, 1)
    model = PCADeepJSCC((16, 16, 1), 100, filters=(4, 4, 4, 4), kernel_size=3, snr_adaptive=adaptive)
    model.initialize(x_tr, 10.0)
    sionna.phy.config.seed = 3
    mse = np.mean((model(tf.constant(x_te), tf.constant(10.0), training=True).numpy() - x_te) ** 2)
    code = LinearCode(gain="header").fit(x_tr, 100)
    x = code.encode(x_te, snr_db=10.0).numpy()
    rng = np.random.default_rng(0)
    y = x + (rng.normal(size=x.shape) + 1j * rng.normal(size=x.shape)) * np.sqrt(0.05)
    ref = np.mean((code.decode(tf.constant(y.astype(np.complex64)), 0.1, snr_db=10.0, clip=False).numpy()
                   - x_te) ** 2)
    assert 10 * np.log10(mse / ref) == pytest.approx(0.0, abs=0.1)


def test_the_adaptive_encoder_spends_unit_energy_per_symbol_at_every_snr():
    model = PCADeepJSCC((16, 16, 1), 40, filters=(4, 4, 4, 4), kernel_size=3, snr_adaptive=True)
    model.initialize(_images(500), 10.0)
    x = model.encoder(tf.constant(_images(8, 2)), tf.constant([0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.0, 20.0]))
    np.testing.assert_allclose(tf.reduce_mean(tf.abs(x) ** 2, axis=1).numpy(), 1.0, rtol=1e-5)


def test_the_architecture_refuses_bad_options_naming_them():
    with pytest.raises(ValueError, match="filters"):
        PCADeepJSCCArchitecture(filters=(8, 8))
    with pytest.raises(ValueError, match="snr_adaptive"):
        PCADeepJSCCArchitecture(snr_adaptive="yes")
    with pytest.raises(ValueError, match="allowed"):
        PCADeepJSCCScheme(width=3)


def test_the_adaptive_preset_trains_over_0_to_20_db_with_the_log_mse_loss():
    s = PCADeepJSCCScheme(snr_adaptive=True)
    cfg = s.get_config()
    assert cfg["snr_train_db"] == [0, 20]
    assert cfg["stages"][0]["losses"][0]["type"] == "log_mse"
    assert s.architecture.encoder_uses_snr
    assert PCADeepJSCCScheme(snr_train_db=5).get_config()["snr_train_db"] == 5


@pytest.mark.parametrize("relay", [None, "df", "af"])
def test_the_adaptive_scheme_trains_stores_reloads_and_sends_with_the_snr_at_its_encoder(tmp_path, relay):
    # a tiny model, 2 steps: what is checked is the wiring (initialise from the training images, the
    # encoder told the SNR per point, a DF relay re-encoding, the stored model found again)
    from linksim.channels import AWGNChannel
    from linksim.channels.relay import MultiHopChannel
    from linksim.schemes import SchemeContext
    from linksim.store import ModelStore

    x_tr, x_te = _images(300, 0), _images(16, 1)
    channel = AWGNChannel() if relay is None else MultiHopChannel(hops=2, relay=relay)

    def context():
        return SchemeContext(image_shape=(16, 16, 1), channel_uses=100, train_images=x_tr, channel=channel, seed=0,
                             dataset_spec={"name": "synthetic", "params": {}, "train_size": 300},
                             store=ModelStore([tmp_path]), progress=False)

    opts = dict(snr_adaptive=True, filters=[4, 4, 4, 4], kernel_size=3, epochs=1, steps_per_epoch=2, label="t")
    s = PCADeepJSCCScheme(**opts)
    s.prepare(context())
    assert float(tf.reduce_max(tf.abs(s.model.code.mean))) > 0.1          # initialised from the images
    state = s.encode(x_te)
    np.testing.assert_array_equal(state.numpy(), x_te)                     # the encoder runs per SNR point
    mse = {snr: float(np.mean((s.evaluate(state, snr).images - x_te) ** 2)) for snr in (0.0, 20.0)}
    assert mse[20.0] < 0.8 * mse[0.0], mse
    again = PCADeepJSCCScheme(**opts)
    again.prepare(SchemeContext(**{**context().__dict__, "train_missing": False}))
    assert again.entry.path == s.entry.path


def test_training_through_a_relay_chain_over_an_snr_range_is_refused_naming_the_option():
    from linksim.channels.relay import MultiHopChannel
    from linksim.schemes import SchemeContext

    s = PCADeepJSCCScheme(snr_adaptive=True, train_channel="scenario", filters=[4, 4, 4, 4])
    ctx = SchemeContext(image_shape=(16, 16, 1), channel_uses=100, train_images=_images(50),
                        channel=MultiHopChannel(hops=2, relay="af"))
    with pytest.raises(ValueError, match="snr_train_db"):
        s.build_model(ctx)


def test_spreading_changes_nothing_over_awgn_and_saves_the_shipped_adaptive_model_from_qf_clipping():
    # 200 embedded test images, one seeded noise draw each. Over AWGN the rotation only changes the noise
    # realisation: the mean PSNR moves by less than 0.1 dB (its standard error is about 0.02 dB). Over two
    # 3-bit QF hops at 20 dB the unspread strong components are clipped: spreading gains more than 10 dB
    # (measured 16.2 against 34.6 dB on 500 images, docs/multihop.md).
    from linksim.channels import AWGNChannel
    from linksim.channels.relay import MultiHopChannel
    from linksim.data import get_dataset
    from linksim.data.base import to_float
    from linksim.metrics import psnr
    from linksim.schemes import SchemeContext
    from linksim.store import SHIPPED_DIR, ModelStore

    ds = get_dataset("embedded")
    x_tr, x_te = to_float(ds.load("train", None, seed=1234)[0]), to_float(ds.load("test", 200, seed=1234)[0])
    out = {}
    for name, channel in (("awgn", AWGNChannel()), ("qf", MultiHopChannel(hops=2, relay="qf",
                                                                          relay_params={"bits": 3}))):
        for spread in (False, True):
            s = PCADeepJSCCScheme(snr_adaptive=True, epochs=30, spread=spread)
            s.prepare(SchemeContext(image_shape=(28, 28, 1), channel_uses=486, train_images=x_tr, channel=channel,
                                    seed=1234, dataset_spec={"name": "embedded", "params": {}, "train_size": None},
                                    store=ModelStore([SHIPPED_DIR]), train_missing=False))
            tf.random.set_seed(4)
            out[name, spread] = float(psnr(x_te, s.evaluate(s.encode(x_te), 20.0).images).mean())
    assert abs(out["awgn", True] - out["awgn", False]) < 0.1, out
    assert out["qf", True] > out["qf", False] + 10.0, out


def test_spreading_a_model_trained_through_the_chain_is_refused():
    with pytest.raises(ValueError, match="spread"):
        PCADeepJSCCScheme(train_channel="scenario", spread=True)
    with pytest.raises(ValueError, match="spread must be true or false"):
        PCADeepJSCCScheme(spread="yes")
