"""A channel sweep's JSCC schemes: encoder, channel and decoder as three compiled calls, the chain's traces shared.

In a scenario that sweeps the channel (``scheme_context`` sets ``extra["channel_sweep"]``), a JSCC scheme whose
chain it shares (no decode-and-forward relay to bind) evaluates through :meth:`JSCCScheme._evaluate_split`: the
chain's compiled channel (:meth:`Channel.compiled`) is traced once per process for every scheme, and the model's
encoder and decoder once for every chain. The received images must be those of the one-call path.
"""

from pathlib import Path

import keras
import numpy as np
import pytest
import sionna.phy
import tensorflow as tf

from linksim.channels import AWGNChannel, MultiHopChannel
from linksim.schemes.base import SchemeContext
from linksim.schemes.deepjscc import DeepJSCC, DeepJSCCScheme
from linksim.schemes.deepjscc_pca import PCADeepJSCCScheme
from linksim.store import SHIPPED_DIR, ModelStore

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def _qf(bits=4, hops=2):
    return MultiHopChannel(hops=hops, relay="qf", relay_params={"bits": bits})


def _bound(model, channel, sweep: bool, k=64):
    """A deepjscc scheme sending with ``model`` over ``channel``, bound as a run binds a loaded model."""
    s = DeepJSCCScheme(label="t")
    s.context = SchemeContext(image_shape=(28, 28, 1), channel_uses=k, train_images=np.zeros((4, 28, 28, 1)),
                              channel=channel, seed=3, extra={"channel_sweep": sweep})
    s._bind(s.context, model, None)
    return s


def _received(s, x, snrs, seed=5):
    sionna.phy.config.seed = seed
    state = s.encode(x)
    return [s.evaluate(state, v).images for v in snrs]


def _embedded(test_size):
    """(training images, the first ``test_size`` test images) of the embedded data set, as a run loads them."""
    from linksim.data import get_dataset
    from linksim.data.base import to_float

    ds = get_dataset("embedded")
    return to_float(ds.load("train", None, seed=1234)[0]), to_float(ds.load("test", test_size, seed=1234)[0])


def _adaptive_pca(chain, x_train, sweep: bool, store=None):
    """The shipped SNR-adaptive, spread PCA-DeepJSCC prepared for ``chain`` as a run prepares it."""
    s = PCADeepJSCCScheme(snr_adaptive=True, epochs=30, spread=True)
    s.prepare(SchemeContext(image_shape=(28, 28, 1), channel_uses=486, train_images=x_train, channel=chain,
                            seed=1234, dataset_spec={"name": "embedded", "params": {}, "train_size": None},
                            store=store or ModelStore([SHIPPED_DIR]), train_missing=False,
                            extra={"channel_sweep": sweep}))
    return s


@pytest.mark.parametrize("batch", [16, 3])
def test_the_split_path_receives_the_images_of_the_one_call_path(batch):
    # 16 images (graph mode) and 3 (at most SMALL_BATCH: encoder and decoder under XLA) of random pixels, a
    # random 4-filter model, two 4-bit QF hops at 0, 10 and 20 dB, the same generator seed: the same operations
    # and the same noise draws in the same order. Measured: identical; the tolerance allows float rounding only.
    keras.utils.set_random_seed(0)
    model = DeepJSCC((28, 28, 1), 64, filters=(4, 4, 4, 4))
    x = np.random.default_rng(1).random((batch, 28, 28, 1)).astype(np.float32)
    chain = _qf()
    fused, split = _bound(model, chain, sweep=False), _bound(model, chain, sweep=True)
    assert not fused._split and split._split
    ref, got = _received(fused, x, (0.0, 10.0, 20.0)), _received(split, x, (0.0, 10.0, 20.0))
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-6)
    assert float(np.mean((ref[2] - ref[0]) ** 2)) > 0.0        # the points differ: the noise is drawn per point
    assert split._transmit.experimental_get_tracing_count() == 0   # the one-call functions are not used


def test_schemes_over_one_chain_share_its_trace_and_chains_share_the_models():
    keras.utils.set_random_seed(0)
    model = DeepJSCC((28, 28, 1), 64, filters=(4, 4, 4, 4))
    other = DeepJSCC((28, 28, 1), 64, filters=(4, 4, 4, 4))
    x = np.random.default_rng(1).random((16, 28, 28, 1)).astype(np.float32)
    chain_a, chain_b = _qf(bits=4), _qf(bits=2, hops=3)
    schemes = [_bound(model, chain_a, True), _bound(other, chain_a, True), _bound(model, chain_b, True),
               _bound(other, chain_b, True)]
    for s in schemes:
        _received(s, x, (5.0, 15.0))
    for chain in (chain_a, chain_b):
        assert chain.compiled(False).experimental_get_tracing_count() == 1      # two schemes, one trace
    for m in (model, other):
        decode = m._linksim_split[(False, False, 64)]["decode"]
        assert decode.experimental_get_tracing_count() == 1                  # two chains, one trace
    assert schemes[0]._decode is schemes[2]._decode and schemes[0]._decode is not schemes[1]._decode


