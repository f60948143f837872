"""Every Keras layer and model that linksim registers for serialisation survives a config round trip.

What is checked, for every ``linksim>...`` entry of ``keras.saving.get_custom_objects()``
(after :func:`linksim.registry._load_builtin_components` has imported every built-in
component):

- the layer is built with **non-default** constructor arguments (a case whose argument
  equals its default fails, so a forgotten ``get_config`` key cannot hide behind a default);
- ``get_config()`` names every constructor argument (except those a case lists in
  ``not_in_config`` with a reason, e.g. a callable);
- ``cls.from_config(layer.get_config())`` gives an equal config;
- on a fixed input the restored layer gives identical outputs: weights are copied over
  with ``set_weights`` (``from_config`` restores the architecture, not the weights), and
  random layers (channels) are re-seeded with ``sionna.phy.config.seed`` before each call;
- a ``keras.Model`` is also saved with ``keras.saving.save_model`` and reloaded with
  ``keras.saving.load_model`` from ``tmp_path``: same config, identical outputs, weights
  and all.

Meta-tests fail when a registered class has no case here (so a new layer without a
round-trip case fails the suite), when a case names a class no longer registered, and
when a public Keras layer defined in a ``linksim`` module is not registered at all.

Adding a case
-------------
Add one entry to :data:`CASES`, keyed by the registered name (``"linksim>ClassName"``)::

    "linksim>MyLayer": Case(dict(units=7, name="my_layer"), lambda: (_complex(2, 16), tf.constant(10.0))),

``kwargs`` are the constructor arguments (non-default ones; wrap a layer or an array
argument in ``Fresh(factory)`` so every instance gets its own); ``inputs`` is a function
returning the positional arguments of one call (or ``None`` for a layer that cannot be
called on its own); ``not_in_config`` lists constructor arguments deliberately left out
of ``get_config`` (say why in a comment); ``after_restore`` re-binds what a config cannot
carry (e.g. a callable).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from pathlib import Path

import keras
import numpy as np
import pytest
import sionna
import tensorflow as tf

import linksim
from linksim.registry import _load_builtin_components
from linksim.channels.base import Channel

_load_builtin_components()

SEED = 1234


def _complex(batch: int, n: int, seed: int = 0) -> tf.Tensor:
    """Unit-energy complex Gaussian symbols, [batch, n] complex64, from a fixed generator."""
    rng = np.random.default_rng(seed)
    z = (rng.normal(size=(batch, n)) + 1j * rng.normal(size=(batch, n))) / np.sqrt(2.0)
    return tf.constant(z.astype(np.complex64))


def _images(batch: int, shape=(28, 28, 1), seed: int = 0) -> tf.Tensor:
    """[batch, H, W, C] float32 in [0, 1] from a fixed generator."""
    return tf.constant(np.random.default_rng(seed).random((batch,) + tuple(shape)).astype(np.float32))


def _real(batch: int, n: int, seed: int = 0) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).normal(size=(batch, n)).astype(np.float32))


def _regenerate_identity_scaled(y, no):
    """A stand-in decode-and-forward regeneration: unit-energy re-normalisation of ``y``."""
    e = tf.reduce_mean(tf.abs(y) ** 2, axis=-1, keepdims=True)
    return y * tf.cast(tf.math.rsqrt(e), y.dtype)


def _bind_regenerate(layer):
    layer.regenerate = _regenerate_identity_scaled


@dataclass(frozen=True)
class Fresh:
    """A constructor argument built anew for every instance (a layer, an array): ``Fresh(factory)``."""

    make: Callable[[], Any]


@dataclass
class Case:
    kwargs: dict
    inputs: Optional[Callable[[], tuple]] = None
    not_in_config: dict = field(default_factory=dict)   # constructor arg -> why it is not in the config
    after_restore: Optional[Callable[[Any], None]] = None
    call_kwargs: dict = field(default_factory=dict)


def _af_chain():
    from linksim.channels.relay import MultiHopChannel
    return MultiHopChannel(hops=2, relay="af", relay_params={"gain": "measured"}, name="chain")


def _case_fallback():
    return np.full((8, 8, 1), 0.25, np.float32)


CASES: dict[str, Case] = {
    "linksim>PReLU": Case(dict(alpha_initializer="ones", shared_axes=[1, 2], name="prelu_rt"),
                          lambda: (_images(2) - 0.5,)),
    # --------------------------------------------------------------- channels and relays
    "linksim>AWGNChannel": Case(dict(name="awgn_rt", dtype="float32"), lambda: (_complex(2, 64), tf.constant(5.0))),
    "linksim>RayleighFadingChannel": Case(dict(coherence=8, k_factor=2.5, csi="pilots", pilots=3, name="fading_rt"),
                                          lambda: (_complex(2, 64), tf.constant(5.0))),
    "linksim>AmplifyAndForwardRelay": Case(dict(gain="measured", name="af_rt"),
                                           lambda: (_complex(2, 64), tf.constant(0.1))),
    "linksim>QuantizeAndForwardRelay": Case(dict(bits=3, clip=2.5, straight_through=False, name="qf_rt"),
                                            lambda: (_complex(2, 64), tf.constant(0.1))),
    # a callable cannot be serialised: the scheme re-binds it after restoring (class docstring)
    "linksim>DecodeAndForwardRelay": Case(dict(regenerate=_regenerate_identity_scaled, name="df_rt"),
                                          lambda: (_complex(2, 64), tf.constant(0.1)),
                                          not_in_config={"regenerate": "a callable is re-bound, not serialised"},
                                          after_restore=_bind_regenerate),
    "linksim>MultiHopChannel": Case(dict(hops=3, relay=["af", "qf"],
                                         relay_params={"af": {"gain": "measured"}, "qf": {"bits": 5}},
                                         compensate_gain=False, hop={"type": "awgn"}, name="chain_rt"),
                                    lambda: (_complex(2, 64), tf.constant(10.0))),
    # --------------------------------------------------------------- JSCC layers
    "linksim>PowerNormalization": Case(dict(channel_uses=24, name="pn_rt"), lambda: (_real(3, 60),)),
    "linksim>BinaryQuantizer": Case(dict(channel_uses=24, keying="onoff", name="bq_rt"), lambda: (_real(3, 60),)),
    "linksim>DeepJSCCEncoder": Case(dict(image_shape=(16, 16, 3), channel_uses=96, filters=(8, 8, 8, 8),
                                         kernel_size=3, quantizer="binary", name="enc_rt"),
                                    lambda: (_images(2, (16, 16, 3)),)),
    "linksim>DeepJSCCDecoder": Case(dict(image_shape=(16, 16, 3), channel_uses=96, filters=(8, 8, 8, 8),
                                         kernel_size=3, snr_side_info=True, name="dec_rt"),
                                    lambda: (_complex(2, 96), tf.constant([3.0, 12.0]))),
    "linksim>PCACode": Case(dict(n=12, m=5, name="code_rt")),
    "linksim>SNRAttention": Case(dict(units=5, name="att_rt"),
                                 lambda: (_images(2, (4, 4, 6)), tf.constant([3.0, 12.0]))),
    "linksim>PCADeepJSCCEncoder": Case(dict(image_shape=(16, 16, 3), channel_uses=96, filters=(8, 8, 8, 8),
                                            kernel_size=3, snr_adaptive=True, name="pca_enc_rt"),
                                       lambda: (_images(2, (16, 16, 3)), tf.constant([3.0, 12.0])),
                                       not_in_config={"code": "a layer shared with the other end"}),
    "linksim>PCADeepJSCCDecoder": Case(dict(image_shape=(16, 16, 3), channel_uses=96, filters=(8, 8, 8, 8),
                                            kernel_size=3, snr_adaptive=True, name="pca_dec_rt"),
                                       lambda: (_complex(2, 96), tf.constant([3.0, 12.0])),
                                       not_in_config={"code": "a layer shared with the other end"}),
    "linksim>PCADeepJSCC": Case(dict(image_shape=(16, 16, 3), channel_uses=96, filters=(8, 8, 8, 8),
                                     kernel_size=3, snr_adaptive=True, channel=Fresh(_af_chain), name="pca_rt"),
                                lambda: (_images(2, (16, 16, 3)), tf.constant(7.0))),
    "linksim>DeepJSCC": Case(dict(image_shape=(16, 16, 3), channel_uses=96, filters=(8, 8, 8, 8), kernel_size=3,
                                  quantizer="binary", snr_side_info=True, channel=Fresh(_af_chain),
                                  name="jscc_rt"),
                             lambda: (_images(2, (16, 16, 3)), tf.constant(7.0))),
    "linksim>FeatureGate": Case(dict(groups=4, always_on=3, units=5, name="gate_rt"),
                                lambda: (_real(3, 32), tf.constant([0.0, 10.0, 20.0]))),
    "linksim>MCR2JSCC": Case(dict(image_shape=(16, 16, 3), channel_uses=96, filters=(8, 8, 8, 8), kernel_size=3,
                                  gate=True, groups=4, always_on=1, gate_units=5, channel=Fresh(_af_chain),
                                  name="mcr2_rt"),
                             lambda: (_images(2, (16, 16, 3)), tf.constant(7.0))),
    # --------------------------------------------------------------- tasks
    "linksim>ConvBlock": Case(dict(filters=6, batch_norm=False, name="block_rt"),
                              lambda: (_images(2, (8, 8, 2)),)),
    "linksim>ImageClassifier": Case(dict(image_shape=(12, 12, 1), num_classes=3, width=4, dropout=0.1,
                                         batch_norm=False, name="clf_rt"),
                                    lambda: (_images(2, (12, 12, 1)),)),
    # --------------------------------------------------------------- perceptual metric (frozen weights from .npz)
    "linksim>LPIPS": Case(dict(upsample_to=48, weights_path=str(Path(linksim.__file__).parent / "weights" / "lpips"
                                                                / "alexnet.npz"), name="lpips_rt"),
                          lambda: (_images(2, (28, 28, 1)), _images(2, (28, 28, 1), seed=1))),
    "linksim>DeepHashNetwork": Case(dict(image_shape=(12, 12, 3), num_classes=3, bits=8, width=2, name="hash_rt"),
                                    lambda: (_images(2, (12, 12, 3)),)),
    # --------------------------------------------------------------- separation (numpy codecs inside)
    "linksim>SeparationTransmitter": Case(dict(codec={"type": "webp", "method": 2},
                                               channel_code={"type": "ldpc5g", "k": 600, "n": 800},
                                               modulation={"type": "qam", "num_bits_per_symbol": 2},
                                               channel_uses=800, name="sscc_tx_rt"),
                                          lambda: (_images(2, (8, 8, 1)),)),
    "linksim>SeparationReceiver": Case(dict(codec={"type": "webp", "method": 2},
                                            channel_code={"type": "ldpc5g", "k": 600, "n": 800},
                                            modulation={"type": "qam", "num_bits_per_symbol": 2},
                                            image_shape=(8, 8, 1), fallback=Fresh(_case_fallback),
                                            on_block_error="decode_anyway", name="sscc_rx_rt"),
                                       lambda: (_complex(2, 800), tf.constant(0.5))),
}


def _registered() -> dict[str, type]:
    return {k: v for k, v in keras.saving.get_custom_objects().items() if k.startswith("linksim>")}


def _kwargs(case: Case) -> dict:
    """The case's constructor arguments, with every :class:`Fresh` argument built anew."""
    return {k: (v.make() if isinstance(v, Fresh) else v) for k, v in case.kwargs.items()}


