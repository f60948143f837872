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
class AWGNChannel(keras.layers.Layer):
    """Additive white Gaussian noise at Es/N0 ``snr_db`` per hop (Sionna ``AWGN``).

    Input
    -----
    x : [..., S], tf.complex64
        Symbols of unit average energy.
    snr_db : float or tf.float32 (broadcastable to ``x``'s batch dimensions)
        Es/N0 in dB.
    regenerate : callable or None
        Ignored: one hop has no decode-and-forward relay. Accepted so that a scheme
        calls every channel the same way (see :class:`~linksim.channels.MultiHopChannel`).

    Output
    ------
    y : [..., S], tf.complex64
        ``x + w``, ``w ~ CN(0, no)``, ``no = 10 ** (-snr_db / 10)``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._awgn = AWGN()

    def noise_variance(self, snr_db) -> tf.Tensor:
        """The ``no`` of one hop at ``snr_db``: what a receiver's demapper is given."""
        return snr_db_to_no(snr_db)

    def effective_snr_db(self, snr_db) -> tf.Tensor:
        """The Es/N0 the receiver sees, in dB: ``snr_db`` itself for one hop."""
        return tf.cast(snr_db, tf.float32)

    def call(self, x, snr_db, regenerate=None):
        return self._awgn(x, snr_db_to_no(snr_db))

    def get_config(self):
        return super().get_config()
