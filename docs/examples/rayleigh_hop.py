"""A linksim plug-in: a Rayleigh block-fading hop with perfect CSI at the receiver.

The walkthrough of ``docs/extending.md``: a new channel is this one file.  Load it
with ``linksim run scenario.yaml --plugin docs/examples/rayleigh_hop.py`` (or a
``plugins:`` list in the scenario) and name it as a scenario's channel
(``channel: {type: example_rayleigh_block}``) or as the hops of a relay chain
(``channel: {type: multihop, hops: 2, relay: df, hop: {type: example_rayleigh_block}}``).

Model: one complex coefficient ``h ~ CN(0, 1)`` per image (block fading, the
coherence time is one image), ``y = h x + w`` with ``w ~ CN(0, no)``.  The
receiver knows ``h`` and equalises by zero forcing, ``y / h = x + w / h``, so the
noise variance it should assume is ``no / |h|^2`` per image.  This is an example
of the channel contract, not linksim's fading model (Sionna's generators, Rician
K-factors, CSI options and pilots belong to the fading issue).
"""

import keras
import tensorflow as tf
from sionna.phy.channel import AWGN

from linksim.channels import Channel, no_to_snr_db, snr_db_to_no
from linksim.channels.base import apply_mask, symbol_mask
from linksim.registry import CHANNELS


@CHANNELS.register("example_rayleigh_block")
@keras.saving.register_keras_serializable(package="linksim_example")
class ExampleRayleighBlockHop(Channel):
    """Rayleigh block fading, one coefficient per image, zero-forcing with perfect CSI.

    Input
    -----
    x : [batch, S], tf.complex64, unit average energy
    snr_db : float or tf.float32, scalar or [batch]: average Es/N0 in dB
    num_symbols : None or [batch] int32

    Output
    ------
    dict: ``y`` (equalised symbols), ``no`` ([batch], ``no / |h|^2``), ``snr_db``
    ([batch], the instantaneous SNR), ``state`` (``{"h": [batch] complex64}``).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._awgn = AWGN()

    def call(self, x, snr_db, num_symbols=None):
        batch = tf.shape(x)[0]
        std = tf.sqrt(0.5)
        h = tf.complex(tf.random.normal([batch], stddev=std), tf.random.normal([batch], stddev=std))
        no = snr_db_to_no(snr_db)
        y = self._awgn(x * h[:, None], no)
        y = apply_mask(y / h[:, None], symbol_mask(num_symbols, x))
        no_eq = no / tf.maximum(tf.square(tf.abs(h)), 1e-12)
        return {"y": y, "no": no_eq, "snr_db": no_to_snr_db(no_eq), "state": {"h": h}}
