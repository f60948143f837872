"""Schemes over relay chains: DF regeneration for separation and DeepJSCC, the ideal code's
end-to-end SNR, end-to-end training through AF/QF, and the per-hop SNR forms of a scenario."""

import numpy as np
import pytest

from linksim.channels import AWGNChannel, MultiHopChannel
from linksim.run.setup import HopSNR
from linksim.scenario import ScenarioError, validate_scenario_dict
from linksim.schemes.base import SchemeContext
from linksim.schemes.deepjscc import DeepJSCC, DeepJSCCScheme
from linksim.schemes.deepjscc_pca import PCADeepJSCCScheme
from linksim.schemes.separation import SeparationScheme
from linksim.store import SHIPPED_DIR, ModelStore


# Seeding, sample sizes and tolerances of the statistical tests in this file
# -------------------------------------------------------------------------
# Every test starts from the same seeds (the autouse fixture below: numpy, TensorFlow,
# Keras and Sionna's channel noise), so a result does not depend on test order.
# Sample: 40 test images, one (1944, 1458) LDPC codeword each (58,320 information bits per
# point) for separation, 40 images x 486 channel uses for DeepJSCC. The 802.11n code with
# 16-QAM has its capacity limit at Es/N0 8.45 dB and its waterfall at about 9.5-10.5 dB
# (BLER 0.49 at 10.05 dB in test_phy.py). Measured margins (seeds 1, 2, 3):
# - DF at 20 dB per hop: 0 bit errors in 3 x 58,320 bits (20 dB is 10 dB above the waterfall);
# - a DF hop at 6 dB (below the capacity limit, every block fails): BER 0.147-0.148 against
#   the bound 0.01, 40 of 40 images fail at the destination;
# - one hop at 12 dB: 0 failures (0 to 1 of 40 at 11 dB); two AF hops at 12 dB (end to end
#   8.85 dB, below the waterfall): 40 of 40 fail (32-35 of 40 still fail at 13 dB per hop);
# - DeepJSCC at 10 dB: one hop 23.59-23.63 dB, DF over two hops 21.70-21.81 dB (seeds 1, 2, 3,
#   1234): 1.8-1.9 dB lost, inside the allowed (-4 dB, +0.2 dB) band with about 2 dB to spare
#   on the low side, against a seed-to-seed spread of the 40-image mean of about 0.1 dB.
SEED = 1234


@pytest.fixture(autouse=True)
def _seeded():
    import keras
    import sionna

    keras.utils.set_random_seed(SEED)     # Python, numpy and TensorFlow
    sionna.phy.config.seed = SEED


@pytest.fixture(scope="module")
def images():
    from linksim.data import get_dataset
    from linksim.data.base import to_float

    x, _ = get_dataset("embedded").load("test", 40, seed=1)
    xt, _ = get_dataset("embedded").load("train", 300, seed=1)
    return to_float(x), to_float(xt)


def _separation(images, channel, code=None):
    x, xt = images
    s = SeparationScheme(codec={"type": "webp"}, channel_code=code)
    s.prepare(SchemeContext(image_shape=x.shape[1:], channel_uses=486, train_images=xt, channel=channel, seed=0))
    return s


def test_df_separation_is_error_free_at_high_snr(images):
    # 40 images x 1 codeword x 1458 bits at 20 dB on both hops: far above the 11 dB cliff
    s = _separation(images, MultiHopChannel(hops=2, relay="df"))
    res = s.evaluate(s.encode(images[0]), [20.0, 20.0])
    assert res.counts["bit_errors"] == 0 and res.counts["decode_failures"] == 0


def test_df_separation_errors_on_one_bad_hop_reach_the_destination(images):
    # hop 1 at 6 dB (below the cliff), hop 2 at 25 dB: the relay forwards its wrong decisions
    s = _separation(images, MultiHopChannel(hops=2, relay="df"))
    state = s.encode(images[0])
    res = s.evaluate(state, [6.0, 25.0])
    ber = res.counts["bit_errors"] / res.counts["bits"]
    assert ber > 0.01, ber
    assert res.counts["decode_failures"] == 40
    # the same bad hop last: the destination fails as well
    res2 = s.evaluate(state, [25.0, 6.0])
    assert res2.counts["decode_failures"] == 40


def test_af_chain_needs_more_snr_than_one_hop(images):
    # two AF hops at 12 dB: end-to-end about 9 dB, below the cliff; one hop at 12 dB is above it
    one = _separation(images, AWGNChannel())
    two = _separation(images, MultiHopChannel(hops=2, relay="af"))
    assert one.evaluate(one.encode(images[0]), 12.0).counts["decode_failures"] == 0
    assert two.evaluate(two.encode(images[0]), 12.0).counts["decode_failures"] == 40


