"""DeepJSCC: the end-to-end model, the ``deepjscc`` architecture and the ``deepjscc`` scheme.

Bourtsoulatze, Burth Kurka, Gündüz, *Deep joint source-channel coding for wireless
image transmission*, IEEE TCCN 2019. The layers are in
:mod:`linksim.schemes.deepjscc_layers`; the channel inside the model is linksim's
:class:`~linksim.channels.AWGNChannel` (Sionna's ``AWGN``), so training and
evaluation share one code path.

- :class:`DeepJSCC`: the Keras model (encoder -> channel -> decoder);
- :class:`DeepJSCCArchitecture`: the ``deepjscc`` entry of
  :data:`linksim.registry.ARCHITECTURES` (its options are the model's);
- :class:`DeepJSCCScheme`: the ``deepjscc`` scheme, a preset of
  :class:`~linksim.schemes.jscc.JSCCScheme`: this architecture and one stage of
  ``mse``; ``type: jscc`` with ``architecture: {type: deepjscc, ...}`` and
  ``stages: [{losses: [{type: mse}], ...}]`` is the same model (same store key).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from linksim.registry import ARCHITECTURES, SCHEMES
from linksim.schemes.deepjscc_layers import DIGITAL_QUANTIZERS, DeepJSCCDecoder, DeepJSCCEncoder, check_quantizer
from linksim.schemes.jscc import (JSCCArchitecture, JSCCScheme, TrainingStage, model_channel, one_stage_preset,
                                  preset_signature)

__all__ = ["DeepJSCC", "DeepJSCCArchitecture", "DeepJSCCScheme"]


@keras.saving.register_keras_serializable(package="linksim")
class DeepJSCC(keras.Model):
    """Encoder -> channel -> decoder, trainable end to end.

    Parameters
    ----------
    image_shape : (H, W, C)
    channel_uses : int
        k, complex channel uses per image.
    filters, kernel_size, quantizer :
        As :class:`~linksim.schemes.deepjscc_layers.DeepJSCCEncoder`.
    snr_side_info : bool
        As :class:`~linksim.schemes.deepjscc_layers.DeepJSCCDecoder`.

    Input
    -----
    images : [batch, H, W, C], tf.float32 in [0, 1]
    snr_db : float or [batch] tf.float32, Es/N0 in dB of the channel

    Output
    ------
    [batch, H, W, C], tf.float32 in [0, 1]: the received images
    """

    def __init__(self, image_shape, channel_uses: int, filters=(16, 32, 32, 32), kernel_size: int = 5,
                 quantizer: str | None = None, snr_side_info: bool = False, channel=None, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.channel_uses = int(channel_uses)
        self.encoder = DeepJSCCEncoder(self.image_shape, self.channel_uses, filters, kernel_size, quantizer,
                                       name="encoder")
        self.decoder = DeepJSCCDecoder(self.image_shape, self.channel_uses, filters, kernel_size, snr_side_info,
                                       name="decoder")
        self.channel, self._channel_given = model_channel(channel)   # the default, one AWGN hop, is not in the config
        # create the weights now, so a reloaded model has them before its weights are read
        self(tf.zeros((1,) + self.image_shape), tf.constant(10.0))

    def call(self, images, snr_db, training=False):
        x = self.encoder(images)
        out = self.channel(x, snr_db)
        # the channel's reported SNR is what the decoder is told (a chain's destination-equivalent SNR)
        return self.decoder(out["y"], out["snr_db"])

    def get_config(self):
        e, d = self.encoder, self.decoder
        cfg = {"name": self.name, "image_shape": list(self.image_shape), "channel_uses": self.channel_uses,
               "filters": e.filters, "kernel_size": e.kernel_size, "quantizer": e.quantizer,
               "snr_side_info": d.snr_side_info}
        if self._channel_given:
            cfg["channel"] = keras.layers.serialize(self.channel)
        return cfg


@ARCHITECTURES.register("deepjscc")
class DeepJSCCArchitecture(JSCCArchitecture):
    """DeepJSCC's CNN encoder and decoder (Bourtsoulatze et al. 2019): the model :class:`DeepJSCC`.

    Parameters
    ----------
    filters : list of 4 int
        Default the paper's 16, 32, 32, 32.
    kernel_size : int
    quantizer : {null, "binary", "onoff"}
        "binary": the SD-JSCC paper's eq. 14 (latent bits sent as QPSK); "onoff":
        the same bits on-off keyed, as the paper's Algorithm 1 sends them.
    snr_side_info : bool
        Tell the decoder the channel SNR.

    Raises
    ------
    ValueError
        For filters that are not four positive integers, or an unknown quantizer.
    """

    name = "deepjscc"

    def __init__(self, filters=(16, 32, 32, 32), kernel_size: int = 5, quantizer: str | None = None,
                 snr_side_info: bool = False):
        check_quantizer(quantizer)
        if not isinstance(filters, (list, tuple)) or len(filters) != 4 \
                or not all(isinstance(f, (int, np.integer)) and f > 0 for f in filters):
            raise ValueError(f"filters must be a list of four positive integers (got {filters!r})")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive integer (got {kernel_size!r})")
        self._config = {"filters": [int(f) for f in filters], "kernel_size": int(kernel_size),
                        "quantizer": quantizer, "snr_side_info": bool(snr_side_info)}

    def model_config(self) -> dict:
        return dict(self._config)

    def build(self, image_shape, channel_uses: int, channel=None) -> DeepJSCC:
        return DeepJSCC(image_shape, channel_uses, channel=channel, **self._config)

    def fits(self, model, image_shape, channel_uses: int) -> bool:
        return isinstance(model, DeepJSCC) and super().fits(model, image_shape, channel_uses)

    def latent_bits_per_image(self, channel_uses: int) -> int | None:
        """2k with a binary quantizer (``binary`` or ``onoff``); None for analog symbols."""
        return 2 * int(channel_uses) if self._config["quantizer"] in DIGITAL_QUANTIZERS else None


#: Defaults of the first stage's flat preset options (:data:`~linksim.schemes.jscc.FIRST_STAGE_OPTIONS`).
_FIRST_STAGE_DEFAULTS = {"epochs": 60, "learning_rate": 1e-3}


@SCHEMES.register("deepjscc")
class DeepJSCCScheme(JSCCScheme):
    """DeepJSCC (Bourtsoulatze et al. 2019): CNN encoder -> k complex symbols -> CNN decoder.

    A preset of :class:`~linksim.schemes.jscc.JSCCScheme`: the ``deepjscc``
    architecture trained in one stage with the ``mse`` loss. The model is loaded
    from the model store, or trained on the scenario's training images and stored
    (see :mod:`linksim.store`).

    Parameters
    ----------
    filters, kernel_size, quantizer, snr_side_info :
        The architecture (:class:`DeepJSCCArchitecture`).
    epochs, learning_rate, steps_per_epoch :
        The training stage (:class:`~linksim.schemes.jscc.TrainingStage`; default 60
        epochs at 1e-3).
    snr_train_db, batch_size, patience, lr_patience, val_fraction, jit_compile, train_channel, train_seed, spread,
    label :
        As :class:`~linksim.schemes.jscc.JSCCScheme`.

    Raises
    ------
    ValueError
        For an unknown option (naming the allowed ones) or a value outside its range.
    """

    __signature__ = preset_signature((JSCCScheme, ("architecture", "stages"), "", {}),
                                     (DeepJSCCArchitecture, (), "", {}),
                                     (TrainingStage, ("losses", "name"), "", _FIRST_STAGE_DEFAULTS))

    def __init__(self, **options):
        super().__init__(**one_stage_preset("deepjscc", options, _FIRST_STAGE_DEFAULTS, "mse"))
