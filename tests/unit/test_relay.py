"""Multi-hop relay chains: amplify-, quantise- and decode-and-forward relays.

Statistical checks state their sample size and tolerance in the test body.  The
SNR of a measurement over N complex symbols is an average of N error powers, whose
relative standard deviation is about 1 / sqrt(N) (0.01 dB at N = 200,000), so a
0.1 dB tolerance is about ten standard deviations.
"""

import math

import keras
import numpy as np
import pytest
import sionna
import tensorflow as tf

from linksim.channels.relay import (
    AmplifyAndForwardRelay,
    DecodeAndForwardRelay,
    MultiHopChannel,
    QuantizeAndForwardRelay,
    af_effective_snr,
    gaussian_loading_factor,
    hop_snrs,
    make_relay,
)
from linksim.registry import CHANNELS

N = 200_000  # complex symbols per statistical check


@pytest.fixture(autouse=True)
def _seed():
    sionna.phy.config.seed = 1234


def _qpsk(n=N, seed=0):
    """Unit-energy QPSK symbols [1, n] and their bits [1, 2n]."""
    bits = np.random.default_rng(seed).integers(0, 2, (1, 2 * n))
    s = (1.0 - 2.0 * bits) / math.sqrt(2.0)
    return tf.constant(s[:, :n] + 1j * s[:, n:], tf.complex64), bits


def _gaussian(n=N, seed=0):
    """Unit-energy complex Gaussian symbols [1, n] (what a JSCC encoder emits, roughly)."""
    rng = np.random.default_rng(seed)
    return tf.constant((rng.standard_normal((1, n)) + 1j * rng.standard_normal((1, n))) / math.sqrt(2.0),
                       tf.complex64)


def _db(v):
    return 10.0 * math.log10(v)


def _snr_db_known_gain(x, y, gain):
    """Signal power / error power after dividing the received symbols by the known gain."""
    x, y = np.asarray(x).ravel(), np.asarray(y).ravel() / float(gain)
    return _db(np.mean(np.abs(x) ** 2) / np.mean(np.abs(y - x) ** 2))


def _snr_db_least_squares(x, y):
    """SNR of y = g x + e with the gain g fitted by least squares (no gain knowledge needed)."""
    x, y = np.asarray(x, np.complex128).ravel(), np.asarray(y, np.complex128).ravel()
    g = np.vdot(x, y) / np.vdot(x, x)
    return _db(abs(g) ** 2 * np.mean(np.abs(x) ** 2) / np.mean(np.abs(y - g * x) ** 2))


def _qpsk_hard_decision(y, no):
    """A DF regeneration for QPSK: hard decisions re-mapped to unit-energy QPSK."""
    s = 1.0 / math.sqrt(2.0)
    return tf.complex(tf.where(tf.math.real(y) >= 0, s, -s), tf.where(tf.math.imag(y) >= 0, s, -s))


def _qpsk_bits(y):
    y = np.asarray(y)
    return np.concatenate([(y.real < 0), (y.imag < 0)], axis=-1).astype(int)


# ------------------------------------------------------------------ theory
def test_af_effective_snr_follows_the_product_rule():
    # 1 + 1/snr_eff = prod (1 + 1/snr_i): two 10 dB hops give 1 / (1.1^2 - 1) = 1 / 0.21
    assert af_effective_snr([10.0, 10.0]) == pytest.approx(1 / 0.21)
    assert af_effective_snr([7.0]) == pytest.approx(7.0)
    assert af_effective_snr([4.0, np.inf]) == pytest.approx(4.0)       # a noiseless hop changes nothing
    assert af_effective_snr([1.0, 1.0, 1.0, 1.0]) == pytest.approx(1 / 15)  # 0 dB x 4: 2^4 - 1
    both = af_effective_snr(np.array([[10.0, 10.0], [100.0, 1.0]]))
    assert both.shape == (2,) and both[1] == pytest.approx(1 / (1.01 * 2 - 1))
    with pytest.raises(ValueError):
        af_effective_snr([10.0, 0.0])