def test_ideal_code_over_a_df_chain_is_limited_by_its_worst_hop(images):
    s = _separation(images, MultiHopChannel(hops=3, relay="df"), code={"type": "ideal"})
    assert s._ideal_snr_db([20.0, 5.0, 30.0]) == pytest.approx(5.0, abs=1e-4)
    af = _separation(images, MultiHopChannel(hops=2, relay="af"), code={"type": "ideal"})
    # 1 + 1/snr_eff = (1 + 1/10)^2 at 10 dB per hop: 6.78 dB
    assert af._ideal_snr_db([10.0, 10.0]) == pytest.approx(6.78, abs=0.01)


@pytest.mark.parametrize("options", [dict(snr_train_db=10, epochs=15), dict(snr_adaptive=True, epochs=30)])
def test_a_jscc_df_relay_rebuilds_the_image(images, options):
    x, xt = images
    store = ModelStore([SHIPPED_DIR])
    ctx = dict(image_shape=(28, 28, 1), channel_uses=486, train_images=xt, seed=1234,
               dataset_spec={"name": "embedded", "params": {}, "train_size": None}, store=store,
               train_missing=False)
    # the shipped PCA-DeepJSCC models (per-SNR at 10 dB; SNR-adaptive, its encoder told the hop SNR)
    one, df = PCADeepJSCCScheme(**options), PCADeepJSCCScheme(**options)
    one.prepare(SchemeContext(channel=AWGNChannel(), **ctx))
    df.prepare(SchemeContext(channel=MultiHopChannel(hops=2, relay="df"), **ctx))

    def psnr(res):
        return float(np.mean(-10 * np.log10(np.mean((res.images - x) ** 2, axis=(1, 2, 3)))))

    p_one = psnr(one.evaluate(one.encode(x), 10.0))
    p_df = psnr(df.evaluate(df.encode(x), [10.0, 10.0]))
    # 40 images: DF at 10 dB per hop loses something to the relay's reconstruction, but not everything
    assert p_one - 4.0 < p_df < p_one + 0.2, (p_one, p_df)


def test_deepjscc_trains_end_to_end_through_a_qf_chain(images, tmp_path):
    x, xt = images
    ch = MultiHopChannel(hops=2, relay="qf", relay_params={"bits": 3})
    s = DeepJSCCScheme(snr_train_db=10, filters=[4, 4, 4, 4], epochs=1, steps_per_epoch=3,
                       train_channel="scenario")
    ctx = SchemeContext(image_shape=(28, 28, 1), channel_uses=64, train_images=xt, channel=ch, seed=2,
                        dataset_spec={"name": "embedded"}, store=ModelStore([tmp_path]))
    s.prepare(ctx)
    assert isinstance(s.model.channel, MultiHopChannel) and s.model.channel.relay_names == ["qf"]
    spec = s.store_spec(ctx)
    assert spec["training"]["channel"]["config"]["relay"] == "qf"
    plain = DeepJSCCScheme(snr_train_db=10, filters=[4, 4, 4, 4], epochs=1, steps_per_epoch=3)
    assert plain.store_spec(ctx) != spec  # a chain-trained model is a different model
    import keras

    again = keras.saving.load_model(s.entry.model_file)
    assert isinstance(again.channel, MultiHopChannel)


def test_a_jscc_model_cannot_be_trained_through_df_relays():
    with pytest.raises(ValueError, match="decode-and-forward"):
        DeepJSCC((28, 28, 1), 64, filters=[4, 4, 4, 4], channel=MultiHopChannel(hops=2, relay="df"))


def test_hop_snr_forms():
    assert HopSNR(1, None).per_hop(5.0) == 5.0
    assert HopSNR(3, ["sweep", 20, "sweep"]).per_hop(5.0) == [5.0, 20.0, 5.0]
    assert HopSNR(2, None).per_hop([3, 9]) == [3.0, 9.0]
    cols = HopSNR(2, ["sweep", 20]).columns(4.0)
    assert cols == {"snr_db": 4.0, "hop_snr_db": "4/20", "snr_explicit_per_hop": False}


BASE = {"name": "t", "dataset": {"name": "embedded"}, "rate": {"channel_uses": 486},
        "schemes": [{"type": "separation", "codec": {"type": "webp"}}]}


def _scen(**kw):
    return validate_scenario_dict({**BASE, **kw}, source="t.yaml")


