"""Flat Rayleigh / Rician block fading with the receiver's channel knowledge as an option.

One hop ``r = h x + w``, ``w ~ CN(0, no)``, ``no = 10 ** (-snr_db / 10)`` (Es/N0 per
hop, ``docs/conventions.md``), ``E|h|^2 = 1`` so ``snr_db`` is the *average* Es/N0.
The coefficients come from Sionna's ``GenerateFlatFadingChannel`` (i.i.d. CN(0, 1)),
with a line-of-sight part for a Rician K-factor ``K``:

    ``h = sqrt(K / (K + 1)) + sqrt(1 / (K + 1)) g``,  ``g ~ CN(0, 1)``

(the line-of-sight phase is 0).  ``coherence`` says how long one coefficient lasts:
the whole image (slow, block fading), ``N`` symbols, or one symbol (fast fading).

What the receiver is told (``csi``), the :class:`~linksim.channels.base.Channel` contract:

- ``perfect``: the receiver knows ``h``.  ``y = r / h`` (zero-forcing; for one antenna
  the unbiased LMMSE equaliser of Sionna's ``lmmse_equalizer`` gives the same symbols
  and noise), ``no = no / |h|^2`` per symbol (``[batch]`` when one coefficient covers
  the image, else ``[batch, S]``), and ``snr_db`` the image's effective Es/N0,
  ``10 log10(mean_s |h_s|^2 / no)`` over its used symbols, ``[batch]``.
- ``pilots``: ``pilots`` unit-energy pilot symbols before every coherence block see
  that block's coefficient; the least-squares estimate is their mean,
  ``h_hat = h + e``, ``e ~ CN(0, no / pilots)``.  ``y = r / h_hat`` and
  ``no = no (1 + 1 / pilots) / |h_hat|^2`` (the estimation error counted as noise).
  The pilots cost channel uses: :meth:`pilot_channel_uses`, reported per image.
- ``none``: nothing.  ``y = r``, ``no`` and ``snr_db`` the nominal ones, and
  ``state["csi"] = "none"`` with ``state["coherence"]`` (symbols per block, part of
  the frame structure a receiver knows): a JSCC decoder learns to cope, a coherent
  (QAM) receiver must estimate the channel itself (:mod:`linksim.phy.link`).
"""

from __future__ import annotations

import math
import numbers

import keras
import tensorflow as tf
from sionna.phy.channel import AWGN, GenerateFlatFadingChannel

from linksim.channels.awgn import snr_db_to_no
from linksim.channels.base import Channel, apply_mask, symbol_mask, told_snr_db
from linksim.registry import CHANNELS

__all__ = ["RayleighFadingChannel", "CSI_MODES", "coherence_symbols"]

#: what the receiver knows of the channel
CSI_MODES = ("perfect", "pilots", "none")
#: named coherence lengths
COHERENCE_NAMES = ("image", "symbol")
#: |h|^2 below this is treated as this (a zero-forcing receiver would divide by zero)
_MIN_GAIN = 1e-12


def check_coherence(coherence):
    """``coherence`` checked: "image", "symbol" or a positive integer (symbols per block)."""
    if isinstance(coherence, str) and coherence in COHERENCE_NAMES:
        return coherence
    if isinstance(coherence, numbers.Integral) and not isinstance(coherence, bool) and coherence >= 1:
        return int(coherence)
    raise ValueError(f"coherence must be image, symbol or a positive integer (symbols per coefficient), "
                     f"got {coherence!r}")


def _block_length(coherence, num_symbols):
    """Symbols per coefficient of a checked ``coherence`` (``num_symbols`` an int or a scalar tensor)."""
    return num_symbols if coherence == "image" else 1 if coherence == "symbol" else coherence


def coherence_symbols(coherence, num_symbols: int) -> int:
    """Symbols per fading coefficient for a transmission of ``num_symbols`` symbols.

    Raises
    ------
    ValueError
        If an integer ``coherence`` does not divide ``num_symbols``.
    """
    n = _block_length(check_coherence(coherence), int(num_symbols))
    if num_symbols % n:
        raise ValueError(f"coherence {coherence} does not divide the transmission of {num_symbols} symbols "
                         f"per image; use a divisor of {num_symbols}, image or symbol")
    return n


