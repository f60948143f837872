"""Multi-hop relay chains: source -> relay 1 -> ... -> relay h-1 -> destination.

Every hop is a channel from the channel registry, by default linksim's
:class:`~linksim.channels.AWGNChannel` (Sionna ``AWGN``) at its own Es/N0
``snr_db`` (``no_i = 10 ** (-snr_db_i / 10)``, unit-energy symbols, see
``docs/conventions.md``).  Between two hops a relay turns what it
received into the symbols it sends on the next hop, again of unit average energy:

``"af"``  :class:`AmplifyAndForwardRelay`
    Rescales the received symbols (fixed expected gain, or measured per block).
``"qf"``  :class:`QuantizeAndForwardRelay`
    Uniform quantisation of the real and imaginary parts, then rescaling
    (straight-through gradient, so a JSCC model trains through it); tuned to
    Gaussian inputs, or to the constellation a digital scheme binds.
``"df"``  :class:`DecodeAndForwardRelay`
    Calls a ``regenerate(y, no)`` callable the scheme binds once
    (``channel.bind(regenerate=fn)``: decode and re-encode); a regeneration that
    reports its block status (``{"x": x_next, "ok": ...}``) reaches the destination
    as ``out["state"]["relay_ok"]``.

The relays come from :data:`linksim.registry.RELAYS` (a plug-in relay registers
there and every chain can use it).  :class:`MultiHopChannel` (registered as
channel ``"multihop"``) chains them and follows the channel contract of
:mod:`linksim.channels.base`.

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
A QF relay tuned to a constellation (digital schemes) is modelled exactly
instead (:meth:`QuantizeAndForwardRelay.constellation_noise`).
"""

from __future__ import annotations

import copy
import functools
import math
import numbers
from typing import Callable, Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf
from sionna.phy.utils import expand_to_rank

from linksim.channels.base import Channel, apply_mask, symbol_mask, told_snr_db
from linksim.registry import CHANNELS, RELAYS, UnknownNameError

__all__ = [
    "AmplifyAndForwardRelay",
    "QuantizeAndForwardRelay",
    "DecodeAndForwardRelay",
    "MultiHopChannel",
    "af_effective_snr",
    "hop_snrs",
    "make_relay",
    "gaussian_loading_factor",
    "aligned_clip",
    "gaussian_bussgang_ratio",
]

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


@functools.lru_cache(maxsize=None)
def gaussian_bussgang_ratio(bits: int) -> float:
    """``E[q^2] / E[q y]^2`` of the default ``bits``-bit quantiser of a unit-variance Gaussian ``y``.

    With the Bussgang decomposition ``q = beta y + d`` (``beta = E[q y]``, ``d``
    uncorrelated with ``y`` and, ``y`` being Gaussian, with the signal in it), a QF
    relay that rescales ``q`` to the energy of ``y`` multiplies the segment's
    ``1 + no`` by this ratio: ``1 + no_j`` becomes ``(1 + no_j) r_b`` (exact, where
    the additive model's ``1 + no_j + Delta^2 / 6`` is not).  ``pi / 2`` for 1 bit,
    1.039 for 3, 1.00009 for 8.  Computed in closed form over the ``2 ** bits`` cells.
    """
    levels = 2 ** _check_bits(bits)
    kappa = _GAUSSIAN_LOADING[bits - 1]
    delta = 2.0 * kappa / levels
    t = -kappa + np.arange(1, levels) * delta
    cdf = np.concatenate([[0.0], 0.5 * (1.0 + np.vectorize(math.erf)(t / math.sqrt(2.0))), [1.0]])
    pdf = np.concatenate([[0.0], np.exp(-t * t / 2.0) / math.sqrt(2.0 * math.pi), [0.0]])
    c = -kappa + (np.arange(levels) + 0.5) * delta
    eq2 = float(np.sum(np.diff(cdf) * c * c))
    eqy = float(np.sum(c * (pdf[:-1] - pdf[1:])))
    return eq2 / (eqy * eqy)


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


def _per_symbol_rank(no) -> tf.Tensor:
    """A hop's ``no`` (scalar, [batch] or [batch, S]) as tf.float32 that broadcasts against [batch, S]:
    [batch] becomes [batch, 1]."""
    no = tf.cast(no, tf.float32)
    return no[:, tf.newaxis] if no.shape.rank == 1 else no


def _per_image(no) -> tf.Tensor:
    """A chain's ``no`` as the contract shows it: [batch, 1] back to [batch] (per-symbol [batch, S] kept)."""
    if no.shape.rank == 2 and no.shape[-1] == 1:
        return no[:, 0]
    return no


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


def _masked_mean_energy(y, mask) -> tf.Tensor:
    """``mean(|y|^2)`` over the used symbols of the last axis (all when ``mask`` is None); [..., 1]."""
    if mask is None:
        return _mean_energy(y)
    p = tf.square(tf.math.real(y)) + tf.square(tf.math.imag(y))
    m = tf.cast(mask, p.dtype)
    return tf.reduce_sum(p * m, axis=-1, keepdims=True) / tf.maximum(tf.reduce_sum(m, axis=-1, keepdims=True), 1.0)


def _phi(z) -> tf.Tensor:
    """Standard normal CDF."""
    return 0.5 * tf.math.erfc(-z / math.sqrt(2.0))


