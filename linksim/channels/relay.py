"""Multi-hop relay chains: source -> relay 1 -> ... -> relay h-1 -> destination.

Every hop is linksim's :class:`~linksim.channels.AWGNChannel` (Sionna ``AWGN``)
at its own Es/N0 ``snr_db`` (``no_i = 10 ** (-snr_db_i / 10)``, unit-energy
symbols, see ``docs/conventions.md``).  Between two hops a relay turns what it
received into the symbols it sends on the next hop, again of unit average energy:

``"af"``  :class:`AmplifyAndForwardRelay`
    Rescales the received symbols (fixed expected gain, or measured per block).
``"qf"``  :class:`QuantizeAndForwardRelay`
    Uniform quantisation of the real and imaginary parts, then rescaling
    (straight-through gradient, so a JSCC model trains through it).
``"df"``  :class:`DecodeAndForwardRelay`
    Calls a ``regenerate(y, no) -> x_next`` callable supplied by the scheme
    (decode and re-encode).

:class:`MultiHopChannel` (registered as channel ``"multihop"``) chains them.

End-to-end SNR of amplify-and-forward (derivation)
--------------------------------------------------
Let hop ``i`` have noise variance ``n_i = 1 / snr_i`` and let the symbols entering
hop ``i`` have unit energy, split into a signal part of energy ``S`` and a noise
part of energy ``N = 1 - S`` with ``S / N = G_{i-1}``, the SNR accumulated so far
(``G_0 = inf``).  Hence ``S = G / (1 + G)`` and ``N = 1 / (1 + G)`` with
``G = G_{i-1}``.  The hop adds independent noise of variance ``n_i``, so

    ``G_i = S / (N + n_i) = G / (1 + n_i (1 + G))``
    ``1 / G_i = 1 / G + n_i (1 + 1 / G)``
    ``1 + 1 / G_i = (1 + 1 / G_{i-1}) (1 + n_i)``.

A fixed-gain relay multiplies signal and noise alike by ``1 / sqrt(1 + n_i)``
(``E|y_i|^2 = 1 + n_i``), which restores unit energy without changing the ratio,
so the recursion holds at every hop and, with ``1 + 1 / G_0 = 1``,

    ``1 + 1 / snr_eff = prod_i (1 + 1 / snr_i)``           (eq. AF)

(:func:`af_effective_snr`).  Two equal hops at 10 dB give 1.21 = 1 + 1 / snr_eff,
snr_eff = 6.8 dB; the naive "noises add" rule would give 7.0 dB.

Quantise-and-forward (approximation)
------------------------------------
A ``b``-bit uniform quantiser of step ``Delta`` is modelled as additive noise of
variance ``Delta^2 / 12`` per real dimension, ``q = Delta^2 / 6`` per complex
symbol, independent of the signal.  A QF relay then acts as an AF relay whose hop
noise is ``n_i + q_i``:

    ``1 + 1 / snr_eff = prod_i (1 + n_i + q_i)``           (eq. QF, ``q = 0`` for AF and for the last hop)

The model is accurate for fine quantisers (within 0.1 dB from about 6 bits at
20 dB per hop); it is optimistic for coarse ones, because it ignores the
clipping (overload) noise and the signal-dependence of the error (for 1 bit on
Gaussian symbols the true equivalent noise is about 2.7 times ``Delta^2 / 12``).
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
from typing import Callable, Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf
from sionna.phy.utils import expand_to_rank

from linksim.channels.awgn import AWGNChannel, no_to_snr_db, snr_db_to_no
from linksim.registry import CHANNELS, RELAYS, UnknownNameError

__all__ = [
    "RELAYS",
    "RELAY_NAMES",
    "AmplifyAndForwardRelay",
    "QuantizeAndForwardRelay",
    "DecodeAndForwardRelay",
    "MultiHopChannel",
    "af_effective_snr",
    "hop_snrs",
    "make_relay",
    "gaussian_loading_factor",
]

#: Relays by scenario name ("af", "df", "qf").  To move into :mod:`linksim.registry`.

#: The relay names a scenario can use.
RELAY_NAMES = ("af", "df", "qf")

# Clip level / standard deviation of the uniform mid-rise quantiser with 2**b levels
# that minimises the mean squared error of a Gaussian input N(0, sigma^2), b = 1..16.
# Computed by numerical minimisation of the exact MSE (granular + overload); the
# steps 2 * clip / 2**b agree with Max (1960), Table II: 1.596, 0.9957, 0.5860, 0.3352 sigma.
_GAUSSIAN_LOADING = (1.5958, 1.9914, 2.3441, 2.6816, 3.0102, 3.3300, 3.6395, 3.9376,
                     4.2237, 4.4982, 4.7614, 5.0143, 5.2577, 5.4923, 5.7191, 5.9383)


def gaussian_loading_factor(bits: int) -> float:
    """Clip level in standard deviations of the MSE-optimal ``bits``-bit uniform quantiser of a Gaussian.

    Parameters
    ----------
    bits : int
        Bits per real dimension, 1..16.

    Output
    ------
    float
        ``kappa_b`` with ``clip = kappa_b * sigma`` (1.596 for 1 bit, 2.68 for 4, 3.94 for 8, 5.01 for 12).

    Raises
    ------
    ValueError
        If ``bits`` is not an integer in 1..16.
    """
    return _GAUSSIAN_LOADING[_check_bits(bits) - 1]


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 1 <= int(bits) <= 16:
        raise ValueError(f"bits must be an integer in 1..16 (bits per real dimension), got {bits!r}")
    return int(bits)


# ---------------------------------------------------------------------------- pure helpers
def af_effective_snr(snr_linear_per_hop):
    """End-to-end SNR of a chain of fixed-gain amplify-and-forward relays (linear, not dB).

    Every relay rescales by ``1 / sqrt(1 + no_i)`` (expected received energy), so
    (derivation in the module docstring)

        ``1 + 1 / snr_eff = prod_i (1 + 1 / snr_i)``.

    One hop gives ``snr_eff = snr_1``; ``h`` equal hops give
    ``snr_eff = 1 / ((1 + 1 / snr) ** h - 1)``, about ``snr / h`` at high SNR.

    Parameters
    ----------
    snr_linear_per_hop : array_like, [..., hops], float
        Es/N0 of every hop as a linear ratio (``10 ** (snr_db / 10)``), > 0;
        ``inf`` for a noiseless hop.  Reduced over the last axis.

    Output
    ------
    float or np.ndarray [...], float64
        The end-to-end SNR (linear); ``inf`` when every hop is noiseless.

    Raises
    ------
    ValueError
        If the input is empty or holds a value that is not > 0.
    """
    snr = np.asarray(snr_linear_per_hop, dtype=np.float64)
    if snr.ndim == 0:
        snr = snr[None]
    if snr.shape[-1] == 0:
        raise ValueError("af_effective_snr needs the SNR of at least one hop")
    if np.any(~(snr > 0)):
        raise ValueError(f"per-hop SNRs must be linear ratios > 0, got {snr_linear_per_hop!r}")
    inv = np.prod(1.0 + 1.0 / snr, axis=-1) - 1.0
    with np.errstate(divide="ignore"):
        out = 1.0 / inv
    return float(out) if np.ndim(out) == 0 else out


_HOP_SNR_FORMS = ("a scalar (the same Es/N0 on every hop), "
                  "a list/1-D array of length hops (one Es/N0 per hop), "
                  "or a tensor [hops, batch] (per hop and example)")


def hop_snrs(snr_db, hops: int) -> list:
    """Expand a scenario's SNR into one Es/N0 [dB] per hop.

    Parameters
    ----------
    snr_db : float, sequence of float, np.ndarray or tf.Tensor
        - scalar: the same SNR on every hop;
        - list / tuple / 1-D array or tensor of length ``hops``: one SNR per hop;
        - array or tensor ``[hops, batch]``: per hop and example.
    hops : int
        Number of hops (>= 1).

    Output
    ------
    list of ``hops`` values
        Python floats for Python / NumPy scalars and sequences, otherwise slices of
        the input (``np.ndarray`` or ``tf.Tensor``, scalar or ``[batch]``).

    Raises
    ------
    ValueError
        If ``hops`` is not a positive integer, or ``snr_db`` is none of the forms
        above (wrong length, not numeric, or a tensor whose first dimension is
        not known when traced); the message lists the allowed forms.
    """
    hops = _check_hops(hops)
    bad = (f"snr_db must be {_HOP_SNR_FORMS}; got {snr_db!r} for {hops} hop(s)")
    if isinstance(snr_db, (bool, np.bool_)) or isinstance(snr_db, (str, bytes)):
        raise ValueError(bad)
    if isinstance(snr_db, numbers.Real):
        return [float(snr_db)] * hops
    if isinstance(snr_db, (list, tuple)):
        if len(snr_db) != hops:
            raise ValueError(f"snr_db has {len(snr_db)} value(s) but the chain has {hops} hop(s); " + bad)
        if not all(isinstance(s, numbers.Real) and not isinstance(s, (bool, np.bool_)) for s in snr_db):
            raise ValueError(bad)
        return [float(s) for s in snr_db]
    if isinstance(snr_db, np.ndarray):
        if not np.issubdtype(snr_db.dtype, np.number):
            raise ValueError(bad)
        if snr_db.ndim == 0:
            return [float(snr_db)] * hops
        if snr_db.shape[0] != hops:
            raise ValueError(f"snr_db has {snr_db.shape[0]} entries along its first axis but the chain "
                             f"has {hops} hop(s); " + bad)
        return [float(s) if snr_db.ndim == 1 else snr_db[i] for i, s in enumerate(snr_db)]
    if tf.is_tensor(snr_db) or isinstance(snr_db, tf.Variable):
        shape = snr_db.shape
        if shape.rank is None:
            raise ValueError("snr_db is a tensor of unknown rank; " + bad)
        if shape.rank == 0:
            return [snr_db] * hops
        if shape[0] is None:
            raise ValueError("snr_db is a tensor whose first (hop) dimension is unknown; " + bad)
        if shape[0] != hops:
            raise ValueError(f"snr_db has {shape[0]} entries along its first axis but the chain "
                             f"has {hops} hop(s); " + bad)
        return [snr_db[i] for i in range(hops)]
    raise ValueError(bad)


def _check_hops(hops) -> int:
    if isinstance(hops, bool) or not isinstance(hops, numbers.Integral) or int(hops) < 1:
        raise ValueError(f"hops must be an integer >= 1, got {hops!r}")
    return int(hops)


def _as_no(no) -> tf.Tensor:
    return tf.cast(no, tf.float32)


def _broadcast_to(t, y) -> tf.Tensor:
    """``t`` (scalar or [batch...]) with trailing axes added so it broadcasts against ``y``."""
    t = tf.convert_to_tensor(t)
    if t.shape.rank is not None and y.shape.rank is not None:
        for _ in range(y.shape.rank - t.shape.rank):   # static ranks: no runtime asserts under XLA
            t = t[..., tf.newaxis]
        return t
    return expand_to_rank(t, tf.rank(y), axis=-1)


def _plain(obj):
    """Keras' tracked lists and dicts as plain ones (for ``get_config``)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _mean_energy(y) -> tf.Tensor:
    """``mean(|y|^2)`` over the last axis, keepdims; [..., 1], tf.float32."""
    return tf.reduce_mean(tf.square(tf.math.real(y)) + tf.square(tf.math.imag(y)), axis=-1, keepdims=True)


