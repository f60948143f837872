"""The Rayleigh / Rician fading channel, its CSI options, fading hops in relay chains, and
simulated BER against the closed forms (linksim.phy.theory) and an independent numpy simulation."""

from __future__ import annotations

import numpy as np
import pytest
import sionna.phy
import tensorflow as tf

from linksim.channels import MultiHopChannel, RayleighFadingChannel
from linksim.channels.fading import coherence_symbols
from linksim.phy import theory
from linksim.phy.codes import LDPC5G, Uncoded
from linksim.phy.link import DigitalLink
from linksim.phy.modulation import QAM


def _qpsk(batch, s, seed=0):
    rng = np.random.default_rng(seed)
    pts = (rng.choice([-1.0, 1.0], (batch, s)) + 1j * rng.choice([-1.0, 1.0], (batch, s))) / np.sqrt(2.0)
    return tf.constant(pts.astype(np.complex64))


@pytest.fixture(autouse=True)
def _seed():
    sionna.phy.config.seed = 7
    tf.random.set_seed(7)


# ------------------------------------------------------------------ the coefficients
def test_rayleigh_coefficients_have_unit_mean_power():
    # 200,000 coefficients: the standard error of mean |h|^2 (an Exp(1) variable) is 0.0022; tolerance 0.01
    h = RayleighFadingChannel().coefficients(2000, 100).numpy()
    assert abs(np.mean(np.abs(h) ** 2) - 1.0) < 0.01
    assert abs(np.mean(h)) < 0.01                        # zero mean: no line of sight
    assert abs(np.var(h.real) - 0.5) < 0.01 and abs(np.var(h.imag) - 0.5) < 0.01


def test_rician_coefficients_have_the_line_of_sight_part_of_the_k_factor():
    # K = 4: mean sqrt(4/5) = 0.894, scattered power 1/5; 200,000 draws, tolerance 0.01 (about 10 standard errors)
    h = RayleighFadingChannel(k_factor=4.0).coefficients(2000, 100).numpy()
    assert abs(np.mean(h).real - np.sqrt(0.8)) < 0.01 and abs(np.mean(h).imag) < 0.01
    assert abs(np.var(h) - 0.2) < 0.01
    assert abs(np.mean(np.abs(h) ** 2) - 1.0) < 0.01


@pytest.mark.parametrize("coherence, per_block", [("image", 48), ("symbol", 1), (8, 8)])
def test_one_coefficient_lasts_one_coherence_block(coherence, per_block):
    out = RayleighFadingChannel(coherence=coherence)(_qpsk(4, 48), 10.0)
    h = out["state"]["h"].numpy().reshape(4, 48 // per_block, per_block)
    assert np.all(h == h[:, :, :1])                                   # constant within a block
    if per_block < 48:
        assert np.all(h[:, 1:, 0] != h[:, :-1, 0])                    # a new one every block
    assert out["state"]["coherence"] == per_block


def test_coherence_that_does_not_divide_the_transmission_is_refused_at_call_time():
    with pytest.raises(ValueError, match="coherence 7 does not divide the transmission of 48 symbols"):
        RayleighFadingChannel(coherence=7)(_qpsk(2, 48), 10.0)
    assert coherence_symbols("image", 48) == 48 and coherence_symbols("symbol", 48) == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(csi="ideal"), "csi must be one of perfect, pilots, none"),
    (dict(k_factor=-1.0), "k_factor must be a finite number >= 0"),
    (dict(k_factor=float("nan")), "k_factor must be a finite number >= 0"),
    (dict(coherence=0), "coherence must be image, symbol or a positive integer"),
    (dict(coherence="slow"), "coherence must be image, symbol or a positive integer"),
    (dict(pilots=0, csi="pilots"), "pilots must be a positive integer"),
    (dict(csi="pilots", coherence="symbol"), "a pilot per symbol leaves no channel use for data"),
])
def test_bad_fading_options_are_refused_with_the_allowed_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RayleighFadingChannel(**kwargs)


# ------------------------------------------------------------------ what the receiver is told
def test_perfect_csi_equalises_and_reports_the_per_symbol_noise():
    x = _qpsk(500, 64)
    out = RayleighFadingChannel(coherence="symbol", csi="perfect")(x, 10.0)
    h = out["state"]["h"].numpy()
    no = out["no"].numpy()
    assert out["no"].shape == (500, 64) and out["snr_db"].shape == (500,)
    np.testing.assert_allclose(no, 0.1 / np.abs(h) ** 2, rtol=1e-5)
    # y = x + w / h: the normalised error (y - x) h / sqrt(0.1) is CN(0, 1); 32,000 samples, tolerance 0.03
    e = (out["y"].numpy() - x.numpy()) * h / np.sqrt(0.1)
    assert abs(np.mean(np.abs(e) ** 2) - 1.0) < 0.03
    # the told SNR is the image's effective SNR, mean |h|^2 / no
    np.testing.assert_allclose(out["snr_db"].numpy(), 10 * np.log10(np.mean(np.abs(h) ** 2, axis=1) / 0.1),
                               rtol=1e-4)