def _plain(v):
    """A config value made comparable: tuples -> lists, numpy -> lists, nested."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    return v


def _constructor_params(cls) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(cls.__init__)
    return {n: p for n, p in sig.parameters.items()
            if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _call(layer, case: Case):
    sionna.phy.config.seed = SEED
    tf.random.set_seed(SEED)
    return layer(*case.inputs(), **case.call_kwargs)


def _assert_same_outputs(a, b):
    fa, fb = tf.nest.flatten(a), tf.nest.flatten(b)
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_every_registered_linksim_class_has_a_round_trip_case():
    missing = sorted(set(_registered()) - set(CASES))
    assert not missing, (f"registered for serialisation but without a round-trip case in {__file__}: "
                         f"{missing}; add one line to CASES (see the module docstring)")


#: Base classes that are never instantiated themselves (their subclasses are registered and have cases).
ABSTRACT_BASES = {Channel}


def test_every_public_keras_layer_in_linksim_is_registered_for_serialisation():
    # a layer that is not registered would escape the round-trip cases above
    import sys

    registered = set(_registered().values())
    unregistered = sorted(
        f"{mod_name}.{name}" for mod_name, mod in list(sys.modules.items())
        if mod_name == "linksim" or mod_name.startswith("linksim.")
        for name, obj in list(vars(mod).items())
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer) and obj.__module__ == mod_name
        and not obj.__name__.startswith("_") and obj not in registered and obj not in ABSTRACT_BASES)
    assert not unregistered, (f"Keras layers without keras.saving.register_keras_serializable(package='linksim'): "
                              f"{unregistered}")


def test_every_round_trip_case_names_a_registered_class():
    stale = sorted(set(CASES) - set(_registered()))
    assert not stale, f"CASES entries for classes that are no longer registered: {stale}"


@pytest.mark.parametrize("key", sorted(CASES))
def test_the_case_uses_non_default_arguments_and_the_config_names_every_constructor_argument(key):
    if key not in _registered():
        pytest.skip(f"{key} is not registered (see the stale-case test)")
    cls, case = _registered()[key], CASES[key]
    params = _constructor_params(cls)
    defaulted = [n for n, v in _kwargs(case).items()
                 if n in params and params[n].default is not inspect.Parameter.empty
                 and _plain(v) == _plain(params[n].default)]
    assert not defaulted, f"{key}: the case passes default values for {defaulted}; pick other values"
    with_default = [n for n, p in params.items() if p.default is not inspect.Parameter.empty]
    if with_default:
        assert set(with_default) & set(case.kwargs), f"{key}: the case sets none of its optional arguments"
    cfg = cls(**_kwargs(case)).get_config()
    missing = sorted(set(params) - set(cfg) - set(case.not_in_config))
    assert not missing, f"{key}.get_config() leaves out constructor argument(s) {missing}"


@pytest.mark.parametrize("key", sorted(CASES))
def test_from_config_gives_an_equal_config_and_identical_outputs(key):
    if key not in _registered():
        pytest.skip(f"{key} is not registered (see the stale-case test)")
    cls, case = _registered()[key], CASES[key]
    layer = cls(**_kwargs(case))
    if case.inputs is not None:
        out = _call(layer, case)
    cfg = layer.get_config()
    restored = cls.from_config(cfg)
    assert type(restored) is cls
    assert _plain(restored.get_config()) == _plain(cfg)
    if case.after_restore is not None:
        case.after_restore(restored)
    if case.inputs is None:
        return
    _call(restored, case)                       # builds the weights
    assert len(restored.get_weights()) == len(layer.get_weights())
    restored.set_weights(layer.get_weights())
    _assert_same_outputs(_call(restored, case), out)
    _assert_same_outputs(_call(layer, case), out)   # the re-seeded call itself is reproducible


@pytest.mark.parametrize("key", sorted(k for k, v in _registered().items() if issubclass(v, keras.Model)))
def test_a_saved_model_reloads_with_an_equal_config_and_identical_outputs(key, tmp_path):
    assert key in CASES, f"{key} has no round-trip case"
    cls, case = _registered()[key], CASES[key]
    model = cls(**_kwargs(case))
    out = _call(model, case)
    path = tmp_path / "model.keras"
    keras.saving.save_model(model, path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is cls
    assert _plain(loaded.get_config()) == _plain(model.get_config())
    assert len(loaded.get_weights()) == len(model.get_weights()) > 0
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    _assert_same_outputs(_call(loaded, case), out)