@CHANNELS.register("rayleigh")
@keras.saving.register_keras_serializable(package="linksim")
class RayleighFadingChannel(Channel):
    """Flat Rayleigh (Rician with ``k_factor > 0``) block fading from Sionna's generator.

    See the module docstring for the model and what each ``csi`` mode tells the receiver.

    Parameters
    ----------
    coherence : "image" | "symbol" | int
        How many symbols one coefficient lasts: the whole image (default; slow fading),
        one symbol (fast fading), or ``N`` symbols (``N`` must divide the transmission).
    k_factor : float
        Rician K-factor, the line-of-sight to scattered power ratio (>= 0; default 0,
        Rayleigh).
    csi : "perfect" | "pilots" | "none"
        What the receiver knows (default "perfect").
    pilots : int
        Pilot symbols per coherence block with ``csi="pilots"`` (default 1).

    Input
    -----
    x : [batch, S], tf.complex64
        Symbols of unit average energy.
    snr_db : float or tf.float32, scalar or [batch]
        Average Es/N0 in dB.
    num_symbols : None or [batch], int32
        Symbols used per image; the output is zero at positions ``>= num_symbols``.

    Output
    ------
    dict (the :class:`~linksim.channels.base.Channel` contract)
        ``y`` : [batch, S] tf.complex64 (equalised with ``perfect`` / ``pilots``);
        ``no`` : tf.float32, scalar, [batch] or [batch, S] (see the module docstring);
        ``snr_db`` : tf.float32, scalar or [batch];
        ``state`` : ``h`` ([batch, S] complex64, with ``perfect``), ``h_hat`` (with
        ``pilots``), ``pilot_symbols`` (pilots per image, with ``pilots``), ``csi`` and
        ``coherence`` (symbols per block).

    Raises
    ------
    ValueError
        For a coherence that is not image, symbol or a positive integer; a negative or
        non-finite K-factor; an unknown CSI mode; ``pilots`` that is not a positive
        integer, or pilots with ``coherence="symbol"`` (a pilot per symbol leaves no
        room for data); at call time, a coherence that does not divide the transmission.
    """

    def __init__(self, coherence="image", k_factor: float = 0.0, csi: str = "perfect", pilots: int = 1,
                 **kwargs):
        super().__init__(**kwargs)
        self.coherence = check_coherence(coherence)
        if isinstance(k_factor, bool) or not isinstance(k_factor, numbers.Real) or not math.isfinite(k_factor) \
                or k_factor < 0:
            raise ValueError(f"k_factor must be a finite number >= 0 (0: Rayleigh), got {k_factor!r}")
        self.k_factor = float(k_factor)
        if csi not in CSI_MODES:
            raise ValueError(f"csi must be one of {', '.join(CSI_MODES)}, got {csi!r}")
        self.csi = csi
        if isinstance(pilots, bool) or not isinstance(pilots, numbers.Integral) or pilots < 1:
            raise ValueError(f"pilots must be a positive integer (pilot symbols per coherence block), got {pilots!r}")
        if csi == "pilots" and self.coherence in ("symbol", 1):
            raise ValueError("csi: pilots needs a coherence block longer than one symbol (coherence: image or N >= 2); "
                             "a pilot per symbol leaves no channel use for data")
        self.pilots = int(pilots)
        self._generate = GenerateFlatFadingChannel(1, 1)
        self._awgn = AWGN()

    def coefficients(self, batch_size, num_blocks) -> tf.Tensor:
        """``[batch_size, num_blocks]`` tf.complex64 fading coefficients with ``E|h|^2 = 1``."""
        g = tf.reshape(self._generate(batch_size * num_blocks), [batch_size, num_blocks])
        if self.k_factor == 0.0:
            return g
        los = math.sqrt(self.k_factor / (self.k_factor + 1.0))
        return tf.cast(los, g.dtype) + tf.cast(math.sqrt(1.0 / (self.k_factor + 1.0)), g.dtype) * g

    def pilot_channel_uses(self, num_symbols: int) -> int:
        """Pilot symbols an image of ``num_symbols`` symbols costs: ``pilots`` per coherence block it
        touches, ``ceil(num_symbols / N)`` blocks (0 unless ``csi="pilots"``; never raises, so a
        transmission shorter than allocated, e.g. a gated scheme's, is counted by what it spent)."""
        if self.csi != "pilots" or num_symbols <= 0:
            return 0
        return self.pilots * -(-int(num_symbols) // _block_length(self.coherence, int(num_symbols)))

    def call(self, x, snr_db, num_symbols=None):
        x = tf.convert_to_tensor(x)
        static = x.shape[-1]
        s = int(static) if static is not None else tf.shape(x)[-1]   # unknown while Keras traces a model
        n = coherence_symbols(self.coherence, s) if static is not None else _block_length(self.coherence, s)
        blocks = s // n
        batch = tf.shape(x)[0]
        hb = self.coefficients(batch, blocks)                                 # [B, blocks]
        h = tf.repeat(hb, n, axis=1)                                          # [B, S]: each block's n symbols
        no = snr_db_to_no(snr_db)
        mask = symbol_mask(num_symbols, x)
        r = self._awgn(h * x, no)
        # the state holds Python values (csi, coherence): fine as long as no compiled function returns it
        state = {"csi": self.csi, "coherence": n}
        if self.csi == "none":
            return {"y": apply_mask(r, mask), "no": no, "snr_db": tf.cast(snr_db, tf.float32), "state": state}
        no_b = no if no.shape.rank == 0 else no[:, tf.newaxis]                  # scalar or [B, 1]
        if self.csi == "perfect":
            known, factor = h, 1.0
            state["h"] = apply_mask(h, mask)
        else:
            hb_hat = self._awgn(hb, no_b / float(self.pilots))                  # mean of the pilots' observations
            known = tf.repeat(hb_hat, n, axis=1)
            factor = 1.0 + 1.0 / self.pilots
            state["h_hat"] = apply_mask(known, mask)
            state["pilot_symbols"] = self.pilots * blocks
        gain = tf.maximum(tf.square(tf.math.real(known)) + tf.square(tf.math.imag(known)), _MIN_GAIN)
        y = apply_mask(r * tf.cast(tf.math.conj(known), r.dtype) / tf.cast(gain, r.dtype), mask)
        no_eff = factor * no_b / gain                                           # [B, S]
        told = told_snr_db(no_eff, mask)
        if self.coherence == "image" or (static is not None and n == s):
            no_eff = no_eff[:, 0]                                               # one coefficient per image: [B]
        return {"y": y, "no": no_eff, "snr_db": told, "state": state}

    def describe(self) -> dict:
        d = super().describe()
        d.update(coherence=self.coherence, k_factor=self.k_factor, csi=self.csi)
        if self.csi == "pilots":
            d["pilots"] = self.pilots
        return d

    def get_config(self):
        return {**super().get_config(), "coherence": self.coherence, "k_factor": self.k_factor, "csi": self.csi,
                "pilots": self.pilots}