def test_one_coefficient_per_image_gives_one_noise_variance_per_image():
    out = RayleighFadingChannel(coherence="image")(_qpsk(6, 32), 20.0)
    h = out["state"]["h"].numpy()[:, 0]
    assert out["no"].shape == (6,)
    np.testing.assert_allclose(out["no"].numpy(), 0.01 / np.abs(h) ** 2, rtol=1e-5)
    np.testing.assert_allclose(out["snr_db"].numpy(), 20 + 10 * np.log10(np.abs(h) ** 2), atol=1e-4)


def test_pilot_estimate_has_the_error_of_the_mean_of_the_pilots():
    # 4 pilots at 10 dB: h_hat - h ~ CN(0, 0.1 / 4); 1,000 x 16 blocks, tolerance 10% of the variance (~7 sigma)
    ch = RayleighFadingChannel(coherence=4, csi="pilots", pilots=4)
    out = ch(_qpsk(1000, 64), 10.0)
    h_hat = out["state"]["h_hat"].numpy()[:, ::4]
    assert "h" not in out["state"]
    y, x = out["y"].numpy(), _qpsk(1000, 64).numpy()
    assert y.shape == x.shape
    assert out["state"]["pilot_symbols"] == 64 and ch.pilot_channel_uses(64) == 64   # 16 blocks x 4
    assert RayleighFadingChannel(csi="pilots", pilots=2).pilot_channel_uses(64) == 2      # one block per image
    assert RayleighFadingChannel(csi="perfect").pilot_channel_uses(64) == 0
    # a shorter transmission (a gated scheme) pays for the blocks it touches, without raising
    assert ch.pilot_channel_uses(30) == 4 * 8 and ch.pilot_channel_uses(0) == 0
    # the estimate's error: regenerate the true h with the same seed (the generator is drawn first)
    sionna.phy.config.seed = 7
    h = ch.coefficients(1000, 16).numpy()
    err = h_hat - h
    assert abs(np.mean(np.abs(err) ** 2) - 0.025) < 0.0025
    np.testing.assert_allclose(out["no"].numpy()[:, ::4], 0.1 * 1.25 / np.abs(h_hat) ** 2, rtol=1e-4)


def test_no_csi_passes_the_raw_symbols_and_the_nominal_noise():
    x = _qpsk(300, 32)
    out = RayleighFadingChannel(coherence="image", csi="none")(x, 10.0)
    assert set(out["state"]) == {"csi", "coherence"} and out["state"]["csi"] == "none"
    assert float(out["no"]) == pytest.approx(0.1) and float(out["snr_db"]) == pytest.approx(10.0)
    y = out["y"].numpy()
    # raw y = h x + w: the received power is E|h|^2 + no = 1.1 (9,600 samples of a heavy-tailed |h|^2
    # over 300 images: tolerance 0.15)
    assert abs(np.mean(np.abs(y) ** 2) - 1.1) < 0.15
    assert np.mean(np.abs(y - x.numpy()) ** 2) > 0.5                 # not equalised


def test_unused_symbols_stay_zero():
    x = _qpsk(3, 16)
    out = RayleighFadingChannel(coherence="symbol")(x, 10.0, num_symbols=tf.constant([16, 8, 4]))
    y = out["y"].numpy()
    assert np.all(y[1, 8:] == 0) and np.all(y[2, 4:] == 0) and np.all(y[0] != 0)


# ------------------------------------------------------------------ fading hops in relay chains
def test_af_chain_over_fading_hops_amplifies_with_the_instantaneous_gain():
    # CSI-assisted AF: the relay equalises its hop and scales by 1 / sqrt(1 + no / |h|^2), so the end-to-end
    # noise obeys 1 + no_eff = (1 + no_1 / |h_1|^2)(1 + no_2 / |h_2|^2) per symbol
    chain = MultiHopChannel(hops=2, relay="af", hop={"type": "rayleigh", "coherence": "symbol"})
    out = chain(_qpsk(200, 64), [10.0, 15.0])
    h1, h2 = (s["h"].numpy() for s in out["state"]["hop_state"])
    want = (1 + 0.1 / np.abs(h1) ** 2) * (1 + 10 ** -1.5 / np.abs(h2) ** 2) - 1
    np.testing.assert_allclose(out["no"].numpy(), want, rtol=1e-4)
    assert out["snr_db"].shape == (200,)