def _per_dimension_values(constellation) -> np.ndarray:
    """The amplitudes one real dimension takes, [2M] float64, scaled to unit average energy per complex symbol."""
    p = np.asarray(constellation, np.complex128).ravel()
    if p.size < 2 or not np.all(np.isfinite(p)):
        raise ValueError(f"constellation must hold at least two finite complex points, got {constellation!r}")
    p = p / np.sqrt(np.mean(np.abs(p) ** 2))
    return np.concatenate([p.real, p.imag])


def aligned_clip(constellation, bits: int) -> Optional[float]:
    """The clip level at which a ``bits``-bit mid-rise quantiser's levels include every constellation amplitude.

    For a square QAM with ``P`` equally spaced amplitudes ``+-a, +-3a, ...`` per real
    dimension and ``L = 2 ** bits >= P`` levels, the step is ``Delta = 2 a / r`` with
    ``r`` the largest odd integer with ``r (P - 1) <= L - 1``, and ``clip = L Delta / 2``:
    the constellation points are level centres, so a noiseless input is reproduced
    exactly (16-QAM, 3 bits: levels ``+-a, +-3a, +-5a, +-7a``, ``a = 1 / sqrt(10)``).

    Output
    ------
    float or None
        None when the amplitudes are not symmetric, equally spaced and even in
        number, or ``L < P`` (the quantiser cannot carry the constellation).
    """
    levels = 2 ** _check_bits(bits)
    u = np.unique(np.round(_per_dimension_values(constellation), 6))
    n = len(u)
    if n < 2 or n % 2 or levels < n:
        return None
    d = np.diff(u)
    if not np.allclose(d, d[0], rtol=1e-4) or not np.allclose(u, -u[::-1], atol=1e-6):
        return None
    r = (levels - 1) // (n - 1)
    if r % 2 == 0:
        r -= 1
    delta = d[0] / r
    return float(levels * delta / 2.0)


# ---------------------------------------------------------------------------- relays
class _ScalarArgsLayer(keras.layers.Layer):
    """A layer whose second argument may be a Python number or list.

    Keras 3 accepts only tensors as positional arguments of ``__call__``; passing the
    second argument on as a keyword lets ``relay(y, 0.1)`` work.
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


class _Relay(_ScalarArgsLayer):
    """What a chain asks of a relay (internal protocol of :class:`MultiHopChannel`).

    - ``regenerates`` : whether the relay ends a segment: it is given the symbols at
      unit signal gain and the segment's noise variance, and :meth:`forward` returns
      ``{"x": x_next, "no_out": ..., "ok": ...}`` (``no_out``: noise of ``x_next``
      relative to a unit-gain signal, None for a clean regeneration; ``ok`` optional);
    - otherwise the relay only scales (and quantises) and :meth:`added_noise_variance`
      gives the noise it adds per complex symbol relative to its unit-energy input;
    - ``differentiable`` : whether gradients pass;
    - :meth:`bind_facts` takes what the scheme binds (``regenerate``, ``constellation``).
    """

    regenerates = False
    differentiable = True

    def bind_facts(self, regenerate=None, constellation=None, **facts) -> bool:
        """Take the scheme's facts; return whether anything changed (default: nothing)."""
        return False

    def forward(self, y, no, num_symbols=None) -> dict:
        return {"x": self.call(y, no, num_symbols=num_symbols)}

    def noise_factor(self, no):
        """The exact factor of ``1 + no_eff`` for this relay, or None where ``1 + no + added`` is exact."""
        return None


@RELAYS.register("af")
@keras.saving.register_keras_serializable(package="linksim")
class AmplifyAndForwardRelay(_Relay):
    """Amplify-and-forward: rescale the received symbols to unit average energy.

    With ``y = g x + w`` received on a hop of noise variance ``no`` (``x`` and the
    relay's input of unit average energy, so ``E|y|^2 = 1 + no``):

    - ``gain="fixed"`` (default): ``x_next = y / sqrt(1 + no)``, the expected
      received energy; signal and noise are scaled alike, the end-to-end SNR obeys
      ``1 + 1 / snr_eff = prod_i (1 + 1 / snr_i)`` (:func:`af_effective_snr`).
    - ``gain="measured"``: ``x_next = y / sqrt(mean |y|^2)`` with the energy
      measured over the used symbols of the last axis (one block, e.g. one image's
      symbols); every block leaves with energy exactly 1.  For long blocks it
      behaves like ``"fixed"``; ``no`` is not needed.

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
    num_symbols : None or [batch] int32
        Symbols used per image; unused positions stay zero.

    Output
    ------
    x_next : [..., S], tf.complex64
        Symbols for the next hop, unit average energy over the used symbols.

    Raises
    ------
    ValueError
        If ``gain`` is not "fixed" or "measured"; if ``no`` is missing with
        ``gain="fixed"``.
    """

    GAINS = ("fixed", "measured")

    def __init__(self, gain: str = "fixed", **kwargs):
        super().__init__(**kwargs)
        if gain not in self.GAINS:
            raise ValueError(f"gain must be one of {', '.join(self.GAINS)}, got {gain!r}")
        self.gain = gain

    def added_noise_variance(self, no) -> tf.Tensor:
        """Noise the relay itself adds per complex symbol (relative to its unit-energy input): 0."""
        return tf.zeros_like(_as_no(no))

    def call(self, y, no=None, num_symbols=None):
        y = tf.convert_to_tensor(y)
        mask = symbol_mask(num_symbols, y)
        if self.gain == "fixed":
            if no is None:
                raise ValueError("AmplifyAndForwardRelay(gain='fixed') needs the hop's noise variance no")
            scale = tf.math.rsqrt(1.0 + _broadcast_to(_as_no(no), y))
        else:
            scale = tf.math.rsqrt(tf.maximum(_masked_mean_energy(y, mask), 1e-30))
        return apply_mask(y * tf.cast(scale, y.dtype), mask)

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}