# ---------------------------------------------------------------------------- relays
class _ScalarArgsLayer(keras.layers.Layer):
    """A layer whose second argument may be a Python number or list.

    Keras 3 accepts only tensors as positional arguments of ``__call__``; passing the
    second argument on as a keyword lets ``relay(y, 0.1)`` and ``chain(x, 10.0)`` work.
    """

    _second_arg = "no"

    def build(self, *args, **kwargs):
        # No weights; marking the layer built spares Keras a symbolic trace of ``call``.
        self.built = True

    def __call__(self, inputs, *args, **kwargs):
        if args:
            if self._second_arg in kwargs or len(args) > 1:
                raise TypeError(f"{type(self).__name__} takes (inputs, {self._second_arg}) and keywords; "
                                f"got {1 + len(args)} positional arguments")
            kwargs[self._second_arg] = args[0]
        return super().__call__(inputs, **kwargs)


@keras.saving.register_keras_serializable(package="linksim")
class AmplifyAndForwardRelay(_ScalarArgsLayer):
    """Amplify-and-forward: rescale the received symbols to unit average energy.

    With ``y = g x + w`` received on a hop of noise variance ``no`` (``x`` and the
    relay's input of unit average energy, so ``E|y|^2 = 1 + no``):

    - ``gain="fixed"`` (default): ``x_next = y / sqrt(1 + no)``, the expected
      received energy; signal and noise are scaled alike, the end-to-end SNR obeys
      ``1 + 1 / snr_eff = prod_i (1 + 1 / snr_i)`` (:func:`af_effective_snr`).
    - ``gain="measured"``: ``x_next = y / sqrt(mean_S |y|^2)`` with the energy
      measured over the last axis (one block, e.g. one image's ``S`` symbols);
      every block leaves with energy exactly 1.  For long blocks it behaves like
      ``"fixed"``; ``no`` is not needed.

    Parameters
    ----------
    gain : "fixed" | "measured"
        How the amplification is chosen (see above).

    Input
    -----
    y : [..., S], tf.complex64
        Symbols received by the relay.
    no : float or tf.float32, scalar or broadcastable to ``y``'s leading dimensions
        Noise variance per complex symbol of the hop just received
        (``10 ** (-snr_db / 10)``).  Required for ``gain="fixed"``.

    Output
    ------
    x_next : [..., S], tf.complex64
        Symbols for the next hop, unit average energy.

    Raises
    ------
    ValueError
        If ``gain`` is not "fixed" or "measured"; if ``no`` is missing with
        ``gain="fixed"``.
    """

    regenerates = False
    GAINS = ("fixed", "measured")

    def __init__(self, gain: str = "fixed", **kwargs):
        super().__init__(**kwargs)
        if gain not in self.GAINS:
            raise ValueError(f"gain must be one of {', '.join(self.GAINS)}, got {gain!r}")
        self.gain = gain

    def added_noise_variance(self, no) -> tf.Tensor:
        """Noise the relay itself adds per complex symbol (relative to its unit-energy input): 0."""
        return tf.zeros_like(_as_no(no))

    def call(self, y, no=None):
        y = tf.convert_to_tensor(y)
        if self.gain == "fixed":
            if no is None:
                raise ValueError("AmplifyAndForwardRelay(gain='fixed') needs the hop's noise variance no")
            scale = tf.math.rsqrt(1.0 + _broadcast_to(_as_no(no), y))
        else:
            scale = tf.math.rsqrt(tf.maximum(_mean_energy(y), 1e-30))
        return y * tf.cast(scale, y.dtype)

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}