def test_one_coefficient_per_image_keeps_the_chain_noise_per_image():
    chain = MultiHopChannel(hops=3, relay="af", hop={"type": "rayleigh"})
    out = chain(_qpsk(5, 32), 10.0)
    assert out["no"].shape == (5,) and out["snr_db"].shape == (5,)
    assert [n.shape for n in out["state"]["hop_no"]] == [(5,)] * 3


def test_each_hop_of_a_chain_pays_its_pilots():
    chain = MultiHopChannel(hops=2, relay="af", hop=[{"type": "rayleigh", "csi": "pilots", "pilots": 2},
                                                     {"type": "awgn"}])
    assert chain.pilot_channel_uses(64) == 2
    chain = MultiHopChannel(hops=3, relay="af", hop={"type": "rayleigh", "csi": "pilots", "coherence": 16})
    assert chain.pilot_channel_uses(64) == 3 * 4


def test_df_chain_over_fading_hops_regenerates_the_codewords():
    # 2 DF hops of 5G LDPC (512, 384) + QPSK, one coefficient per image, 30 dB: outage of a hop needs
    # |h|^2 below about 0.004 (the code's 6 dB threshold), probability ~0.004; 200 images, at most 6 failures
    link = DigitalLink(LDPC5G(384, 512), QAM(2), channel=MultiHopChannel(hops=2, relay="df",
                                                                         hop={"type": "rayleigh"}))
    bits = tf.cast(tf.random.uniform([200, 1, 360], 0, 2, tf.int32), tf.float32)
    out = link.run(bits, 30.0)
    assert int(np.sum(~out["block_ok"].numpy())) <= 6


# ------------------------------------------------------------------ BER against theory
def _uncoded_ber(m, channel, snr_db, images, symbols=512, method="maxlog"):
    link = DigitalLink(Uncoded(8), QAM(m, method), channel=channel)
    c = symbols * m // 8
    bits = tf.cast(tf.random.uniform([images, c, 8], 0, 2, tf.int32), tf.float32)
    out = link.run(bits, snr_db)
    return float(np.mean(out["bits"].numpy() != bits.numpy())), images * c * 8


@pytest.mark.parametrize("m, snr_db", [(2, 0.0), (2, 6.0), (4, 6.0), (4, 12.0)])
def test_uncoded_qam_ber_over_awgn_matches_the_closed_form(m, snr_db):
    from linksim.channels import AWGNChannel

    # 400 images x 512 symbols (409,600 QPSK / 819,200 16-QAM bits); tolerance 5 binomial standard
    # deviations of the symbol count (bits of one symbol err together), at most 4% relative here
    ber, n = _uncoded_ber(m, AWGNChannel(), snr_db, 400)
    want = float(theory.qam_ber_awgn(snr_db, m))
    sigma = np.sqrt(want / (n / m))
    assert abs(ber - want) < 5 * sigma, (ber, want)


@pytest.mark.parametrize("m, snr_db", [(2, 10.0), (2, 20.0), (4, 10.0), (4, 20.0)])
def test_uncoded_qam_ber_over_rayleigh_with_perfect_csi_matches_the_closed_form(m, snr_db):
    # fast fading (a coefficient per symbol): 400 images x 512 symbols; QPSK against 0.5 (1 - sqrt(gb / (1 + gb))).
    # Tolerance 5 standard deviations of the symbol count, 3-7% relative at these BERs
    ber, n = _uncoded_ber(m, RayleighFadingChannel(coherence="symbol", csi="perfect"), snr_db, 400)
    want = float(theory.qam_ber_rayleigh(snr_db, m))
    if m == 2:
        gb = 10 ** (snr_db / 10) / 2
        assert want == pytest.approx(0.5 * (1 - np.sqrt(gb / (1 + gb))), rel=1e-12)
    sigma = np.sqrt(want / (n / m))
    assert abs(ber - want) < 5 * sigma, (ber, want)