def test_scenario_accepts_the_three_per_hop_forms():
    ch = {"type": "multihop", "hops": 2, "relay": "df"}
    assert _scen(channel=ch, snr_db=[0, 10]).snr_db == [0.0, 10.0]
    assert _scen(channel={**ch, "hop_snr_db": ["sweep", 20]}, snr_db=[0, 10]).snr_db == [0.0, 10.0]
    assert _scen(channel=ch, snr_db=[[0, 20], [10, 20]]).snr_db == [[0.0, 20.0], [10.0, 20.0]]


@pytest.mark.parametrize("channel,snr,field,words", [
    ({"type": "multihop", "hops": 3, "hop_snr_db": ["sweep", 20]}, [0], "channel.hop_snr_db", "one entry per hop (3)"),
    ({"type": "multihop", "hops": 2, "hop_snr_db": [10, 20]}, [0], "channel.hop_snr_db", "'sweep'"),
    ({"type": "awgn", "hop_snr_db": ["sweep"]}, [0], "channel.hop_snr_db", "only a multihop"),
    ({"type": "multihop", "hops": 2}, [[1, 2, 3]], "snr_db[0]", "one Es/N0 per hop (2)"),
    ({"type": "multihop", "relay": "xf"}, [0], "channel.relay", "af"),
])
def test_bad_per_hop_fields_name_the_field(channel, snr, field, words):
    with pytest.raises(ScenarioError) as e:
        _scen(channel=channel, snr_db=snr)
    assert field in str(e.value) and words in str(e.value), str(e.value)


def test_train_channel_mapping_trains_through_that_chain_whatever_the_scenario(images, tmp_path):
    """``train_channel: {type: multihop, ...}``: one model for every chain of a channel sweep."""
    x, xt = images
    chain = {"type": "multihop", "hops": 2, "relay": "qf", "relay_params": {"bits": 4}}
    s = DeepJSCCScheme(snr_train_db=10, filters=[4, 4, 4, 4], epochs=1, steps_per_epoch=3, train_channel=chain)
    keys = set()
    for scenario_channel in (AWGNChannel(), MultiHopChannel(hops=3, relay="df"),
                             MultiHopChannel(hops=4, relay="qf", relay_params={"bits": 2})):
        ctx = SchemeContext(image_shape=(28, 28, 1), channel_uses=64, train_images=xt, channel=scenario_channel,
                            seed=2, dataset_spec={"name": "embedded"}, store=ModelStore([tmp_path]))
        spec = s.store_spec(ctx)
        assert spec["training"]["channel"]["config"]["relay_params"] == {"bits": 4}
        keys.add(str(spec))
    assert len(keys) == 1
    s.prepare(ctx)
    assert isinstance(s.model.channel, MultiHopChannel) and s.model.channel.hops == 2
    assert s.model.channel.relay_names == ["qf"]
    # the same chain given as the scenario's channel (train_channel: scenario) is the same stored model
    same = DeepJSCCScheme(snr_train_db=10, filters=[4, 4, 4, 4], epochs=1, steps_per_epoch=3,
                          train_channel="scenario")
    ctx2 = SchemeContext(image_shape=(28, 28, 1), channel_uses=64, train_images=xt,
                         channel=MultiHopChannel(hops=2, relay="qf", relay_params={"bits": 4}), seed=2,
                         dataset_spec={"name": "embedded"}, store=ModelStore([tmp_path]))
    assert same.store_spec(ctx2) == s.store_spec(ctx)


@pytest.mark.parametrize("bad, words", [({"type": "nosuch"}, "unknown channel"),
                                        ({"hops": 2}, "needs a type"),
                                        ("chain", "awgn, scenario or a channel mapping")])
def test_bad_train_channel_is_refused(bad, words):
    with pytest.raises(ValueError, match=words):
        DeepJSCCScheme(train_channel=bad)


def test_a_range_of_training_snrs_is_refused_through_a_chain(images, tmp_path):
    x, xt = images
    s = DeepJSCCScheme(snr_train_db=[0, 20], filters=[4, 4, 4, 4], epochs=1, steps_per_epoch=3,
                       train_channel={"type": "multihop", "hops": 2, "relay": "af"})
    ctx = SchemeContext(image_shape=(28, 28, 1), channel_uses=64, train_images=xt, channel=AWGNChannel(), seed=2,
                        dataset_spec={"name": "embedded"}, store=ModelStore([tmp_path]))
    with pytest.raises(ValueError, match="takes one snr_train_db"):
        s.prepare(ctx)