@keras.saving.register_keras_serializable(package="linksim")
class QuantizeAndForwardRelay(_ScalarArgsLayer):
    """Quantise-and-forward: uniform quantisation of I and Q, then rescaling to unit energy.

    The real and imaginary parts of the received symbols are quantised separately
    by a uniform mid-rise quantiser of ``L = 2 ** bits`` levels over
    ``[-clip, clip]``:

        ``Delta = 2 clip / L``
        ``k = min(max(floor((v + clip) / Delta), 0), L - 1)``
        ``Q(v) = -clip + (k + 1/2) Delta``            (levels +-Delta/2, +-3 Delta/2, ...)

    so values beyond ``+-clip`` go to the outermost levels.  The quantised symbols
    ``q = Q(Re y) + j Q(Im y)`` are rescaled by their measured energy over the last
    axis (one block): ``x_next = q / sqrt(mean_S |q|^2)``.

    Default clip: ``clip = kappa_b * sqrt((1 + no) / 2)``, i.e. ``kappa_b`` standard
    deviations of one real dimension of the received symbols (unit-energy signal
    plus noise of variance ``no``), where ``kappa_b`` is the loading factor of the
    MSE-optimal uniform quantiser for a Gaussian input (:func:`gaussian_loading_factor`:
    1.60 for 1 bit, 1.99 for 2, 2.68 for 4, 3.94 for 8, 5.01 for 12, 5.94 for 16;
    Max 1960).  JSCC symbols are close to Gaussian; for QAM inputs a fixed ``clip``
    just beyond the outer constellation points may do better.

    Gradient: with ``straight_through=True`` the backward pass treats the quantiser
    as the clipping function ``clip(v, -clip, clip)`` (a clipped straight-through
    estimator, Bengio et al. 2013): gradient 1 inside ``[-clip, clip]``, 0 outside,
    so an encoder trains end to end through the relay.  With ``False`` no gradient
    flows (the staircase's true derivative is zero almost everywhere): evaluation only.

    For the chain's effective SNR the quantiser is modelled as additive noise of
    ``Delta^2 / 12`` per real dimension (:meth:`added_noise_variance`).

    Parameters
    ----------
    bits : int
        Bits per real dimension, 1..16 (``2 * bits`` bits per complex symbol).
    clip : float > 0 or None
        Clip level in amplitude units of the received symbols; ``None`` (default)
        derives it from ``no`` as above.
    straight_through : bool
        Straight-through gradient (default True).

    Input
    -----
    y : [..., S], tf.complex64
        Symbols received by the relay.
    no : float or tf.float32, scalar or broadcastable to ``y``'s leading dimensions
        Noise variance per complex symbol of the hop just received; required when
        ``clip`` is None.

    Output
    ------
    x_next : [..., S], tf.complex64
        Quantised symbols, unit average energy per block.

    Raises
    ------
    ValueError
        If ``bits`` is not an integer in 1..16, ``clip`` is not a positive finite
        number or None, ``straight_through`` is not a bool; if ``no`` is missing
        while ``clip`` is None.
    """

    regenerates = False

    def __init__(self, bits: int, clip: Optional[float] = None, straight_through: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.bits = _check_bits(bits)
        if clip is not None:
            if isinstance(clip, bool) or not isinstance(clip, numbers.Real) or not (0 < clip < math.inf):
                raise ValueError(f"clip must be a positive finite number or None (derived from no), got {clip!r}")
            clip = float(clip)
        self.clip = clip
        if not isinstance(straight_through, (bool, np.bool_)):
            raise ValueError(f"straight_through must be True or False, got {straight_through!r}")
        self.straight_through = bool(straight_through)
        self.levels = 2 ** self.bits

    def clip_amplitude(self, no=None) -> tf.Tensor:
        """The clip level ``clip`` for a hop of noise variance ``no`` (tf.float32, shape of ``no``)."""
        if self.clip is not None:
            c = tf.constant(self.clip, tf.float32)
            return c if no is None else c + tf.zeros_like(_as_no(no))
        if no is None:
            raise ValueError("QuantizeAndForwardRelay(clip=None) derives its clip level from the hop's "
                             "noise variance no; pass no or set clip")
        return _GAUSSIAN_LOADING[self.bits - 1] * tf.sqrt((1.0 + _as_no(no)) / 2.0)

    def step(self, no=None) -> tf.Tensor:
        """The quantiser step ``Delta = 2 clip / 2**bits`` (tf.float32)."""
        return 2.0 * self.clip_amplitude(no) / float(self.levels)

    def added_noise_variance(self, no=None) -> tf.Tensor:
        """Quantisation noise per complex symbol, additive model: ``2 * Delta^2 / 12 = Delta^2 / 6``."""
        return tf.square(self.step(no)) / 6.0

    def quantize_real(self, v, clip) -> tf.Tensor:
        """Mid-rise quantisation of the real tensor ``v`` over ``[-clip, clip]`` (clip broadcastable)."""
        delta = 2.0 * clip / float(self.levels)
        k = tf.clip_by_value(tf.floor((v + clip) / delta), 0.0, float(self.levels - 1))
        q = -clip + (k + 0.5) * delta
        if self.straight_through:
            v_c = tf.minimum(tf.maximum(v, -clip), clip)
            q = v_c + tf.stop_gradient(q - v_c)
        return q

    def call(self, y, no=None):
        y = tf.convert_to_tensor(y)
        c = _broadcast_to(self.clip_amplitude(no), y)
        q_re = self.quantize_real(tf.math.real(y), c)
        q_im = self.quantize_real(tf.math.imag(y), c)
        energy = tf.reduce_mean(tf.square(q_re) + tf.square(q_im), axis=-1, keepdims=True)
        scale = tf.math.rsqrt(tf.maximum(energy, 1e-30))
        return tf.complex(q_re * scale, q_im * scale)

    def get_config(self):
        return {**super().get_config(), "bits": self.bits, "clip": self.clip,
                "straight_through": self.straight_through}


@keras.saving.register_keras_serializable(package="linksim")
class DecodeAndForwardRelay(_ScalarArgsLayer):
    """Decode-and-forward: the scheme's receiver and transmitter regenerate the symbols.

    The relay only calls ``regenerate``; what "decoding" means belongs to the
    scheme: a JSCC scheme decodes the image and re-encodes it, a separation
    scheme LDPC-decodes and re-encodes the bits.

    Contract of ``regenerate(y, no) -> x_next``
    -------------------------------------------
    - ``y`` : ``[..., S]`` tf.complex64, the received symbols with the signal at
      unit gain, ``y = x + n`` (in a chain, the gains of any AF/QF relays since the
      last regeneration are already divided out);
    - ``no`` : tf.float32, scalar or ``[batch]``, the variance of ``n`` per complex
      symbol (the segment's effective noise variance, see :class:`MultiHopChannel`),
      what a demapper or an SNR-aware decoder is given;
    - returns ``x_next`` : ``[..., S]`` tf.complex64, the re-encoded symbols with
      unit average energy, same shape as ``y`` (the destination and later relays
      interpret them as the source's symbols).
    - It must be traceable by ``tf.function`` when the chain is compiled.

    Serialisation: a callable is not part of :meth:`get_config`; a relay restored
    from its config has ``regenerate=None`` and the scheme re-binds it
    (``relay.regenerate = fn``) or passes it to every call
    (``relay(y, no, regenerate=fn)``, as :class:`MultiHopChannel` does).

    Parameters
    ----------
    regenerate : callable ``(y, no) -> x_next`` or None
        Bound regeneration function (default None: pass one at call time).

    Input
    -----
    y : [..., S], tf.complex64
    no : float or tf.float32, scalar or [batch]
    regenerate : callable or None
        Overrides the bound function for this call.

    Output
    ------
    x_next : [..., S], tf.complex64

    Raises
    ------
    TypeError
        If ``regenerate`` is neither callable nor None.
    ValueError
        At call time, if no regeneration function is bound or given, or it returns
        a tensor of another shape than ``y``.
    """

    regenerates = True

    def __init__(self, regenerate: Optional[Callable] = None, **kwargs):
        super().__init__(**kwargs)
        if regenerate is not None and not callable(regenerate):
            raise TypeError(f"regenerate must be a callable (y, no) -> x_next or None, got {regenerate!r}")
        self.regenerate = regenerate

    def added_noise_variance(self, no) -> tf.Tensor:  # pragma: no cover - DF ends a segment
        raise NotImplementedError("a decode-and-forward relay regenerates the signal; it adds no noise model")

    def call(self, y, no, regenerate=None):
        fn = regenerate if regenerate is not None else self.regenerate
        if fn is None:
            raise ValueError("a decode-and-forward relay needs regenerate(y, no) -> x_next: bind it "
                             "(relay.regenerate = fn) or pass it (relay(y, no, regenerate=fn))")
        if not callable(fn):
            raise TypeError(f"regenerate must be a callable (y, no) -> x_next, got {fn!r}")
        x = tf.convert_to_tensor(fn(y, _as_no(no)))
        if x.shape.rank is not None and y.shape.rank is not None and not x.shape.is_compatible_with(y.shape):
            raise ValueError(f"regenerate returned symbols of shape {x.shape}; expected the received "
                             f"shape {y.shape}")
        return tf.cast(x, y.dtype)

    def get_config(self):
        # The callable is deliberately left out (see the class docstring).
        return super().get_config()


RELAY_CLASSES = {"af": AmplifyAndForwardRelay, "df": DecodeAndForwardRelay, "qf": QuantizeAndForwardRelay}
for _name, _cls in RELAY_CLASSES.items():
    RELAYS.register(_name)(_cls)


def make_relay(relay: str, **params) -> keras.layers.Layer:
    """Build the relay registered under ``relay`` ("af", "df", "qf") with options ``params``.

    Parameters
    ----------
    relay : str
        "af", "df" or "qf".
    **params
        The relay's constructor options (and Keras' ``name``).

    Output
    ------
    AmplifyAndForwardRelay, DecodeAndForwardRelay or QuantizeAndForwardRelay

    Raises
    ------
    ValueError
        If ``relay`` is unknown (the message lists af, df, qf) or ``params`` holds
        an option the relay does not take (the message lists those it takes), or
        an option value is invalid.
    """
    try:
        cls = RELAY_CLASSES[relay]
    except (KeyError, TypeError):
        raise ValueError(str(UnknownNameError("relay", relay, list(RELAY_NAMES)))) from None
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
    unknown = sorted(set(params) - set(allowed) - {"name"})
    if unknown:
        raise ValueError(f"relay '{relay}' has no option(s) {', '.join(unknown)} "
                         f"(allowed: {', '.join(allowed) or 'none'})")
    return cls(**params)


# ---------------------------------------------------------------------------- the chain
@CHANNELS.register("multihop")
@keras.saving.register_keras_serializable(package="linksim")
class MultiHopChannel(_ScalarArgsLayer):
    """A chain of ``hops`` AWGN hops with a relay (AF, DF or QF) between every two.

    ``x -> AWGN(snr_1) -> relay 1 -> AWGN(snr_2) -> ... -> relay h-1 -> AWGN(snr_h) -> y``

    Every hop is :class:`~linksim.channels.AWGNChannel` at its own Es/N0
    (``no_i = 10 ** (-snr_db_i / 10)``); every relay sends unit-energy symbols.
    ``hops=1`` is the plain AWGN channel.

    Segments and the destination-equivalent channel
    -----------------------------------------------
    DF relays cut the chain into segments; within a segment AF and QF relays only
    scale (and quantise).  At the end of a segment (a DF relay or the destination)
    the received symbols are ``y = G x + n`` with the known fixed gain
    ``G = prod_j 1 / sqrt(1 + no_j + q_j)`` over the segment's AF/QF relays, where
    ``q_j = Delta_j^2 / 6`` for a QF relay and 0 for AF.  Dividing by ``G`` gives the
    unit-gain channel ``x + n'`` with

        ``1 + no_eff = prod_{hops j of the segment} (1 + no_j + q_j)``   (``q = 0`` on its last hop)

    i.e. ``snr_eff = 1 / no_eff`` obeys ``1 + 1 / snr_eff = prod_j (1 + 1 / snr_j)``
    for AF (:func:`af_effective_snr`; exact for fixed-gain AF, approximate for QF
    and for ``gain="measured"``).  A DF relay receives ``y / G`` and ``no_eff`` of
    its segment.  The destination's output is ``y / G`` as well when
    ``compensate_gain`` is True (default), so ``call`` followed by
    :meth:`noise_variance` is a drop-in for :class:`~linksim.channels.AWGNChannel`
    (``call(x, snr_db)`` then ``noise_variance(snr_db)`` for the demapper).

    Parameters
    ----------
    hops : int
        Number of hops, >= 1 (``hops - 1`` relays).
    relay : str or list of str
        "af", "df" or "qf" for every relay, or a list of ``hops - 1`` names.
    relay_params : dict or None
        Options of the relays: either a flat dict given to every relay
        (``{"bits": 4}``) or a dict keyed by relay name
        (``{"qf": {"bits": 4}, "af": {"gain": "measured"}}``).
    compensate_gain : bool
        Divide the destination's symbols by the known end-to-end gain ``G``
        (default True).  With False the output is the raw ``G x + n`` and a receiver
        divides by :meth:`end_to_end_gain` itself.

    Input
    -----
    x : [..., S], tf.complex64
        Source symbols of unit average energy.
    snr_db : float, list of ``hops`` floats, tf.float32 [hops] or [hops, batch]
        Es/N0 in dB: a scalar for the same SNR on every hop, or one per hop
        (:func:`hop_snrs`).
    regenerate : callable ``(y, no) -> x_next`` or None
        The scheme's regeneration for DF relays (contract in
        :class:`DecodeAndForwardRelay`); called once per DF relay.  Required when
        the chain has a DF relay without a bound function.

    Output
    ------
    y : [..., S], tf.complex64
        The destination's received symbols (``x + n'`` with ``n'`` of variance
        :meth:`noise_variance` when ``compensate_gain``).

    Raises
    ------
    ValueError
        If ``hops`` is not a positive integer; a relay name is not af, df or qf;
        ``relay`` is a list whose length is not ``hops - 1``; ``relay_params``
        holds options a relay does not take; at call time, if ``snr_db`` is not
        one of the forms above or a DF chain is called without ``regenerate``.
    """

    _second_arg = "snr_db"

    def __init__(self, hops: int = 2, relay: Union[str, Sequence[str]] = "af",
                 relay_params: Optional[dict] = None, compensate_gain: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.hops = _check_hops(hops)
        self.relay_names = self._expand_relay_names(relay, self.hops)
        self.relay = relay if isinstance(relay, str) else list(relay)
        if relay_params is not None and not isinstance(relay_params, dict):
            raise ValueError(f"relay_params must be a dict (options for every relay, or keyed by "
                             f"relay name {', '.join(RELAY_NAMES)}) or None, got {relay_params!r}")
        self.relay_params = copy.deepcopy(relay_params) if relay_params else None
        if not isinstance(compensate_gain, (bool, np.bool_)):
            raise ValueError(f"compensate_gain must be True or False, got {compensate_gain!r}")
        self.compensate_gain = bool(compensate_gain)
        self.awgn = AWGNChannel(name="hop_awgn")
        self.relays = [make_relay(n, name=f"relay_{i + 1}_{n}", **self._params_for(n))
                       for i, n in enumerate(self.relay_names)]

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _expand_relay_names(relay, hops: int) -> list[str]:
        if isinstance(relay, str):
            names = [relay] * (hops - 1)
            check = [relay]
        elif isinstance(relay, (list, tuple)):
            if len(relay) != hops - 1:
                raise ValueError(f"relay must be one name for all relays or a list of hops - 1 = {hops - 1} "
                                 f"name(s) (one per relay), got {len(relay)}: {list(relay)!r}")
            names = check = list(relay)
        else:
            raise ValueError(f"relay must be a name ({', '.join(RELAY_NAMES)}) or a list of hops - 1 names, "
                             f"got {relay!r}")
        for n in check:
            if not isinstance(n, str) or n not in RELAY_CLASSES:
                raise ValueError(str(UnknownNameError("relay", n, list(RELAY_NAMES))))
        return names

    def _params_for(self, name: str) -> dict:
        p = self.relay_params or {}
        if any(k in RELAY_NAMES for k in p):
            stray = sorted(k for k in p if k not in RELAY_NAMES)
            if stray:
                raise ValueError(f"relay_params mixes relay names and options ({', '.join(stray)}); use "
                                 f"either options for every relay or a dict keyed by {', '.join(RELAY_NAMES)}")
            p = p.get(name) or {}
            if not isinstance(p, dict):
                raise ValueError(f"relay_params['{name}'] must be a dict of options, got {p!r}")
        return dict(p)

    @property
    def has_df(self) -> bool:
        """Whether any relay of the chain is decode-and-forward."""
        return any(r.regenerates for r in self.relays)

    # ------------------------------------------------------------------ noise bookkeeping
    def hop_noise_variances(self, snr_db) -> list:
        """``no_i = 10 ** (-snr_db_i / 10)`` of every hop, list of ``hops`` tf.float32 tensors."""
        return [snr_db_to_no(s) for s in hop_snrs(snr_db, self.hops)]

    def _last_segment(self) -> int:
        """First hop of the segment that ends at the destination (after the last DF relay)."""
        start = 0
        for i, r in enumerate(self.relays):
            if r.regenerates:
                start = i + 1
        return start

    def effective_no(self, snr_db) -> tf.Tensor:
        """Destination-equivalent noise variance after dividing by the end-to-end gain.

        ``1 + no_eff = prod_j (1 + no_j + q_j)`` over the hops after the last DF
        relay (all hops for AF/QF chains), ``q_j = Delta_j^2 / 6`` for a QF relay
        after hop ``j`` (additive quantisation-noise approximation), 0 for AF and
        for the last hop.  For a chain whose last relay is DF this is the last
        hop's ``no``.

        Input
        -----
        snr_db : as in :meth:`call`

        Output
        ------
        tf.float32, scalar or [batch]
        """
        nos = self.hop_noise_variances(snr_db)
        start = self._last_segment()
        return self._segment_no(nos, start, self.hops - 1)

    def _segment_no(self, nos, start: int, end: int) -> tf.Tensor:
        """``prod_{j=start..end} (1 + no_j + q_j) - 1``, q of the relays after hops start..end-1."""
        prod = 1.0 + nos[end]
        for j in range(start, end):
            prod = prod * (1.0 + nos[j] + self.relays[j].added_noise_variance(nos[j]))
        return prod - 1.0

    def _segment_gain(self, nos, start: int, end: int):
        """``prod_j 1 / sqrt(1 + no_j + q_j)`` over the AF/QF relays after hops start..end-1."""
        g = tf.constant(1.0, tf.float32)
        for j in range(start, end):
            g = g * tf.math.rsqrt(1.0 + nos[j] + self.relays[j].added_noise_variance(nos[j]))
        return g

    def end_to_end_gain(self, snr_db) -> tf.Tensor:
        """The known signal gain ``G`` from the last regeneration (or the source) to the destination.

        ``G = prod_j 1 / sqrt(1 + no_j + q_j)`` over the AF/QF relays after the last
        DF relay; 1 for ``hops=1`` or a DF last relay.  tf.float32, scalar or [batch].
        """
        nos = self.hop_noise_variances(snr_db)
        return self._segment_gain(nos, self._last_segment(), self.hops - 1)

    def noise_variance(self, snr_db) -> tf.Tensor:
        """The ``no`` the destination's demapper is given: :meth:`effective_no`.

        For a chain whose last relay is DF (or ``hops=1``) this is the last hop's
        ``no = 10 ** (-snr_db_h / 10)``; for AF/QF after it, the destination-equivalent
        noise variance of the unit-gain output (``compensate_gain=True``).
        """
        return self.effective_no(snr_db)

    def effective_snr_db(self, snr_db) -> tf.Tensor:
        """``-10 log10(effective_no)``: the destination-equivalent Es/N0 in dB (e.g. for an SNR-aware decoder)."""
        return no_to_snr_db(self.effective_no(snr_db))

    def segment_noise_variances(self, snr_db) -> list:
        """The destination-equivalent ``no`` of every segment between regenerations.

        A segment runs from the source or a DF relay to the next DF relay or the
        destination; its ``no`` is :meth:`effective_no`'s product rule over its hops.
        The last entry is :meth:`effective_no`. List of tf.float32, one per segment.
        """
        nos = self.hop_noise_variances(snr_db)
        starts = [0] + [i + 1 for i, r in enumerate(self.relays) if r.regenerates]
        ends = [s - 1 for s in starts[1:]] + [self.hops - 1]
        return [self._segment_no(nos, a, e) for a, e in zip(starts, ends)]

    # ------------------------------------------------------------------ forward
    def call(self, x, snr_db, regenerate=None):
        snrs = hop_snrs(snr_db, self.hops)
        if regenerate is not None and not callable(regenerate):
            raise ValueError(f"regenerate must be a callable (y, no) -> x_next or None, got {regenerate!r}")
        if regenerate is None and any(r.regenerates and r.regenerate is None for r in self.relays):
            df = [i + 1 for i, r in enumerate(self.relays) if r.regenerates]
            raise ValueError(f"the chain has decode-and-forward relay(s) {df}: call it with "
                             f"regenerate=(y, no) -> x_next (the scheme's decode and re-encode)")
        nos = [snr_db_to_no(s) for s in snrs]
        x = tf.convert_to_tensor(x)
        start = 0                               # first hop of the current segment
        y = x
        for i in range(self.hops):
            y = self.awgn(x, snr_db=snrs[i])
            if i == self.hops - 1:
                break
            relay = self.relays[i]
            if relay.regenerates:
                g = self._segment_gain(nos, start, i)
                y_unit = y / tf.cast(_broadcast_to(g, y), y.dtype)
                x = relay(y_unit, self._segment_no(nos, start, i), regenerate=regenerate)
                start = i + 1
            else:
                x = relay(y, nos[i])
        if self.compensate_gain:
            g = self._segment_gain(nos, start, self.hops - 1)
            y = y / tf.cast(_broadcast_to(g, y), y.dtype)
        return y

    def get_config(self):
        return {**super().get_config(), "hops": self.hops, "relay": _plain(self.relay),
                "relay_params": _plain(self.relay_params), "compensate_gain": self.compensate_gain}