@pytest.mark.parametrize("fading, channel", [("none", "awgn"), ("rayleigh", "rayleigh")])
def test_sixteen_qam_ber_matches_an_independent_numpy_simulation(fading, channel):
    # Sionna's mapper/demapper through linksim's link against linksim.phy.theory.simulate_qam_ber (its own
    # Gray labelling and nearest-point detector, no Sionna); 819,200 bits each at 14 dB; tolerance 6
    # standard deviations of the difference of two estimates of ~200,000 symbols each
    from linksim.channels import AWGNChannel

    ch = AWGNChannel() if channel == "awgn" else RayleighFadingChannel(coherence="symbol")
    ber, n = _uncoded_ber(4, ch, 14.0, 400)
    other = theory.simulate_qam_ber(14.0, 4, n, seed=11, fading=fading)
    sigma = np.sqrt(2 * other / (n / 4))
    assert abs(ber - other) < 6 * sigma, (ber, other)


def test_app_demapping_decisions_are_no_worse_than_the_nearest_point_closed_form():
    # bit-wise MAP (app) decisions over AWGN at 4 dB: within 3% of the nearest-point closed form (819,200 bits)
    from linksim.channels import AWGNChannel

    ber, _ = _uncoded_ber(4, AWGNChannel(), 4.0, 400, method="app")
    want = float(theory.qam_ber_awgn(4.0, 4))
    assert ber < want * 1.03


# ------------------------------------------------------------------ the blind receiver without CSI
def test_separation_without_csi_resolves_the_phase_ambiguity_with_the_code():
    # one coefficient per image at 30 dB, 5G LDPC (512, 384) with its CRC + QPSK: the blind estimate
    # (power and fourth-power phase) plus the code's check decodes every image out of outage.  Outage
    # (|h|^2 below ~0.004) has probability ~0.004: 300 images, at most 6 failures
    link = DigitalLink(LDPC5G(384, 512), QAM(2), channel=RayleighFadingChannel(csi="none"))
    bits = tf.cast(tf.random.uniform([300, 1, 360], 0, 2, tf.int32), tf.float32)
    out = link.run(bits, 30.0)
    ok = out["block_ok"].numpy()[:, 0]
    assert int(np.sum(~ok)) <= 6
    wrong = np.any(out["bits"].numpy() != bits.numpy(), axis=(1, 2))
    assert not np.any(wrong & ok)                      # what passed the check is right


def test_without_a_code_check_the_blind_receiver_cannot_resolve_the_ambiguity():
    # uncoded QPSK without CSI at 30 dB: the rotation is right for about a quarter of the images only
    # (300 images: the fraction of images without errors lies in [0.1, 0.45])
    link = DigitalLink(Uncoded(8), QAM(2), channel=RayleighFadingChannel(csi="none"))
    bits = tf.cast(tf.random.uniform([300, 64, 8], 0, 2, tf.int32), tf.float32)
    out = link.run(bits, 30.0)
    clean = np.mean(np.all(out["bits"].numpy() == bits.numpy(), axis=(1, 2)))
    assert 0.1 <= clean <= 0.45


def test_qf_chains_tuned_to_a_constellation_keep_one_noise_variance_per_image():
    # a constellation-mode QF relay passes on its own noise: the chain's noise stays [batch] (not [batch, batch])
    points = np.array([a + 1j * b for a in (-3, -1, 1, 3) for b in (-3, -1, 1, 3)]) / np.sqrt(10.0)
    for hop in ({"type": "rayleigh"}, {"type": "awgn"}):
        chain = MultiHopChannel(hops=3, relay="qf", relay_params={"bits": 4}, hop=hop).bind(constellation=points)
        out = chain(_qpsk(5, 64), tf.fill([3, 5], 10.0))              # one SNR per hop and image
        assert out["no"].shape == (5,) and out["snr_db"].shape == (5,), hop


def test_the_decoder_needs_the_per_symbol_noise_under_fast_fading():
    # 5G LDPC (1024, 512) + 16-QAM over fast fading with perfect CSI at 10 dB: demapping the equalised symbols
    # with the per-symbol noise no / |h|^2 (what the channel reports) against one nominal no for every symbol.
    # 300 codewords each (measured with this seed: 0 against 299 failures); at most 15 against at least 150
    link = DigitalLink(LDPC5G(512, 1024), QAM(4), channel=RayleighFadingChannel(coherence="symbol"))
    bits = tf.cast(tf.random.uniform([300, 1, 488], 0, 2, tf.int32), tf.float32)
    out = link.channel(link.transmit(bits), 10.0)
    right = link.detect(out["y"], out["no"], 1)["block_ok"].numpy()
    nominal = link.detect(out["y"], tf.fill(tf.shape(out["no"]), 0.1), 1)["block_ok"].numpy()
    assert np.sum(~right) <= 15 and np.sum(~nominal) >= 150, (np.sum(~right), np.sum(~nominal))