@RELAYS.register("qf")
@keras.saving.register_keras_serializable(package="linksim")
class QuantizeAndForwardRelay(_Relay):
    """Quantise-and-forward: uniform quantisation of I and Q, then rescaling to unit energy.

    The real and imaginary parts of the received symbols are quantised separately
    by a uniform mid-rise quantiser of ``L = 2 ** bits`` levels over
    ``[-clip, clip]``:

        ``Delta = 2 clip / L``
        ``k = min(max(floor((v + clip) / Delta), 0), L - 1)``
        ``Q(v) = -clip + (k + 1/2) Delta``            (levels +-Delta/2, +-3 Delta/2, ...)

    so values beyond ``+-clip`` go to the outermost levels.  What the quantiser is
    tuned for follows what the relay carries:

    Gaussian input (JSCC symbols; the default when no constellation is known)
        ``clip = kappa_b * sqrt((1 + no) / 2)``, ``kappa_b`` standard deviations of one
        real dimension of the received symbols, the loading factor of the
        MSE-optimal uniform quantiser of a Gaussian (:func:`gaussian_loading_factor`:
        1.60 for 1 bit, 2.68 for 4, 3.94 for 8; Max 1960).  The quantised symbols are
        rescaled by their energy measured over the used symbols of the block, and the
        chain models the quantiser as additive noise ``q = Delta^2 / 6`` per complex
        symbol (:meth:`added_noise_variance`).
    A known constellation (bound by a digital scheme: ``channel.bind(constellation=points)``,
    or the ``constellation`` option)
        The relay receives the symbols at unit signal gain with the segment's noise
        variance (like a decode-and-forward relay) and uses the clip of
        :func:`aligned_clip`, whose levels include every constellation amplitude, so
        a clean 16-QAM point leaves the relay unchanged (a 3-bit quantiser then acts
        as a per-dimension hard decision; 4 bits keep 5 levels between neighbours).
        The noise model is exact for "constellation point + Gaussian noise": with
        ``q = Q(x + n)`` and the Bussgang decomposition ``q = beta x + d``,
        ``beta = E[q x] / E[x^2]``, the relay sends ``q / sqrt(E|q|^2)`` (expected
        energy, so a clean constellation keeps its geometry) and the receiver's
        noise variance relative to a unit-gain signal is ``E|q|^2 / beta^2 - 1``
        (:meth:`constellation_noise`; computed with the Gaussian CDF over all
        ``2 ** bits`` cells for ``bits <= 8``, approximated by ``no + Delta^2 / 6``
        above).  Constellations the quantiser cannot carry (``2 ** bits`` below the
        amplitudes per dimension, unequal spacing) keep the Gaussian clip with this
        exact noise model.

    Gradient: with ``straight_through=True`` the backward pass treats the quantiser
    as the clipping function ``clip(v, -clip, clip)`` (a clipped straight-through
    estimator, Bengio et al. 2013): gradient 1 inside ``[-clip, clip]``, 0 outside,
    so an encoder trains end to end through the relay.  With ``False`` no gradient
    flows (the staircase's true derivative is zero almost everywhere): evaluation only.

    Parameters
    ----------
    bits : int
        Bits per real dimension, 1..16 (``2 * bits`` bits per complex symbol).
    clip : float > 0 or None
        Clip level in amplitude units of the received symbols; ``None`` (default)
        derives it as above.  A fixed clip applies to the Gaussian mode only.
    straight_through : bool
        Straight-through gradient (default True).
    constellation : None, "gaussian" or list of [re, im] pairs
        What the relay carries: None (default) follows what the scheme binds
        (Gaussian when nothing is bound); "gaussian" keeps the Gaussian tuning
        whatever is bound; a list of points fixes the constellation.

    Input
    -----
    y : [..., S], tf.complex64
        Symbols received by the relay.
    no : float or tf.float32, scalar or broadcastable to ``y``'s leading dimensions
        Noise variance per complex symbol of the hop just received; required when
        ``clip`` is None.
    num_symbols : None or [batch] int32
        Symbols used per image: the energy is measured over them and the unused
        positions stay zero.

    Output
    ------
    x_next : [..., S], tf.complex64
        Quantised symbols, unit average energy over the used symbols.

    Raises
    ------
    ValueError
        If ``bits`` is not an integer in 1..16, ``clip`` is not a positive finite
        number or None, ``straight_through`` is not a bool, ``constellation`` is
        none of the forms above; if ``no`` is missing while ``clip`` is None.
    """

    def __init__(self, bits: int, clip: Optional[float] = None, straight_through: bool = True,
                 constellation=None, **kwargs):
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
        self.constellation = self._check_constellation(constellation)
        self._points = None if self.constellation in (None, "gaussian") else \
            np.array([complex(re, im) for re, im in self.constellation])

    @staticmethod
    def _check_constellation(c):
        bad = (f"constellation must be None (follow the scheme), 'gaussian', or a list of [re, im] "
               f"points; got {c!r}")
        if c is None or c == "gaussian":
            return c
        if isinstance(c, str):
            raise ValueError(bad)
        try:
            pts = [[float(p[0]), float(p[1])] for p in _plain(c)]
        except (TypeError, ValueError, IndexError):
            raise ValueError(bad) from None
        _per_dimension_values([complex(a, b) for a, b in pts])
        return pts

    # ------------------------------------------------------------------ what the relay carries
    @property
    def differentiable(self) -> bool:
        return self.straight_through

    def bind_facts(self, regenerate=None, constellation=None, **facts) -> bool:
        if constellation is None or self.constellation is not None:
            return False
        self._points = np.asarray(constellation, np.complex128).ravel()
        _per_dimension_values(self._points)
        return True

    @property
    def regenerates(self) -> bool:
        """True when tuned to a constellation: it then works on unit-gain symbols like a DF relay."""
        return self._points is not None

    def _values(self) -> tf.Tensor:
        return tf.constant(_per_dimension_values(self._points), tf.float32)

    # ------------------------------------------------------------------ levels and noise
    def clip_amplitude(self, no=None) -> tf.Tensor:
        """The clip level ``clip`` for a hop of noise variance ``no`` (tf.float32, shape of ``no``)."""
        if self._points is not None:
            c = aligned_clip(self._points, self.bits)
            if c is not None:
                c = tf.constant(c, tf.float32)
                return c if no is None else c + tf.zeros_like(_as_no(no))
        elif self.clip is not None:
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
        """Gaussian mode: quantisation noise per complex symbol, additive model ``2 * Delta^2 / 12 = Delta^2 / 6``."""
        return tf.square(self.step(no)) / 6.0

    def constellation_noise(self, no) -> dict:
        """Constellation mode: the quantiser's output statistics for ``x + n``, ``n ~ CN(0, no)``.

        Input
        -----
        no : tf.float32, scalar or [batch], noise variance of the unit-gain input

        Output
        ------
        dict with ``energy`` ``E|q|^2`` and ``no_out`` ``E|q|^2 / beta^2 - 1`` (tf.float32, shape of ``no``)
        """
        no = _as_no(no)
        clip = self.clip_amplitude(no)
        delta = 2.0 * clip / float(self.levels)
        if self.bits > 8:   # fine quantiser: additive uniform error, no overload at the aligned clip
            no_out = no + tf.square(delta) / 6.0
            return {"energy": 1.0 + no_out, "no_out": no_out}
        mu = self._values()                                             # [V]
        sigma = tf.sqrt(tf.maximum(no, 1e-20) / 2.0)[..., None, None]   # [..., 1, 1]
        c0, d = clip[..., None, None], delta[..., None, None]
        t = -c0 + tf.range(1, self.levels, dtype=tf.float32) * d        # [..., 1, L-1]
        cdf = _phi((t - mu[:, None]) / sigma)                           # [..., V, L-1]
        cdf = tf.concat([tf.zeros_like(cdf[..., :1]), cdf, tf.ones_like(cdf[..., :1])], axis=-1)
        p = cdf[..., 1:] - cdf[..., :-1]                                # [..., V, L]
        lv = -c0 + (tf.range(self.levels, dtype=tf.float32) + 0.5) * d  # [..., 1, L]
        eq = tf.reduce_sum(p * lv, axis=-1)                             # [..., V]  E[q | mu]
        eq2 = tf.reduce_mean(tf.reduce_sum(p * tf.square(lv), axis=-1), axis=-1)
        ex2 = tf.reduce_mean(tf.square(mu))
        beta = tf.reduce_mean(eq * mu, axis=-1) / ex2
        energy = 2.0 * eq2                                              # per complex symbol (E|x|^2 = 1)
        return {"energy": energy, "no_out": energy / tf.maximum(tf.square(beta), 1e-30) - 1.0}

    def noise_factor(self, no):
        """Gaussian mode with the default clip: ``(1 + no) r_b`` (:func:`gaussian_bussgang_ratio`), exact.

        None (the additive model) for a fixed ``clip``, whose ratio depends on ``no``.
        """
        if self._points is not None or self.clip is not None:
            return None
        return (1.0 + _as_no(no)) * gaussian_bussgang_ratio(self.bits)

    def quantize_real(self, v, clip) -> tf.Tensor:
        """Mid-rise quantisation of the real tensor ``v`` over ``[-clip, clip]`` (clip broadcastable)."""
        delta = 2.0 * clip / float(self.levels)
        k = tf.clip_by_value(tf.floor((v + clip) / delta), 0.0, float(self.levels - 1))
        q = -clip + (k + 0.5) * delta
        if self.straight_through:
            v_c = tf.minimum(tf.maximum(v, -clip), clip)
            q = v_c + tf.stop_gradient(q - v_c)
        return q

    def forward(self, y, no=None, num_symbols=None) -> dict:
        y = tf.convert_to_tensor(y)
        mask = symbol_mask(num_symbols, y)
        c = _broadcast_to(self.clip_amplitude(no), y)
        q_re = self.quantize_real(tf.math.real(y), c)
        q_im = self.quantize_real(tf.math.imag(y), c)
        if self._points is None:
            energy = _masked_mean_energy(tf.complex(q_re, q_im), mask)
            scale = tf.math.rsqrt(tf.maximum(energy, 1e-30))
            return {"x": apply_mask(tf.complex(q_re * scale, q_im * scale), mask)}
        stats = self.constellation_noise(no)
        scale = _broadcast_to(tf.math.rsqrt(tf.maximum(stats["energy"], 1e-30)), y)
        return {"x": apply_mask(tf.complex(q_re * scale, q_im * scale), mask), "no_out": stats["no_out"]}

    def call(self, y, no=None, num_symbols=None):
        return self.forward(y, no, num_symbols=num_symbols)["x"]

    def get_config(self):
        return {**super().get_config(), "bits": self.bits, "clip": self.clip,
                "straight_through": self.straight_through, "constellation": _plain(self.constellation)}


