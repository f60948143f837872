"""The channel contract (linksim.channels.base): named outputs, bind once, describe, variable length.

Statistical checks state their sample size and tolerance in the test body.
"""

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
import sionna
import tensorflow as tf

from linksim.channels import AWGNChannel, Channel, MultiHopChannel
from linksim.channels.relay import AmplifyAndForwardRelay, QuantizeAndForwardRelay
from linksim.registry import CHANNELS
from linksim.schemes.deepjscc_layers import PowerNormalization

KEYS = {"y", "no", "snr_db", "state"}


@pytest.fixture(autouse=True)
def _seed():
    sionna.phy.config.seed = 99


def _gaussian(batch, n, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant((rng.standard_normal((batch, n)) + 1j * rng.standard_normal((batch, n))) / math.sqrt(2),
                       tf.complex64)


def _qam16(batch, n, seed=0):
    a = np.array([-3, -1, 1, 3]) / math.sqrt(10)
    rng = np.random.default_rng(seed)
    return tf.constant(a[rng.integers(0, 4, (batch, n))] + 1j * a[rng.integers(0, 4, (batch, n))], tf.complex64)


def _qam16_points():
    a = np.array([-3, -1, 1, 3]) / math.sqrt(10)
    return (a[:, None] + 1j * a[None, :]).ravel()


# ------------------------------------------------------------------ named outputs
def test_awgn_call_returns_y_no_snr_db_and_an_empty_state():
    out = AWGNChannel()(_gaussian(2, 8), 10.0)
    assert set(out) == KEYS and out["state"] == {}
    assert out["y"].shape == (2, 8) and out["y"].dtype == tf.complex64
    assert float(out["no"]) == pytest.approx(0.1) and float(out["snr_db"]) == 10.0


def test_awgn_noise_power_matches_the_no_it_reports():
    # N = 200,000 symbols: measured E|y - x|^2 within 2 % (about 9 standard deviations) of no
    x = _gaussian(4, 50_000)
    out = AWGNChannel()(x, 7.0)
    assert np.mean(np.abs(out["y"].numpy() - x.numpy()) ** 2) == pytest.approx(float(out["no"]), rel=0.02)


@pytest.mark.parametrize("relay", ["af", "qf", "df"])
def test_multihop_call_returns_the_contract_keys_and_per_hop_state(relay):
    ch = MultiHopChannel(hops=3, relay=relay, relay_params={"bits": 6} if relay == "qf" else None)
    ch = ch.bind(regenerate=lambda y, no: y)
    out = ch(_gaussian(2, 16), [10.0, 20.0, 30.0])
    assert set(out) == KEYS
    assert [float(v) for v in out["state"]["hop_no"]] == pytest.approx([0.1, 0.01, 0.001])
    assert float(out["snr_db"]) == pytest.approx(-10 * math.log10(float(out["no"])), abs=1e-4)
    assert float(out["no"]) == pytest.approx(float(out["state"]["segment_no"][-1]))


# ------------------------------------------------------------------ bind, differentiable, describe
def test_bind_returns_self_when_nothing_changes_and_a_bound_copy_otherwise():
    awgn = AWGNChannel()
    assert awgn.bind(regenerate=lambda y, no: y, constellation=_qam16_points()) is awgn
    af = MultiHopChannel(hops=3, relay="af")
    assert af.bind(regenerate=lambda y, no: y) is af            # no DF relay to bind
    df = MultiHopChannel(hops=2, relay="df")
    bound = df.bind(regenerate=lambda y, no: y)
    assert bound is not df and df.relays[0].regenerate is None and bound.relays[0].regenerate is not None
    x = _gaussian(1, 8)
    assert bound(x, 20.0)["y"].shape == x.shape
    with pytest.raises(ValueError, match="bind"):
        df(x, 20.0)


def test_a_channel_with_a_df_relay_declares_itself_not_differentiable():
    assert AWGNChannel().differentiable
    assert MultiHopChannel(hops=3, relay=["af", "qf"], relay_params={"qf": {"bits": 4}}).differentiable
    assert not MultiHopChannel(hops=2, relay="df").differentiable
    assert not MultiHopChannel(hops=2, relay="qf", relay_params={"bits": 4, "straight_through": False}).differentiable


def test_a_jscc_model_refuses_a_channel_that_is_not_differentiable():
    from linksim.schemes.deepjscc import DeepJSCC

    with pytest.raises(ValueError, match="differentiable"):
        DeepJSCC((8, 8, 1), 16, channel=MultiHopChannel(hops=2, relay="df"))


def test_describe_gives_json_able_facts_for_run_metadata():
    assert AWGNChannel().describe() == {"type": "awgn", "hops": 1, "relays": [], "hop_types": ["awgn"]}
    d = MultiHopChannel(hops=3, relay=["af", "qf"], relay_params={"qf": {"bits": 4}}).describe()
    assert d["type"] == "multihop" and d["hops"] == 3 and d["relays"] == ["af", "qf"]
    assert d["hop_types"] == ["awgn"] * 3
    json.dumps(d)


# ------------------------------------------------------------------ hops from the channel registry
@CHANNELS.register("test_noiseless_hop")
@keras.saving.register_keras_serializable(package="linksim_tests")
class _NoiselessHop(Channel):
    """A one-file channel (what a fading hop would be): passes x through and reports its own no."""

    def __init__(self, no: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.no = float(no)

    def call(self, x, snr_db, num_symbols=None):
        no = tf.constant(self.no, tf.float32)
        return {"y": x, "no": no, "snr_db": -10.0 * tf.math.log(no) / tf.math.log(10.0), "state": {}}

    def get_config(self):
        return {**super().get_config(), "no": self.no}


def test_multihop_builds_every_hop_from_the_channel_registry():
    x = _gaussian(1, 64)
    ch = MultiHopChannel(hops=2, relay="af", hop={"type": "test_noiseless_hop", "no": 0.5})
    out = ch(x, 10.0)            # the hops ignore snr_db; the chain uses the no they report
    assert [float(v) for v in out["state"]["hop_no"]] == pytest.approx([0.5, 0.5])
    assert float(out["no"]) == pytest.approx(1.5 * 1.5 - 1)
    np.testing.assert_allclose(out["y"].numpy(), x.numpy(), rtol=1e-5, atol=1e-6)  # gain compensated
    mixed = MultiHopChannel(hops=2, relay="af", hop=[{"type": "awgn"}, {"type": "test_noiseless_hop"}])
    assert mixed.describe()["hop_types"] == ["awgn", "test_noiseless_hop"]
    assert float(mixed(x, 10.0)["state"]["hop_no"][0]) == pytest.approx(0.1)


def test_unknown_hop_type_lists_the_registered_channels():
    with pytest.raises(ValueError, match="awgn"):
        MultiHopChannel(hops=2, hop={"type": "rayleigh_typo"})
    with pytest.raises(ValueError, match="one per hop"):
        MultiHopChannel(hops=3, hop=[{"type": "awgn"}])


# ------------------------------------------------------------------ variable-length transmissions
def _used(x, n):
    return np.arange(x.shape[-1])[None, :] < np.asarray(n)[:, None]


def test_power_normalization_normalises_over_the_used_symbols_and_zeroes_the_rest():
    z = tf.random.stateless_normal([3, 40], seed=[1, 2])
    n = np.array([20, 7, 1], np.int32)
    x = PowerNormalization(20)(z, num_symbols=tf.constant(n)).numpy()
    used = _used(x, n)
    assert np.all(x[~used] == 0)
    for i in range(3):
        assert np.mean(np.abs(x[i, : n[i]]) ** 2) == pytest.approx(1.0, rel=1e-5)
    # without num_symbols nothing changes: every image uses all k symbols
    full = PowerNormalization(20)(z).numpy()
    np.testing.assert_array_equal(PowerNormalization(20)(z, num_symbols=tf.constant([20, 20, 20])).numpy()[0],
                                  full[0])


@pytest.mark.parametrize("relay,params", [("af", None), ("af", {"gain": "measured"}), ("qf", {"bits": 4}),
                                          ("df", None)])
def test_unused_symbols_stay_zero_through_every_hop_and_relay(relay, params):
    n = tf.constant([100, 37, 5], tf.int32)
    x = PowerNormalization(100)(tf.random.stateless_normal([3, 200], seed=[3, 4]), num_symbols=n)
    seen = []

    def regen(y, no):
        seen.append(y)
        return y

    ch = MultiHopChannel(hops=3, relay=relay, relay_params=params).bind(regenerate=regen)
    out = ch(x, 5.0, num_symbols=n)
    used = _used(x, n.numpy())
    assert np.all(out["y"].numpy()[~used] == 0) and np.all(np.abs(out["y"].numpy()[used]) > 0)
    for y in seen:
        assert np.all(y.numpy()[~used] == 0)


def test_af_measured_and_qf_normalise_over_the_used_symbols_only():
    # three blocks of 2,000 symbols using 2,000 / 700 / 50 of them; energy over the used ones is 1
    n = np.array([2000, 700, 50], np.int32)
    x = _gaussian(3, 2000) * tf.cast(_used(np.zeros((3, 2000)), n), tf.complex64) * 3.0
    for relay in (AmplifyAndForwardRelay(gain="measured"), QuantizeAndForwardRelay(bits=5)):
        out = relay(x, 0.01, num_symbols=tf.constant(n)).numpy()
        for i in range(3):
            assert np.mean(np.abs(out[i, : n[i]]) ** 2) == pytest.approx(1.0, rel=1e-4)
            assert np.all(out[i, n[i]:] == 0)


def test_separation_counts_the_channel_uses_its_codewords_fill():
    import warnings

    from linksim.schemes.separation import SeparationTransmitter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tx = SeparationTransmitter({"type": "webp"}, {"type": "ldpc_80211n", "n": 1944, "rate": "3/4"},
                                   {"type": "qam", "num_bits_per_symbol": 4}, channel_uses=600)
    out = tx(np.full((2, 28, 28, 1), 0.5, np.float32))
    assert tx.used_channel_uses == 486 == out["symbols"].shape[-1]   # one codeword of 1944 bits, 16-QAM


# ------------------------------------------------------------------ no probing, config round trips
def test_no_module_probes_a_channel_after_its_call():
    root = Path(__file__).resolve().parents[2] / "linksim"
    banned = ("has_df", "effective_snr_db(", ".noise_variance(", "segment_noise_variances", "hasattr(self.channel",
              "RELAY_CLASSES", "RELAY_NAMES")
    for path in root.rglob("*.py"):
        text = path.read_text()
        for b in banned:
            assert b not in text, f"{path.relative_to(root)} uses {b}"


@pytest.mark.parametrize("layer", [
    AWGNChannel(),
    PowerNormalization(12),
    QuantizeAndForwardRelay(bits=3, constellation=[[0.7071, 0.7071], [-0.7071, -0.7071]]),
    QuantizeAndForwardRelay(bits=3, constellation="gaussian"),
    MultiHopChannel(hops=2, relay="qf", relay_params={"bits": 3}, hop={"type": "awgn"}),
    MultiHopChannel(hops=2, relay="af", hop=[{"type": "awgn"}, {"type": "test_noiseless_hop", "no": 0.2}]),
])
def test_get_config_round_trips_through_keras_serialisation(layer):
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()


def test_a_chain_without_hop_keeps_its_old_config_so_stored_model_keys_do_not_change():
    cfg = MultiHopChannel(hops=2, relay="qf", relay_params={"bits": 3}).get_config()
    assert "hop" not in cfg
    assert {k: v for k, v in cfg.items() if k not in ("name", "trainable", "dtype")} == {
        "hops": 2, "relay": "qf", "relay_params": {"bits": 3}, "compensate_gain": True}


def test_the_channels_package_imports_every_module_in_it_so_a_new_channel_is_one_file():
    # a Rayleigh block-fading hop is one new file in linksim/channels/ that registers itself
    # (like _NoiselessHop above); the package imports every module, so nothing else changes
    import sys

    import linksim.channels as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        if path.stem != "__init__":
            assert f"linksim.channels.{path.stem}" in sys.modules


def test_the_chain_state_holds_every_hops_own_state():
    out = MultiHopChannel(hops=2, relay="af", hop=[{"type": "awgn"}, {"type": "test_noiseless_hop"}])(
        _gaussian(1, 8), 10.0)
    assert out["state"]["hop_state"] == [{}, {}]
