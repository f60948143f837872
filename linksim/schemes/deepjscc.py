"""DeepJSCC: the end-to-end model and the ``deepjscc`` scheme.

Bourtsoulatze, Burth Kurka, Gündüz, *Deep joint source-channel coding for wireless
image transmission*, IEEE TCCN 2019. The layers are in
:mod:`linksim.schemes.deepjscc_layers`; the channel inside the model is linksim's
:class:`~linksim.channels.AWGNChannel` (Sionna's ``AWGN``), so training and
evaluation share one code path.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import tensorflow as tf

from linksim.channels.awgn import AWGNChannel, no_to_snr_db
from linksim.registry import SCHEMES
from linksim.schemes.base import BatchResult, Scheme, SchemeContext
from linksim.schemes.deepjscc_layers import DeepJSCCDecoder, DeepJSCCEncoder
from linksim.training import TrainConfig, train_jscc

__all__ = ["DeepJSCC", "DeepJSCCScheme"]


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
        if channel is None:
            self.channel = AWGNChannel(name="channel")
        elif isinstance(channel, dict):
            self.channel = keras.layers.deserialize(channel)
        else:
            self.channel = channel
        if not self.channel.differentiable:
            raise ValueError("a JSCC model cannot be trained through a channel that is not differentiable "
                             "(decode-and-forward relays); train over one hop, or through an af / qf chain")
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
        if not isinstance(self.channel, AWGNChannel):
            cfg["channel"] = keras.layers.serialize(self.channel)
        return cfg


@SCHEMES.register("deepjscc")
class DeepJSCCScheme(Scheme):
    """DeepJSCC (Bourtsoulatze et al. 2019): CNN encoder -> k complex symbols -> CNN decoder.

    The model is loaded from the model store, or trained on the scenario's
    training images and stored (see :mod:`linksim.store`).

    Parameters
    ----------
    snr_train_db : float or [lo, hi]
        SNR (Es/N0, dB) during training; a range is sampled per batch.
    filters : list of 4 int
        Default the paper's 16, 32, 32, 32.
    kernel_size : int
    quantizer : {null, "binary"}
        "binary": the SD-JSCC paper's eq. 14 (latent bits sent as QPSK).
    snr_side_info : bool
        Tell the decoder the channel SNR.
    epochs, batch_size, learning_rate, patience, lr_patience, val_fraction, steps_per_epoch :
        Training (:class:`~linksim.training.TrainConfig`).
    jit_compile : bool
        Compile evaluation with XLA (default False: on CPU, XLA's convolutions
        are slower than TensorFlow's oneDNN ones; ``benchmarks/`` measures both).
    train_channel : {"awgn", "scenario"}
        ``awgn`` (default): train over one AWGN hop at ``snr_train_db`` and
        evaluate on whatever channel the scenario has; ``scenario``: train end to
        end through the scenario's channel (an AF or QF relay chain, every hop at
        ``snr_train_db``; QF passes gradients straight through its quantizer).
    label : str
    """

    digital = False
    trainable = True

    def __init__(self, snr_train_db=10.0, filters=(16, 32, 32, 32), kernel_size: int = 5,
                 quantizer: str | None = None, snr_side_info: bool = False, epochs: int = 60,
                 batch_size: int = 64, learning_rate: float = 1e-3, patience: int = 8, lr_patience: int = 3,
                 val_fraction: float = 0.1, steps_per_epoch: int | None = None, jit_compile: bool = False,
                 train_channel: str = "awgn", label: str | None = None):
        super().__init__(label)
        if train_channel not in ("awgn", "scenario"):
            raise ValueError(f"train_channel must be one of awgn, scenario (got {train_channel!r})")
        self.train_channel = train_channel
        if quantizer not in (None, "binary"):
            raise ValueError(f"quantizer must be one of null, binary (got {quantizer!r})")
        if not isinstance(filters, (list, tuple)) or len(filters) != 4 \
                or not all(isinstance(f, (int, np.integer)) and f > 0 for f in filters):
            raise ValueError(f"filters must be a list of four positive integers (got {filters!r})")
        self.model_config = {"filters": [int(f) for f in filters], "kernel_size": int(kernel_size),
                             "quantizer": quantizer, "snr_side_info": bool(snr_side_info)}
        self.train_config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                        patience=patience, lr_patience=lr_patience, val_fraction=val_fraction,
                                        snr_train_db=snr_train_db, steps_per_epoch=steps_per_epoch)
        self.jit_compile = bool(jit_compile)
        self.model = None

    # ---------------------------------------------------------------- model store
    def store_spec(self, context: SchemeContext) -> dict:
        """Everything that changes the trained weights (hashed into the store key)."""
        tc = self.train_config
        return {"scheme": "deepjscc", "format": 1,
                "model": {"image_shape": list(context.image_shape), "channel_uses": int(context.channel_uses),
                          **self.model_config},
                "training": {"snr_train_db": tc.snr_train_db, "epochs": tc.epochs, "batch_size": tc.batch_size,
                             "learning_rate": tc.learning_rate, "patience": tc.patience,
                             "lr_patience": tc.lr_patience, "val_fraction": tc.val_fraction,
                             "steps_per_epoch": tc.steps_per_epoch, "loss": "mse",
                             **({"channel": self._train_channel_config(context)}
                                if self.train_channel == "scenario" else {})},
                "dataset": context.dataset_spec, "seed": int(context.seed)}

    def store_name(self) -> str:
        return "deepjscc"

    def _train_channel_config(self, context: SchemeContext) -> dict:
        ch = context.channel
        cfg = {k: v for k, v in ch.get_config().items() if k not in ("name", "trainable", "dtype")}
        return {"class": type(ch).__name__, "config": cfg}

    def build_model(self, context: SchemeContext) -> DeepJSCC:
        keras.utils.set_random_seed(int(context.seed))
        channel = None
        if self.train_channel == "scenario" and not isinstance(context.channel, AWGNChannel):
            channel = keras.layers.deserialize(keras.layers.serialize(context.channel))  # a fresh copy
        return DeepJSCC(context.image_shape, context.channel_uses, channel=channel, **self.model_config)

    def _check_loaded(self, model, context: SchemeContext) -> bool:
        ok = (isinstance(model, DeepJSCC) and model.image_shape == tuple(context.image_shape)
              and model.channel_uses == int(context.channel_uses))
        if not ok:
            warnings.warn(f"{self.label}: the stored model does not fit this scenario's images or channel uses; "
                          f"it will be retrained", stacklevel=3)
        return ok

    def train(self, context: SchemeContext, model) -> dict:
        """Train ``model`` (resuming from the store's checkpoint); returns the history."""
        import sionna.phy

        entry = context.store.entry(self.store_name(), self.store_spec(context))
        self.train_config.seed = int(context.seed)
        sionna.phy.config.seed = int(context.seed)
        return train_jscc(model, context.train_images, self.train_config, checkpoint_dir=entry.checkpoint_dir,
                          progress=context.progress, desc=self.label)

    def _load_stored(self, context: SchemeContext, spec: dict):
        """The stored model of ``spec`` and its entry, ``(None, None)`` when missing or unfit."""
        model, entry = (None, None) if context.store is None else context.store.load(self.store_name(), spec)
        if model is not None and not self._check_loaded(model, context):
            return None, None
        return model, entry

    def _require_training(self, context: SchemeContext) -> None:
        """Raise ValueError when a missing model may not be trained here."""
        if context.store is None or not context.train_missing:
            raise ValueError(f"{self.label}: no trained model in the store for this scenario; "
                             f"run `linksim train` on the scenario first")

    def _card_facts(self, context: SchemeContext, history: dict) -> dict:
        """What a stored model's card says of its training and its setting."""
        best = history["best_epoch"]
        return {"scheme_label": self.label, "epochs_run": history["epochs_run"], "best_epoch": best,
                "final_val_psnr_db": history["val_psnr_db"][best - 1] if best else None,
                "snr_train_db": self.train_config.snr_train_db, "channel_uses": int(context.channel_uses),
                "bandwidth_ratio": int(context.channel_uses) / float(np.prod(context.image_shape)),
                "dataset": context.dataset_spec, "seed": int(context.seed)}

    def _bind(self, context: SchemeContext, model, entry) -> None:
        """Use ``model`` for transmission: compile the encoder and the receive path."""
        self.model = model
        self.entry = entry
        self._encode = tf.function(lambda x: self.model.encoder(x), reduce_retracing=True,
                                   jit_compile=self.jit_compile)
        self._receive = tf.function(self._receive_impl, reduce_retracing=True, jit_compile=self.jit_compile)
        self.channel = context.channel.bind(regenerate=self._regenerate_impl)  # DF relays decode and re-encode

    def prepare(self, context: SchemeContext) -> None:
        self.context = context
        spec = self.store_spec(context)
        model, entry = self._load_stored(context, spec)
        if model is None:
            self._require_training(context)
            model = self.build_model(context)
            history = self.train(context, model)
            entry = context.store.save(self.store_name(), spec, model, history, self._card_facts(context, history))
        self._bind(context, model, entry)

    def _regenerate_impl(self, y, no):
        """A decode-and-forward relay: decode the image with the JSCC decoder, re-encode it."""
        return self.model.encoder(self.model.decoder(y, no_to_snr_db(no)))

    def _receive_impl(self, symbols, snr_db):
        out = self.channel(symbols, snr_db)
        # the decoder's SNR side information is the SNR the channel reports (a chain: destination-equivalent)
        return self.model.decoder(out["y"], out["snr_db"])

    def describe(self) -> dict:
        d = super().describe()
        d.update(model=self.model_config, snr_train_db=self.train_config.snr_train_db,
                 stored_model=str(self.entry.path) if getattr(self, "entry", None) else None)
        return d

    def encode(self, images: np.ndarray):
        return self._encode(tf.constant(np.asarray(images, np.float32)))

    def latent_bits_per_image(self) -> int | None:
        """2k with the binary quantizer; None for analog symbols."""
        return 2 * int(self.context.channel_uses) if self.model_config["quantizer"] == "binary" else None

    def evaluate(self, state, snr_db: float) -> BatchResult:
        images = self._receive(state, tf.constant(snr_db, tf.float32)).numpy()  # snr_db: scalar or per hop
        b = int(state.shape[0])
        bits = self.latent_bits_per_image()
        counts = {"images": b, "channel_uses": b * int(self.context.channel_uses),
                  "source_bits": b * bits if bits is not None else float("nan")}
        return BatchResult(images, counts)
