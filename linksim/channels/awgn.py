"""The AWGN channel with the signal conventions of linksim.

Conventions (``docs/conventions.md``): complex baseband, transmitted symbols of
unit average energy, SNR = Es/N0 in dB per hop, noise variance per complex symbol
``no = 10 ** (-snr_db / 10)`` handed to Sionna's ``AWGN`` (which splits it equally
between the real and imaginary parts).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from sionna.phy.channel import AWGN

from linksim.channels.base import Channel, apply_mask, symbol_mask
from linksim.registry import CHANNELS

__all__ = ["AWGNChannel", "snr_db_to_no", "no_to_snr_db"]


def snr_db_to_no(snr_db) -> tf.Tensor:
    """Noise variance per complex symbol for unit-energy symbols at Es/N0 ``snr_db`` [dB]."""
    return tf.pow(tf.constant(10.0, tf.float32), -tf.cast(snr_db, tf.float32) / 10.0)


def no_to_snr_db(no) -> tf.Tensor:
    """Es/N0 in dB of unit-energy symbols with noise variance ``no``: the inverse of :func:`snr_db_to_no`."""
    return -10.0 * tf.math.log(tf.cast(no, tf.float32)) / tf.math.log(10.0)


@CHANNELS.register("awgn")
@keras.saving.register_keras_serializable(package="linksim")
class AWGNChannel(Channel):
    """Additive white Gaussian noise at Es/N0 ``snr_db`` per hop (Sionna ``AWGN``).

    Input
    -----
    x : [batch, S], tf.complex64
        Symbols of unit average energy (over the used symbols).
    snr_db : float or tf.float32, scalar or [batch]
        Es/N0 in dB.
    num_symbols : None or [batch], int32
        Symbols used per image; the output is zero at positions ``>= num_symbols``.

    Output
    ------
    dict (the :class:`~linksim.channels.base.Channel` contract)
        ``y`` : ``x + w``, ``w ~ CN(0, no)``, [batch, S] tf.complex64;
        ``no`` : ``10 ** (-snr_db / 10)``, tf.float32, shape of ``snr_db``;
        ``snr_db`` : ``snr_db`` as tf.float32;
        ``state`` : ``{}``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._awgn = AWGN()

    def call(self, x, snr_db, num_symbols=None):
        no = snr_db_to_no(snr_db)
        y = apply_mask(self._awgn(x, no), symbol_mask(num_symbols, x))
        return {"y": y, "no": no, "snr_db": tf.cast(snr_db, tf.float32), "state": {}}

    def get_config(self):
        return super().get_config()