def test_the_snr_adaptive_spread_model_is_split_with_the_same_images():
    # the shipped SNR-adaptive PCA-DeepJSCC with spreading (its encoder takes the SNR: it runs at every point),
    # 20 embedded test images over two 3-bit QF hops at per-hop SNRs (4, 12) and (20, 20) dB
    x_tr, x_te = _embedded(20)
    chain = _qf(bits=3)
    out = {}
    for sweep in (False, True):
        s = _adaptive_pca(chain, x_tr, sweep)
        assert s._split is sweep
        out[sweep] = _received(s, x_te, ([4.0, 12.0], [20.0, 20.0]))
    for g, r in zip(out[True], out[False], strict=True):
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-6)


def test_an_snr_adaptive_encoder_runs_once_per_snr_for_every_chain_of_a_transmission(monkeypatch):
    # the shipped SNR-adaptive PCA-DeepJSCC prepared for two chains (3-bit QF, 2 hops; 2-bit QF, 3 hops) with one
    # loaded model, as a channel sweep's job prepares it; one transmission of 12 embedded test images sent over
    # both chains at 5 and 15 dB per hop (run_job shares it between the chains): the encoder runs once per SNR,
    # and every chain receives exactly the images of a transmission of its own
    from linksim.schemes.jscc import AdaptiveTransmission, JSCCScheme

    x_tr, x_te = _embedded(12)
    store = ModelStore([SHIPPED_DIR])
    with store.sharing_loaded_models():
        schemes = [_adaptive_pca(chain, x_tr, True, store) for chain in (_qf(bits=3), _qf(bits=2, hops=3))]
    assert schemes[0].model is schemes[1].model and all(s._split for s in schemes)
    encoder = schemes[0]._encode_snr
    assert schemes[1]._encode_snr is encoder
    snrs = (5.0, 15.0)
    own = [_received(s, x_te, snrs, seed=5) for s in schemes]             # each chain its own transmission
    calls = {"n": 0}
    counting = JSCCScheme._call

    def count(self, fn, *args):
        calls["n"] += fn is encoder
        return counting(self, fn, *args)

    shared = schemes[0].encode(x_te)
    assert isinstance(shared, AdaptiveTransmission)
    np.testing.assert_array_equal(shared.numpy(), x_te)                   # nothing sent before the SNR is known
    monkeypatch.setattr(JSCCScheme, "_call", count)
    got = []
    for s in schemes:
        sionna.phy.config.seed = 5
        got.append([s.evaluate(shared, v).images for v in snrs])
    assert calls["n"] == 2 and sorted(shared.symbols_at) == [5.0, 15.0]   # 4 points, 2 encodings
    for g_chain, r_chain in zip(got, own, strict=True):
        for g, r in zip(g_chain, r_chain, strict=True):
            np.testing.assert_array_equal(g, r)
    assert float(np.mean((got[0][0] - got[1][0]) ** 2)) > 0.0              # the chains differ


def test_a_df_chain_keeps_the_one_call_path_and_the_run_marks_channel_sweeps():
    from linksim.run.setup import scheme_context
    from linksim.scenario import load_scenario

    keras.utils.set_random_seed(0)
    s = _bound(DeepJSCC((28, 28, 1), 64, filters=(4, 4, 4, 4)), MultiHopChannel(hops=2, relay="df"), sweep=True)
    assert not s._split                                  # the scheme's own bound copy of the chain: nothing to share
    assert _received(s, np.zeros((4, 28, 28, 1), np.float32), (10.0,))[0].shape == (4, 28, 28, 1)
    for name, swept in (("dhd_multihop_qf.yaml", True), ("awgn_jscc_vs_sscc.yaml", False)):
        ctx = scheme_context(load_scenario(SCENARIOS / name), (28, 28, 1), 486, None, AWGNChannel(), None,
                             progress=False)
        assert ctx.extra["channel_sweep"] is swept, name


def test_a_channel_compiles_once_per_jit_setting():
    ch = AWGNChannel()
    assert ch.compiled() is ch.compiled(False) and ch.compiled(True) is not ch.compiled(False)
    y, told = ch.compiled()(tf.ones([2, 8], tf.complex64), tf.constant(10.0))
    assert y.shape == (2, 8) and float(told) == pytest.approx(10.0, abs=1e-4)