@RELAYS.register("df")
@keras.saving.register_keras_serializable(package="linksim")
class DecodeAndForwardRelay(_Relay):
    """Decode-and-forward: the scheme's receiver and transmitter regenerate the symbols.

    The relay only calls ``regenerate``; what "decoding" means belongs to the
    scheme: a JSCC scheme decodes the image and re-encodes it, a separation
    scheme LDPC-decodes and re-encodes the bits.

    Contract of ``regenerate(y, no)``
    ---------------------------------
    - ``y`` : ``[..., S]`` tf.complex64, the received symbols with the signal at
      unit gain, ``y = x + n`` (in a chain, the gains of any AF/QF relays since the
      last regeneration are already divided out);
    - ``no`` : tf.float32, scalar, ``[batch]`` or ``[batch, S]`` (fading hops with a
      coefficient shorter than an image), the variance of ``n`` per complex symbol (the
      segment's effective noise variance, see :class:`MultiHopChannel`), what a demapper
      is given (an SNR-aware decoder is told :func:`~linksim.channels.base.told_snr_db`);
    - returns ``x_next`` : ``[..., S]`` tf.complex64, the re-encoded symbols with
      unit average energy, same shape as ``y``, or a dict ``{"x": x_next, "ok":
      [batch, ...] tf.bool}`` when the scheme can tell whether it decoded each block
      correctly (an LDPC parity check): the chain reports ``ok`` to the destination
      as ``out["state"]["relay_ok"]``, so a block the relay failed to decode is
      counted as failed even though its re-encoded codeword is valid;
    - it must be traceable by ``tf.function`` when the chain is compiled.

    The scheme binds it once (``channel.bind(regenerate=fn)``, which sets
    :attr:`regenerate` on a copy of the chain's DF relays); a callable is not part
    of :meth:`get_config`, so a relay restored from its config is unbound.

    Parameters
    ----------
    regenerate : callable or None
        Bound regeneration function (default None: bound later).

    Input
    -----
    y : [..., S], tf.complex64
    no : float or tf.float32, scalar or [batch]
    num_symbols : None or [batch] int32
        Symbols used per image; unused positions of ``x_next`` are set to zero.

    Output
    ------
    x_next : [..., S], tf.complex64

    Raises
    ------
    TypeError
        If ``regenerate`` is neither callable nor None.
    ValueError
        At call time, if no regeneration function is bound, or it returns a tensor
        of another shape than ``y``.
    """

    regenerates = True
    differentiable = False

    def __init__(self, regenerate: Optional[Callable] = None, **kwargs):
        super().__init__(**kwargs)
        if regenerate is not None and not callable(regenerate):
            raise TypeError(f"regenerate must be a callable (y, no) -> x_next or None, got {regenerate!r}")
        self.regenerate = regenerate

    def bind_facts(self, regenerate=None, constellation=None, **facts) -> bool:
        if regenerate is None:
            return False
        if not callable(regenerate):
            raise TypeError(f"regenerate must be a callable (y, no) -> x_next or None, got {regenerate!r}")
        self.regenerate = regenerate
        return True

    def forward(self, y, no, num_symbols=None) -> dict:
        if self.regenerate is None:
            raise ValueError("a decode-and-forward relay needs regenerate(y, no) -> x_next: bind it with "
                             "channel.bind(regenerate=fn) (the scheme does so when it is prepared)")
        out = self.regenerate(y, _as_no(no))
        ok = None
        if isinstance(out, dict):
            if "x" not in out:
                raise ValueError(f"regenerate returned a dict without 'x' (keys: {sorted(out)}); "
                                 f"return x_next or {{'x': x_next, 'ok': block_ok}}")
            ok = out.get("ok")
            out = out["x"]
        x = tf.convert_to_tensor(out)
        if x.shape.rank is not None and y.shape.rank is not None and not x.shape.is_compatible_with(y.shape):
            raise ValueError(f"regenerate returned symbols of shape {x.shape}; expected the received "
                             f"shape {y.shape}")
        x = apply_mask(tf.cast(x, y.dtype), symbol_mask(num_symbols, y))
        return {"x": x} if ok is None else {"x": x, "ok": tf.cast(ok, tf.bool)}

    def call(self, y, no, num_symbols=None):
        return self.forward(y, no, num_symbols=num_symbols)["x"]

    def get_config(self):
        # The callable is deliberately left out (see the class docstring).
        return super().get_config()