# ------------------------------------------------------------------ amplify-and-forward
@pytest.mark.parametrize("hops", [1, 2, 3, 4])
@pytest.mark.parametrize("snr_db", [0.0, 10.0])
def test_af_chain_reaches_the_end_to_end_snr_af_effective_snr_predicts(hops, snr_db):
    # N = 200,000 QPSK symbols, tolerance 0.1 dB (about 10 standard deviations)
    x, _ = _qpsk()
    chain = MultiHopChannel(hops=hops, relay="af", compensate_gain=False)
    out = chain(x, snr_db)
    measured = _snr_db_known_gain(x, out["y"], out["state"]["gain"])
    predicted = _db(af_effective_snr([10 ** (snr_db / 10)] * hops))
    assert measured == pytest.approx(predicted, abs=0.1)
    assert float(out["snr_db"]) == pytest.approx(predicted, abs=1e-4)


def test_af_chain_with_per_hop_snrs_outputs_x_plus_noise_of_the_effective_variance():
    # N = 200,000 symbols; the compensated output's error power within 2 % (10 std) of effective_no
    x, _ = _qpsk()
    snrs = [5.0, 15.0, 10.0]
    chain = MultiHopChannel(hops=3, relay="af")
    out = chain(x, snrs)
    y, no_eff = out["y"], float(out["no"])
    assert no_eff == pytest.approx(1 / af_effective_snr([10 ** (s / 10) for s in snrs]), rel=1e-5)
    assert np.mean(np.abs(np.asarray(y) - np.asarray(x)) ** 2) == pytest.approx(no_eff, rel=0.02)