def make_relay(relay: str, **params) -> keras.layers.Layer:
    """Build the relay registered under ``relay`` in :data:`linksim.registry.RELAYS` with options ``params``.

    Parameters
    ----------
    relay : str
        A registered relay name ("af", "df", "qf", or a plug-in's).
    **params
        The relay's constructor options (and Keras' ``name``).

    Output
    ------
    keras.layers.Layer
        The relay.

    Raises
    ------
    ValueError
        If ``relay`` is unknown (the message lists the registered relays) or
        ``params`` holds an option the relay does not take (the message lists
        those it takes), or an option value is invalid.
    """
    try:
        cls = RELAYS.get(relay)
    except UnknownNameError as e:
        raise ValueError(str(e)) from None
    RELAYS.check_options(relay, params, ignore=("name",))
    return cls(**params)


# ---------------------------------------------------------------------------- the chain
@CHANNELS.register("multihop")
@keras.saving.register_keras_serializable(package="linksim")
class MultiHopChannel(Channel):
    """A chain of ``hops`` hops with a relay (AF, DF, QF or any registered relay) between every two.

    ``x -> hop 1 (snr_1) -> relay 1 -> hop 2 (snr_2) -> ... -> relay h-1 -> hop h (snr_h) -> y``

    Every hop is a channel from the channel registry (``hop``, default ``{"type":
    "awgn"}``: :class:`~linksim.channels.AWGNChannel` at its own Es/N0) that
    returns its received symbols at unit gain and its noise variance ``no_i``;
    every relay sends unit-energy symbols.  ``hops=1`` is the hop channel itself.

    Segments and the destination-equivalent channel
    -----------------------------------------------
    Regenerating relays (DF, and QF tuned to a constellation) cut the chain into
    segments; within a segment AF and Gaussian-mode QF relays only scale (and
    quantise).  At the end of a segment (a regenerating relay or the destination)
    the received symbols are ``y = G x + n`` with the known gain
    ``G = prod_j 1 / sqrt(1 + no_j + q_j)`` over the segment's AF/QF relays, where
    ``q_j = Delta_j^2 / 6`` for a Gaussian-mode QF relay and 0 for AF.  Dividing by
    ``G`` gives the unit-gain channel ``x + n'`` with

        ``1 + no_eff = (1 + v) prod_{hops j of the segment} (1 + no_j + q_j)``   (``q = 0`` on its last hop)

    where ``v`` is the noise the regenerating relay that starts the segment passes
    on (0 for the source and a DF relay, :meth:`QuantizeAndForwardRelay.constellation_noise`
    for a constellation-mode QF relay, whose output gain ``1 / sqrt(1 + v)`` is part
    of ``G``).  For AF, ``snr_eff = 1 / no_eff`` obeys ``1 + 1 / snr_eff = prod_j (1 + 1 / snr_j)``
    (:func:`af_effective_snr`; exact for fixed-gain AF, approximate for
    ``gain="measured"`` and Gaussian-mode QF).  A regenerating relay receives
    ``y / G`` and ``no_eff`` of its segment.  The destination's output is ``y / G``
    as well when ``compensate_gain`` is True (default).

    Parameters
    ----------
    hops : int
        Number of hops, >= 1 (``hops - 1`` relays).
    relay : str or list of str
        A registered relay name ("af", "df", "qf") for every relay, or a list of ``hops - 1`` names.
    relay_params : dict or None
        Options of the relays: either a flat dict given to every relay
        (``{"bits": 4}``) or a dict keyed by relay name
        (``{"qf": {"bits": 4}, "af": {"gain": "measured"}}``).
    hop : dict, list of dicts or None
        The hop channel(s) from the channel registry, ``{"type": name, **options}``:
        one dict for every hop or a list of ``hops`` dicts; None (default) is
        ``{"type": "awgn"}``.
    compensate_gain : bool
        Divide the destination's symbols by the known end-to-end gain ``G``
        (default True).  With False the output is the raw ``G x + n`` and ``G`` is
        ``out["state"]["gain"]``.

    Input
    -----
    x : [batch, S], tf.complex64
        Source symbols of unit average energy (over the used symbols).
    snr_db : float, list of ``hops`` floats, tf.float32 [hops] or [hops, batch]
        Es/N0 in dB: a scalar for the same SNR on every hop, or one per hop
        (:func:`hop_snrs`).
    num_symbols : None or [batch] int32
        Symbols used per image; unused positions are zero at every hop's output.

    Output
    ------
    dict (the :class:`~linksim.channels.base.Channel` contract)
        ``y`` : [batch, S] tf.complex64, the destination's symbols (``x + n'`` when
        ``compensate_gain``);
        ``no`` : ``no_eff`` of the last segment (per symbol, ``[batch, S]``, when a fading hop's
        coefficient is shorter than an image); ``snr_db`` : ``-10 log10(no_eff)``, or the
        image's effective SNR ``10 log10(mean_s 1 / no_eff_s)`` for a per-symbol ``no_eff``;
        ``state`` : ``hop_no`` (list of every hop's ``no``), ``segment_no`` (list,
        ``no_eff`` of every segment, the last one is ``no``), ``gain`` (``G``),
        ``hop_state`` (list of every hop's own ``state``, e.g. fading coefficients), and
        ``relay_ok`` ([batch, ...] tf.bool, the AND of the block statuses the DF
        relays' ``regenerate`` reported) when a relay reported one.

    Raises
    ------
    ValueError
        If ``hops`` is not a positive integer; a relay or hop name is not
        registered; ``relay`` or ``hop`` is a list whose length is not ``hops - 1``
        or ``hops``; ``relay_params`` holds options a relay does not take; at call
        time, if ``snr_db`` is not one of the forms above or a DF relay is unbound.
    """

    def __init__(self, hops: int = 2, relay: Union[str, Sequence[str]] = "af",
                 relay_params: Optional[dict] = None, compensate_gain: bool = True,
                 hop: Union[dict, Sequence[dict], None] = None, **kwargs):
        super().__init__(**kwargs)
        self.hops = _check_hops(hops)
        self.relay_names = self._expand_relay_names(relay, self.hops)
        self.relay = relay if isinstance(relay, str) else list(relay)
        if relay_params is not None and not isinstance(relay_params, dict):
            raise ValueError(f"relay_params must be a dict (options for every relay, or keyed by "
                             f"relay name {', '.join(RELAYS.names())}) or None, got {relay_params!r}")
        self.relay_params = copy.deepcopy(relay_params) if relay_params else None
        if not isinstance(compensate_gain, (bool, np.bool_)):
            raise ValueError(f"compensate_gain must be True or False, got {compensate_gain!r}")
        self.compensate_gain = bool(compensate_gain)
        self.hop = copy.deepcopy(_plain(hop)) if hop is not None else None
        self.hop_channels = [self._make_hop(spec, i) for i, spec in enumerate(self._expand_hops(hop, self.hops))]
        self.relays = [make_relay(n, name=f"relay_{i + 1}_{n}", **self._params_for(n))
                       for i, n in enumerate(self.relay_names)]

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _expand_relay_names(relay, hops: int) -> list[str]:
        names = RELAYS.names()
        if isinstance(relay, str):
            out, check = [relay] * (hops - 1), [relay]
        elif isinstance(relay, (list, tuple)):
            if len(relay) != hops - 1:
                raise ValueError(f"relay must be one name for all relays or a list of hops - 1 = {hops - 1} "
                                 f"name(s) (one per relay), got {len(relay)}: {list(relay)!r}")
            out = check = list(relay)
        else:
            raise ValueError(f"relay must be a name ({', '.join(names)}) or a list of hops - 1 names, "
                             f"got {relay!r}")
        for n in check:
            if not isinstance(n, str) or n not in names:
                raise ValueError(str(UnknownNameError("relay", n, names)))
        return out

    @staticmethod
    def _expand_hops(hop, hops: int) -> list[dict]:
        forms = "a dict {type: <channel>, ...options} for every hop, a list of one per hop, or None (awgn)"
        if hop is None:
            return [{"type": "awgn"}] * hops
        if isinstance(hop, dict):
            specs = [hop] * hops
        elif isinstance(hop, (list, tuple)):
            if len(hop) != hops:
                raise ValueError(f"hop must be {forms}; got a list of {len(hop)} for {hops} hop(s)")
            specs = list(hop)
        else:
            raise ValueError(f"hop must be {forms}; got {hop!r}")
        for s in specs:
            if not isinstance(s, dict) or "type" not in s:
                raise ValueError(f"hop must be {forms}; got {s!r}")
        return [dict(s) for s in specs]

    @staticmethod
    def _make_hop(spec: dict, i: int) -> Channel:
        params = {k: v for k, v in _plain(spec).items() if k != "type"}
        kind = spec["type"]
        if kind == "multihop":
            raise ValueError("a hop must be a one-hop channel (awgn, or a registered fading channel), "
                             "not multihop")
        try:
            cls = CHANNELS.get(kind)
        except UnknownNameError as e:
            raise ValueError(str(e)) from None
        CHANNELS.check_options(kind, params, ignore=("name",))
        return cls(name=f"hop_{i + 1}_{kind}", **params)

    def _params_for(self, name: str) -> dict:
        p = self.relay_params or {}
        names = RELAYS.names()
        if any(k in names for k in p):
            stray = sorted(k for k in p if k not in names)
            if stray:
                raise ValueError(f"relay_params mixes relay names and options ({', '.join(stray)}); use "
                                 f"either options for every relay or a dict keyed by {', '.join(names)}")
            p = p.get(name) or {}
            if not isinstance(p, dict):
                raise ValueError(f"relay_params['{name}'] must be a dict of options, got {p!r}")
        return dict(p)

    # ------------------------------------------------------------------ contract: bind, describe
    @property
    def differentiable(self) -> bool:
        """Whether gradients pass every hop and relay (False with a DF relay)."""
        return all(r.differentiable for r in self.relays) and all(h.differentiable for h in self.hop_channels)

    def bind(self, regenerate=None, **facts) -> "MultiHopChannel":
        """A copy whose DF relays call ``regenerate`` and whose relays and hops know ``facts``.

        ``constellation`` tunes Gaussian-default QF relays to the scheme's
        modulation (see :class:`QuantizeAndForwardRelay`).  Returns ``self`` when
        no relay or hop uses what is bound.
        """
        if regenerate is not None and not callable(regenerate):
            raise TypeError(f"regenerate must be a callable (y, no) -> x_next or None, got {regenerate!r}")
        if regenerate is None and not facts:
            return self
        new = type(self).from_config(self.get_config())
        changed = [r.bind_facts(regenerate=regenerate, **facts) for r in new.relays]
        bound_hops = [h.bind(**facts) for h in new.hop_channels]
        hop_changed = any(b is not h for b, h in zip(bound_hops, new.hop_channels))
        new.hop_channels = bound_hops
        return new if any(changed) or hop_changed else self

    def describe(self) -> dict:
        return {"type": "multihop", "hops": self.hops, "relays": list(self.relay_names),
                "hop_types": [h.describe()["type"] for h in self.hop_channels],
                "relay_params": _plain(self.relay_params), "compensate_gain": self.compensate_gain}

    # ------------------------------------------------------------------ noise bookkeeping
    def _segment_no(self, nos, start: int, end: int, start_no=None) -> tf.Tensor:
        """``(1 + v) prod_{j=start..end} (1 + no_j + q_j) - 1``, q of the relays after hops start..end-1.

        Where a relay of the segment knows its exact factor (a Gaussian-mode QF relay,
        :meth:`QuantizeAndForwardRelay.noise_factor`), the segment's true gain ``G_t``
        and noise ``no_t`` follow from the exact factors, and the noise variance of
        ``y / G`` (divided by the additive model's gain ``G``, as the chain does) is
        ``(rho - 1)^2 + rho^2 no_t`` with ``rho = G_t / G``.
        """
        prod = 1.0 + nos[end]
        for j in range(start, end):
            prod = prod * (1.0 + nos[j] + self.relays[j].added_noise_variance(nos[j]))
        if start_no is not None:
            prod = prod * (1.0 + start_no)
        exact = [self.relays[j].noise_factor(nos[j]) for j in range(start, end)]
        if all(f is None for f in exact):
            return prod - 1.0
        true_prod, ratio = 1.0 + nos[end], tf.constant(1.0, tf.float32)   # ratio = (G / G_t)^2
        for j, f in zip(range(start, end), exact):
            model = 1.0 + nos[j] + self.relays[j].added_noise_variance(nos[j])
            true_prod = true_prod * (model if f is None else f)
            if f is not None:
                ratio = ratio * f / model
        if start_no is not None:
            true_prod = true_prod * (1.0 + start_no)
        rho = tf.math.rsqrt(ratio)
        return tf.square(rho - 1.0) + tf.square(rho) * (true_prod - 1.0)

    def _segment_gain(self, nos, start: int, end: int, start_no=None):
        """``rsqrt(1 + v) prod_j 1 / sqrt(1 + no_j + q_j)`` over the AF/QF relays after hops start..end-1."""
        g = tf.constant(1.0, tf.float32)
        for j in range(start, end):
            g = g * tf.math.rsqrt(1.0 + nos[j] + self.relays[j].added_noise_variance(nos[j]))
        if start_no is not None:
            g = g * tf.math.rsqrt(1.0 + start_no)
        return g

    # ------------------------------------------------------------------ forward
    def call(self, x, snr_db, num_symbols=None):
        snrs = hop_snrs(snr_db, self.hops)
        x = tf.convert_to_tensor(x)
        nos, segment_nos, oks, hop_states = [], [], [], []
        start, start_no = 0, None         # first hop of the current segment, noise its regenerator passed on
        y = x
        for i in range(self.hops):
            out = self.hop_channels[i](x, snr_db=snrs[i], num_symbols=num_symbols)
            y = out["y"]
            nos.append(_per_symbol_rank(out["no"]))
            hop_states.append(out["state"])
            if i == self.hops - 1:
                break
            relay = self.relays[i]
            if relay.regenerates:
                g = self._segment_gain(nos, start, i, start_no)
                y_unit = y / tf.cast(_broadcast_to(g, y), y.dtype)
                no_seg = _per_image(self._segment_no(nos, start, i, start_no))
                segment_nos.append(no_seg)
                r = relay.forward(y_unit, no_seg, num_symbols=num_symbols)
                x = r["x"]
                if r.get("ok") is not None:
                    oks.append(r["ok"])
                no_out = r.get("no_out")
                start, start_no = i + 1, (None if no_out is None else _per_symbol_rank(no_out))
            else:
                x = relay(y, nos[i], num_symbols=num_symbols)
        no = _per_image(self._segment_no(nos, start, self.hops - 1, start_no))
        segment_nos.append(no)
        g = self._segment_gain(nos, start, self.hops - 1, start_no)
        if self.compensate_gain:
            y = y / tf.cast(_broadcast_to(g, y), y.dtype)
        state = {"hop_no": [_per_image(n) for n in nos], "segment_no": segment_nos, "gain": _per_image(g),
                 "hop_state": hop_states}
        if oks:
            ok = oks[0]
            for o in oks[1:]:
                ok = tf.logical_and(ok, o)
            state["relay_ok"] = ok
        return {"y": y, "no": no, "snr_db": told_snr_db(no, symbol_mask(num_symbols, y)), "state": state}

    def pilot_channel_uses(self, num_symbols: int) -> int:
        """The pilots of every hop: each hop estimates its own channel."""
        return sum(h.pilot_channel_uses(num_symbols) for h in self.hop_channels)

    def get_config(self):
        cfg = {**super().get_config(), "hops": self.hops, "relay": _plain(self.relay),
               "relay_params": _plain(self.relay_params), "compensate_gain": self.compensate_gain}
        if self.hop is not None:
            # only when set: the JSCC model store hashes this config, and chains saved before
            # ``hop`` existed (all AWGN) must keep their keys
            cfg["hop"] = _plain(self.hop)
        return cfg