def test_af_measured_gain_sends_unit_energy_blocks_and_matches_the_fixed_gain_snr():
    # 4 blocks of 50,000 symbols (N = 200,000); tolerance 0.1 dB
    x, _ = _qpsk()
    x = tf.reshape(x, [4, N // 4])
    relay = AmplifyAndForwardRelay(gain="measured")
    out = relay(x * 3.0)
    np.testing.assert_allclose(np.mean(np.abs(np.asarray(out)) ** 2, axis=-1), 1.0, rtol=1e-4)
    chain = MultiHopChannel(hops=3, relay="af", relay_params={"gain": "measured"})
    measured = _snr_db_least_squares(x, chain(x, 5.0)["y"])
    assert measured == pytest.approx(_db(af_effective_snr([10 ** 0.5] * 3)), abs=0.1)


def test_af_fixed_gain_divides_by_the_expected_energy():
    y = tf.constant([[2.0 + 0j, 0.0 + 1j]], tf.complex64)
    out = AmplifyAndForwardRelay()(y, 0.25)
    np.testing.assert_allclose(np.asarray(out), np.asarray(y) / math.sqrt(1.25), rtol=1e-6)


# ------------------------------------------------------------------ quantise-and-forward
def test_qf_with_12_bits_is_within_0_1_db_of_af():
    # Gaussian symbols, 2 hops at 20 dB, N = 200,000; tolerance 0.1 dB
    x = _gaussian()
    chain = MultiHopChannel(hops=2, relay="qf", relay_params={"bits": 12})
    measured = _snr_db_least_squares(x, chain(x, 20.0)["y"])
    assert measured == pytest.approx(_db(af_effective_snr([100.0, 100.0])), abs=0.1)


def test_qf_with_1_bit_is_more_than_1_db_worse_than_af_at_20_db_per_hop():
    # Gaussian symbols (QPSK would survive a sign quantiser almost intact), N = 200,000.
    # Expected about 2 dB against AF's 17 dB, so the 1 dB margin is far from the noise.
    x = _gaussian()
    chain = MultiHopChannel(hops=2, relay="qf", relay_params={"bits": 1})
    measured = _snr_db_least_squares(x, chain(x, 20.0)["y"])
    assert measured < _db(af_effective_snr([100.0, 100.0])) - 1.0


def test_qf_effective_no_approximation_holds_for_a_fine_quantiser():
    # 8 bits, 2 hops at 10 dB, N = 200,000 Gaussian symbols; tolerance 0.1 dB
    x = _gaussian()
    chain = MultiHopChannel(hops=2, relay="qf", relay_params={"bits": 8})
    out = chain(x, 10.0)
    assert float(out["snr_db"]) < _db(af_effective_snr([10.0, 10.0]))  # quantisation costs
    assert _snr_db_least_squares(x, out["y"]) == pytest.approx(float(out["snr_db"]), abs=0.1)


def test_qf_output_uses_at_most_2_to_the_bits_levels_per_dimension_and_unit_energy():
    x = _gaussian(10_000)
    relay = QuantizeAndForwardRelay(bits=3)
    out = np.asarray(relay(x, 0.1))
    assert len(np.unique(out.real)) <= 8 and len(np.unique(out.imag)) <= 8
    assert len(np.unique(out.real)) >= 6    # a 3-bit quantiser of a Gaussian uses (nearly) all its levels
    assert np.mean(np.abs(out) ** 2) == pytest.approx(1.0, rel=1e-4)
    # the default clip is kappa_b standard deviations of one real dimension of signal + noise
    assert float(relay.clip_amplitude(0.1)) == pytest.approx(gaussian_loading_factor(3) * math.sqrt(1.1 / 2))


def test_qf_mid_rise_levels_sit_at_odd_multiples_of_half_a_step():
    relay = QuantizeAndForwardRelay(bits=2, clip=2.0, straight_through=False)
    v = tf.constant([-5.0, -1.5, -0.2, 0.2, 0.9, 1.2, 7.0])
    np.testing.assert_allclose(np.asarray(relay.quantize_real(v, 2.0)), [-1.5, -1.5, -0.5, 0.5, 0.5, 1.5, 1.5])


def test_qf_straight_through_gives_a_nonzero_gradient_and_without_it_none_flows():
    a = tf.Variable(tf.random.normal([2, 64]))
    b = tf.Variable(tf.random.normal([2, 64]))
    w = tf.random.normal([2, 64])
    for straight_through, expect_gradient in [(True, True), (False, False)]:
        relay = QuantizeAndForwardRelay(bits=2, straight_through=straight_through)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(w * tf.math.real(relay(tf.complex(a, b), 0.1)))
        grad = tape.gradient(loss, a)
        if expect_gradient:
            assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0
        else:
            assert grad is None


def test_qf_chain_lets_gradients_reach_the_transmitted_symbols():
    a = tf.Variable(tf.random.normal([2, 64]) / math.sqrt(2))
    chain = MultiHopChannel(hops=3, relay="qf", relay_params={"bits": 4})
    with tf.GradientTape() as tape:
        y = chain(tf.complex(a, tf.zeros_like(a)), 10.0)["y"]
        loss = tf.reduce_sum(tf.math.real(y) ** 2)
    grad = tape.gradient(loss, a)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0


# ------------------------------------------------------------------ decode-and-forward
def test_df_chain_at_high_snr_delivers_qpsk_error_free():
    # 3 hops at 20 dB: per-hop QPSK bit error probability Q(10) ~ 1e-23; 400,000 bits
    x, bits = _qpsk()
    chain = MultiHopChannel(hops=3, relay="df").bind(regenerate=_qpsk_hard_decision)
    y = chain(x, 20.0)["y"]
    assert np.array_equal(_qpsk_bits(y), bits)


def test_df_chain_passes_the_errors_of_one_bad_hop_to_the_destination():
    # hop 2 at 0 dB: bit error probability Q(1) = 0.159 there, ~0 on the others; 400,000 bits,
    # std of the measured rate 6e-4, so 0.159 +- 0.01 is a 15-sigma band
    x, bits = _qpsk()
    chain = MultiHopChannel(hops=3, relay="df").bind(regenerate=_qpsk_hard_decision)
    y = chain(x, [20.0, 0.0, 20.0])["y"]
    ber = np.mean(_qpsk_bits(y) != bits)
    assert ber == pytest.approx(0.5 * math.erfc(1 / math.sqrt(2)), abs=0.01)


def test_df_relay_receives_unit_gain_symbols_and_its_segment_noise_variance():
    # N = 200,000: fitted gain within 1 % of 1, error power within 2 % of the segment's no
    x, _ = _qpsk()
    seen = {}

    def regenerate(y, no):
        seen["y"], seen["no"] = y, no
        return _qpsk_hard_decision(y, no)

    snrs = [10.0, 20.0, 15.0]
    chain = MultiHopChannel(hops=3, relay=["af", "df"]).bind(regenerate=regenerate)
    out = chain(x, snrs)
    n1, n2, n3 = (10 ** (-s / 10) for s in snrs)
    assert float(seen["no"]) == pytest.approx((1 + n1) * (1 + n2) - 1, rel=1e-5)
    y, xs = np.asarray(seen["y"]).ravel(), np.asarray(x).ravel()
    assert abs(np.vdot(xs, y) / np.vdot(xs, xs)) == pytest.approx(1.0, abs=0.01)
    assert np.mean(np.abs(y - xs) ** 2) == pytest.approx(float(seen["no"]), rel=0.02)
    # the destination's demapper sees only the last hop after a DF relay
    assert float(out["no"]) == pytest.approx(n3, rel=1e-5)
    assert float(out["state"]["gain"]) == 1.0
    assert [float(v) for v in out["state"]["segment_no"]] == pytest.approx([float(seen["no"]), n3], rel=1e-5)


def test_df_relay_uses_a_bound_regenerate_and_checks_its_shape():
    relay = DecodeAndForwardRelay(regenerate=_qpsk_hard_decision)
    x, _ = _qpsk(8)
    assert relay(x, 0.1).shape == x.shape
    relay.regenerate = lambda y, no: y[:, :4]
    with pytest.raises(ValueError, match="shape"):
        relay(x, 0.1)


def test_df_chain_called_without_a_bound_regenerate_raises_a_clear_value_error():
    x, _ = _qpsk(8)
    with pytest.raises(ValueError, match="bind"):
        MultiHopChannel(hops=3, relay=["af", "df"])(x, 10.0)


# ------------------------------------------------------------------ compiled use and serialisation
def test_chain_compiles_under_xla_like_the_digital_link():
    chain = MultiHopChannel(hops=2, relay="qf", relay_params={"bits": 6})
    run = tf.function(lambda x, s: (lambda o: (o["y"], o["no"]))(chain(x, s)), jit_compile=True)
    x, _ = _qpsk(1000)
    y, no = run(x, tf.constant(10.0))
    assert y.shape == x.shape and y.dtype == tf.complex64 and float(no) > 0


def test_per_example_snrs_of_shape_hops_by_batch_are_accepted():
    x, _ = _qpsk(1000)
    x = tf.reshape(x, [4, 250])
    snr = tf.constant([[0.0, 10.0, 20.0, 30.0]] * 2)   # [hops, batch]
    chain = MultiHopChannel(hops=2)
    out = chain(x, snr)
    assert out["y"].shape == x.shape
    assert out["no"].shape == (4,) and out["snr_db"].shape == (4,)


@pytest.mark.parametrize("layer", [
    AmplifyAndForwardRelay(gain="measured"),
    QuantizeAndForwardRelay(bits=5, clip=2.5, straight_through=False),
    QuantizeAndForwardRelay(bits=7),
    DecodeAndForwardRelay(regenerate=_qpsk_hard_decision),
    MultiHopChannel(hops=4, relay=["af", "qf", "df"], relay_params={"qf": {"bits": 4}}, compensate_gain=False),
])
def test_get_config_round_trips_through_keras_serialisation(layer):
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


def test_restored_multihop_chain_rebuilds_its_relays():
    chain = MultiHopChannel(hops=4, relay=["af", "qf", "df"], relay_params={"qf": {"bits": 4}})
    restored = MultiHopChannel.from_config(chain.get_config())
    assert [type(r).__name__ for r in restored.relays] == [
        "AmplifyAndForwardRelay", "QuantizeAndForwardRelay", "DecodeAndForwardRelay"]
    assert restored.relays[1].bits == 4
    assert restored.relays[2].regenerate is None      # the scheme binds the callable again


def test_multihop_is_registered_as_a_channel():
    chain = CHANNELS.create("multihop", hops=3, relay="qf", relay_params={"bits": 4})
    assert isinstance(chain, MultiHopChannel) and chain.hops == 3


def test_one_hop_chain_is_the_awgn_channel():
    chain = MultiHopChannel(hops=1, relay="df")     # no relays, so no regenerate needed
    x, _ = _qpsk(8)
    out = chain(x, 10.0)
    assert out["y"].shape == x.shape
    assert float(out["no"]) == pytest.approx(0.1)


# ------------------------------------------------------------------ scenario forms and errors
def test_hop_snrs_expands_a_scalar_and_keeps_a_list_of_length_hops():
    assert hop_snrs(10, 3) == [10.0, 10.0, 10.0]
    assert hop_snrs([1, 2.5], 2) == [1.0, 2.5]
    assert hop_snrs((1.0, 2.0, 3.0), 3) == [1.0, 2.0, 3.0]
    assert hop_snrs(np.array([4.0, 5.0]), 2) == [4.0, 5.0]
    per_hop = hop_snrs(tf.constant([4.0, 5.0]), 2)
    assert [float(s) for s in per_hop] == [4.0, 5.0]
    assert [float(s) for s in hop_snrs(tf.constant(7.0), 2)] == [7.0, 7.0]


@pytest.mark.parametrize("bad", [[10.0, 20.0], [10.0] * 4, "10", [10.0, "a", 3.0], None, tf.constant([1.0, 2.0])])
def test_hop_snrs_rejects_other_forms_and_lists_the_allowed_ones(bad):
    with pytest.raises(ValueError, match="scalar.*length hops"):
        hop_snrs(bad, 3)


def test_chain_called_with_a_wrong_number_of_snrs_raises_value_error():
    x, _ = _qpsk(8)
    with pytest.raises(ValueError, match="3 hop"):
        MultiHopChannel(hops=3)(x, [10.0, 20.0])


def test_unknown_relay_name_lists_af_df_qf():
    with pytest.raises(ValueError, match="af, df, qf"):
        MultiHopChannel(hops=2, relay="amplify")
    with pytest.raises(ValueError, match="af, df, qf"):
        MultiHopChannel(hops=3, relay=["af", "xf"])
    with pytest.raises(ValueError, match="af, df, qf"):
        make_relay("cf")


def test_relay_list_of_the_wrong_length_raises_value_error():
    with pytest.raises(ValueError, match="hops - 1 = 2"):
        MultiHopChannel(hops=3, relay=["af"])


def test_unknown_relay_option_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: gain"):
        MultiHopChannel(hops=3, relay=["af", "qf"], relay_params={"bits": 4})
    with pytest.raises(ValueError, match="allowed: bits, clip, straight_through, constellation"):
        make_relay("qf", bits=4, levels=3)


@pytest.mark.parametrize("bits", [0, 17, 2.5, True, "8"])
def test_qf_bits_outside_1_to_16_raise_value_error(bits):
    with pytest.raises(ValueError, match="1..16"):
        QuantizeAndForwardRelay(bits=bits)


def test_bad_options_raise_value_error_with_the_allowed_values():
    with pytest.raises(ValueError, match="fixed, measured"):
        AmplifyAndForwardRelay(gain="auto")
    with pytest.raises(ValueError, match="positive"):
        QuantizeAndForwardRelay(bits=4, clip=-1.0)
    with pytest.raises(ValueError, match=">= 1"):
        MultiHopChannel(hops=0)
    with pytest.raises(TypeError):
        DecodeAndForwardRelay(regenerate="decode")
