"""PCA-DeepJSCC: a DeepJSCC that starts at the optimal linear code and learns what linear cannot.

The ``deepjscc_pca`` architecture and the ``deepjscc_pca`` scheme (a preset of
:class:`~linksim.schemes.jscc.JSCCScheme`). Why it exists: the paper's network
(:mod:`linksim.schemes.deepjscc`) trained for a few thousand steps on a CPU stays
below the *linear* analog code (PCA + optimal power allocation + LMMSE, Lee and
Petersen 1976) at every SNR on linksim's embedded data set; its noiseless
reconstruction tops out near 24 dB PSNR. A network that has to discover the
linear code from scratch needs far more steps than a CPU affords. This one is
given it:

Encoder
    ``z = g(snr) * ((x - mu) W)  +  E_cnn(x)``, then per-image power normalisation
    (every image's ``k`` symbols have mean energy 1). ``W`` (``n x n``, ``n = H W C``)
    starts as the principal directions of the training images, ``mu`` is their mean,
    ``g`` the per-component amplitude of the MSE-optimal linear power allocation
    (:func:`linear_allocation_gains`); component ``i`` goes to real channel slot
    ``i`` (real parts of the ``k`` symbols first, then imaginary parts). Only the
    ``min(n, 2k)`` strongest components fit; spare slots carry only what the CNN
    puts there. ``E_cnn`` is DeepJSCC's convolutional encoder whose last layer starts
    at zero.
Decoder
    ``x_lin = mu + (b(snr) * y) W^T`` (the per-component LMMSE estimate), then
    ``x_hat = clip(x_lin + D_cnn([x_lin, latent]), 0, 1)`` where ``D_cnn`` is a
    residual convolutional refiner at full resolution (last layer starting at zero)
    fed with the linear estimate and the received latent upsampled to image size.
    ``clip`` acts only outside training.

At initialisation the model *is* the linear code (up to the per-image
normalisation), so training starts at the reference and early stopping keeps the
best validation epoch.

Two variants (option ``snr_adaptive``):

- ``false`` (per-SNR model): ``g`` and ``b`` are trainable weights initialised at
  the allocation and LMMSE gains of the training SNR (``snr_train_db``; for a
  range, its middle); neither end is told the SNR.
- ``true`` (one model for every SNR): ``g(snr)`` and ``b(snr)`` are computed in
  the graph from the component variances and the SNR of the call (closed form),
  and every convolution of both CNNs is followed by an SNR attention module
  (ADJSCC, Xu et al. 2021: channel-wise scaling ``sigmoid(MLP([mean(features),
  snr]))``). The encoder needs the SNR (as in ADJSCC, fed back by the receiver);
  over a relay chain it is given the SNR the scheme is evaluated at (per-hop
  SNRs: their minimum) and the decoder the destination-equivalent SNR the channel
  reports.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from linksim.registry import ARCHITECTURES, SCHEMES
from linksim.schemes.analog import principal_components
from linksim.schemes.deepjscc_layers import check_layer_options, latent_channels
from linksim.schemes.gain_header import decode_header, encode_with_header, header_stats
from linksim.schemes.jscc import (JSCCArchitecture, JSCCScheme, TrainingStage, model_channel, one_stage_preset,
                                  preset_signature)
from linksim.store import load_sharing_variables, save_sharing_variables

__all__ = ["linear_allocation_gains", "pca_statistics", "SNRAttention", "PCADeepJSCCEncoder",
           "PCADeepJSCCDecoder", "PCADeepJSCC", "PCADeepJSCCArchitecture", "PCADeepJSCCScheme"]


# --------------------------------------------------------------------------- closed forms

def linear_allocation_gains(variances, snr_db, channel_uses: int):
    """MSE-optimal linear power allocation over components of decreasing variance, in the graph.

    The TensorFlow twin of :func:`~linksim.schemes.analog.linear_power_allocation`
    (numpy, float64, for fits): this one takes one SNR per image and runs inside the
    model, where the SNR-adaptive encoder and decoder need it.

    Minimises ``sum_i lam_i s2 / (p_i + s2)`` (the LMMSE error of component ``i`` sent
    with energy ``p_i`` over a real slot with noise variance ``s2 = no / 2``) subject
    to ``sum_i p_i = k`` (unit average energy per complex symbol). The KKT solution
    is ``p_i = max(0, sqrt(s2 lam_i) t - s2)`` with ``t = (k + m s2) / sum_{i<=m}
    sqrt(s2 lam_i)`` over the ``m`` strongest components that stay active.

    Input
    -----
    variances : [m] tf.float32, sorted in decreasing order, >= 0
    snr_db : scalar or [batch] tf.float32, Es/N0 in dB
    channel_uses : int, k

    Output
    ------
    (gain, lmmse) : [batch or 1, m] tf.float32 each: the amplitude ``sqrt(p_i / lam_i)``
    of every component and the LMMSE receive gain ``g_i lam_i / (p_i + s2)``.
    """
    lam = tf.maximum(tf.cast(variances, tf.float32), 1e-12)[tf.newaxis, :]          # [1, m]
    snr = tf.reshape(tf.cast(snr_db, tf.float32), [-1, 1])                         # [B, 1]
    s2 = 0.5 * tf.pow(10.0, -snr / 10.0)                                           # noise per real slot
    root = tf.sqrt(s2 * lam)                                                       # [B, m]
    m = tf.cast(tf.range(1, tf.shape(lam)[1] + 1), tf.float32)[tf.newaxis, :]
    t = (float(channel_uses) + m * s2) / tf.cumsum(root, axis=1)                   # t if m strongest are active
    active = tf.cast(root * t - s2 > 0.0, tf.float32)                              # a prefix
    m_star = tf.maximum(tf.reduce_sum(active, axis=1, keepdims=True), 1.0)
    t_star = tf.gather(t, tf.cast(m_star, tf.int32) - 1, axis=1, batch_dims=1)     # [B, 1]
    p = tf.nn.relu(root * t_star - s2)
    gain = tf.sqrt(p / lam)
    return gain, gain * lam / (p + s2)


def pca_statistics(images, max_components: int | None = None):
    """Mean, principal directions and variances of ``images`` (:func:`~linksim.schemes.analog.principal_components`).

    Input
    -----
    images : [N, H, W, C] float in [0, 1]
    max_components : int or None

    Output
    ------
    (mean [n], directions [n, m], variances [m]) float32, variances decreasing.
    """
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    mu = x.mean(axis=0)
    lam, vec = principal_components(x - mu)
    if max_components is not None:
        lam, vec = lam[:max_components], vec[:, :max_components]
    return mu.astype(np.float32), vec.astype(np.float32), lam.astype(np.float32)


# --------------------------------------------------------------------------- layers

@keras.saving.register_keras_serializable(package="linksim")
class SNRAttention(keras.layers.Layer):
    """ADJSCC's attention feature module: channel-wise scaling conditioned on the SNR.

    ``f * sigmoid(W2 relu(W1 [mean_hw(f), snr_db / 20]))`` (Xu et al. 2021, Fig. 3).

    Input
    -----
    features : [batch, H, W, F]
    snr_db : [batch] tf.float32

    Output
    ------
    [batch, H, W, F]
    """

    def __init__(self, units: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        f = int(input_shape[-1])
        self.hidden = keras.layers.Dense(self.units, activation="relu", name="hidden")
        self.scale = keras.layers.Dense(f, activation="sigmoid", name="scale")
        self.hidden.build((None, f + 1))
        self.scale.build((None, self.units))
        super().build(input_shape)

    def call(self, features, snr_db):
        b = tf.shape(features)[0]
        s = tf.reshape(tf.broadcast_to(tf.cast(snr_db, features.dtype), [b]), [b, 1]) / 20.0
        ctx = tf.concat([tf.reduce_mean(features, axis=[1, 2]), s], axis=1)
        return features * self.scale(self.hidden(ctx))[:, tf.newaxis, tf.newaxis, :]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="linksim")
class PCACode(keras.layers.Layer):
    """The fitted statistics the encoder and decoder share (held once in a model).

    Weights (not trained): ``mean`` [n], ``basis`` [n, m] (principal directions),
    ``variances`` [m] (decreasing), ``header_stats`` [2] (``a``, ``b`` of
    :mod:`~linksim.schemes.gain_header`). Set by :meth:`PCADeepJSCC.initialize`.

    The basis is the same in every model fitted to one data set (2.4 MB at 784 x 784):
    a model store keeps it once, in its ``shared/`` folder, and the model file
    refers to it (:func:`~linksim.store.save_sharing_variables`); saved outside a
    store it is written inline.

    Parameters
    ----------
    n : int, values per image
    m : int, components sent
    """

    def __init__(self, n: int, m: int, **kwargs):
        super().__init__(**kwargs)
        self.n, self.m = int(n), int(m)
        self.mean = self.add_weight(shape=(self.n,), initializer="zeros", trainable=False, name="mean")
        self.variances = self.add_weight(shape=(self.m,), initializer="ones", trainable=False, name="variances")
        self.basis = self.add_weight(shape=(self.n, self.m), initializer="orthogonal", trainable=False,
                                     name="basis")
        self.header = self.add_weight(shape=(2,), initializer="ones", trainable=False, name="header_stats")

    SHARED_VARIABLES = ("basis",)

    def call(self, x):  # pragma: no cover - a holder of weights
        return x

    def save_own_variables(self, store):
        save_sharing_variables(self, store, self.SHARED_VARIABLES)

    def load_own_variables(self, store):
        load_sharing_variables(self, store)

    def get_config(self):
        return {**super().get_config(), "n": self.n, "m": self.m}


class _PCABase(keras.layers.Layer):
    """Shared weights and options of the encoder and the decoder."""

    def __init__(self, image_shape, channel_uses: int, filters=(32, 64, 64, 64), kernel_size: int = 5,
                 snr_adaptive: bool = False, code: PCACode | None = None, **kwargs):
        super().__init__(**kwargs)
        check_layer_options(image_shape, channel_uses, filters)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.channel_uses = int(channel_uses)
        self.filters = [int(f) for f in filters]
        self.kernel_size = int(kernel_size)
        self.snr_adaptive = bool(snr_adaptive)
        self.n = int(np.prod(self.image_shape))
        # components that fit in the 2k - 1 payload slots (the last real slot is the gain header)
        self.m = min(self.n, 2 * self.channel_uses - 1)
        if self.m < 1:
            raise ValueError(f"channel_uses must be >= 1 (got {channel_uses!r})")
        # the statistics: shared with the other end in a model (saved once), else this layer's own
        self.code = code if code is not None else PCACode(self.n, self.m, name="code")
        if (self.code.n, self.code.m) != (self.n, self.m):
            raise ValueError(f"the shared code has n={self.code.n}, m={self.code.m}; this layer needs "
                             f"n={self.n}, m={self.m}")
        if not self.snr_adaptive:
            self.gain = self.add_weight(shape=(self.m,), initializer="ones", trainable=True, name="gain")
            self.design_snr_db = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                                 name="design_snr_db")

    def build(self, *shapes):
        # the sublayers build on their first call; nothing here depends on the input shape
        self.built = True

    def _run_cnn(self, z, snr):
        """The layer's CNN (``self.convs``, ``self.acts``, ``self.atts``) on ``z``."""
        for conv, act, att in zip(self.convs, self.acts, self.atts):
            z = conv(z)
            if act is not None:
                z = act(z)
            if att is not None:
                z = att(z, snr)
        return z

    def _attention(self, i):
        return SNRAttention(name=f"attention{i}") if self.snr_adaptive else None

    def allocation(self, snr_db, b):
        """(amplitudes, LMMSE gains at unit scale, noise per real slot): [B or 1, m], [B or 1, m], [B, 1]."""
        if self.snr_adaptive:
            snr = _batch_snr(snr_db, b)
            gain, _ = linear_allocation_gains(self.code.variances, snr, self.channel_uses)
        else:
            snr = _batch_snr(self.design_snr_db, b)
            gain = self.gain[tf.newaxis, :]
        s2 = 0.5 * tf.pow(10.0, -snr / 10.0)[:, tf.newaxis]
        return gain, s2

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "channel_uses": self.channel_uses,
                "filters": self.filters, "kernel_size": self.kernel_size, "snr_adaptive": self.snr_adaptive}


def _last_init():
    """The CNNs' last layers start small, not at zero: the model starts (almost) at the linear code, and
    every layer gets a gradient from the first step (a zero layer blocks the gradient of the layers before
    it, and Adam blows their first tiny gradients up to full steps, which killed units in our runs)."""
    return keras.initializers.VarianceScaling(scale=1e-4, mode="fan_avg", distribution="uniform")


def _prelu(name):
    """PReLU with slope 0.25 for negative inputs (He et al. 2015), not Keras's 0: no unit starts dead."""
    return keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name)


def _batch_snr(snr_db, b):
    return tf.broadcast_to(tf.reshape(tf.cast(snr_db, tf.float32), [-1]), [b])


@keras.saving.register_keras_serializable(package="linksim")
class PCADeepJSCCEncoder(_PCABase):
    """Images -> ``k`` complex symbols: the linear code's components plus a CNN's correction.

    Parameters
    ----------
    image_shape : (H, W, C), H and W divisible by 4
    channel_uses : int, k
    filters : four int
        Channels of the CNN's first four convolutions (default 32, 64, 64, 64).
    kernel_size : int
    snr_adaptive : bool
        See the module docstring.

    Input
    -----
    images : [batch, H, W, C] tf.float32 in [0, 1]
    snr_db : scalar or [batch] tf.float32 (used when ``snr_adaptive``)

    Output
    ------
    [batch, k] tf.complex64, mean energy 1 per symbol for every image
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        c_out = latent_channels(self.image_shape, self.channel_uses)
        self.convs, self.acts, self.atts = [], [], []
        for i, (f, s) in enumerate(zip(self.filters + [c_out], (2, 2, 1, 1, 1))):
            last = i == 4
            self.convs.append(keras.layers.Conv2D(f, self.kernel_size, strides=s, padding="same", name=f"conv{i}",
                                                  kernel_initializer=_last_init() if last else "glorot_uniform"))
            self.acts.append(None if last else _prelu(f"prelu{i}"))
            self.atts.append(None if last else self._attention(i))

    def payload(self, images, snr_db=None):
        """The signal before normalisation, [batch, 2k - 1]: the linear code's components plus the CNN's."""
        b = tf.shape(images)[0]
        snr = _batch_snr(snr_db if snr_db is not None else 10.0, b)
        gain, _ = self.allocation(snr, b)
        flat = tf.reshape(images, [b, self.n]) - self.code.mean
        lin = tf.matmul(flat, self.code.basis) * gain                                   # [B, m]
        lin = tf.pad(lin, [[0, 0], [0, 2 * self.channel_uses - 1 - self.m]])
        z = self._run_cnn(images, snr)
        return lin + tf.reshape(z, [b, -1])[:, : 2 * self.channel_uses - 1]

    def call(self, images, snr_db=None):
        return encode_with_header(self.payload(images, snr_db), self.channel_uses,
                                  (self.code.header[0], self.code.header[1]))


@keras.saving.register_keras_serializable(package="linksim")
class PCADeepJSCCDecoder(_PCABase):
    """Received symbols -> images: the per-component LMMSE estimate refined by a residual CNN.

    Parameters
    ----------
    As :class:`PCADeepJSCCEncoder`.

    Input
    -----
    y : [batch, k] tf.complex64
    snr_db : scalar or [batch] tf.float32 (used when ``snr_adaptive``)
    training : bool (clip to [0, 1] only when False)

    Output
    ------
    [batch, H, W, C] tf.float32
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        h, w, c = self.image_shape
        self.grid = (h // 4, w // 4, latent_channels(self.image_shape, self.channel_uses))
        self.up = keras.layers.Conv2DTranspose(self.filters[0], self.kernel_size, strides=4, padding="same",
                                               name="latent_up")
        self.convs, self.acts, self.atts = [], [], []
        for i, f in enumerate(list(reversed(self.filters)) + [c]):
            last = i == 4
            self.convs.append(keras.layers.Conv2D(f, 3, padding="same", name=f"refine{i}",
                                                  kernel_initializer=_last_init() if last else "glorot_uniform"))
            self.acts.append(None if last else _prelu(f"prelu{i}"))
            self.atts.append(None if last else self._attention(i))

    def linear_estimate(self, y, snr_db=None):
        """``(x_lin, payload)``: the per-image LMMSE image [B, H, W, C] and the rescaled payload [B, 2k - 1]."""
        b = tf.shape(y)[0]
        h, w, c = self.image_shape
        snr = _batch_snr(snr_db if snr_db is not None else 10.0, b)
        payload, scale = decode_header(y, self.channel_uses, (self.code.header[0], self.code.header[1]))
        gain, s2 = self.allocation(snr, b)
        lam = self.code.variances[tf.newaxis, :]
        lmmse = gain * lam / (tf.square(gain) * lam + s2 * tf.square(scale)[:, tf.newaxis])   # per image
        comps = payload[:, : self.m] * lmmse
        x_lin = tf.reshape(self.code.mean + tf.matmul(comps, self.code.basis, transpose_b=True), [b, h, w, c])
        return x_lin, payload

    def call(self, y, snr_db=None, training=False):
        b = tf.shape(y)[0]
        snr = _batch_snr(snr_db if snr_db is not None else 10.0, b)
        x_lin, flat = self.linear_estimate(y, snr)
        hh, ww, cc = self.grid
        lat = tf.reshape(tf.pad(flat, [[0, 0], [0, hh * ww * cc - 2 * self.channel_uses + 1]]), [b, hh, ww, cc])
        out = x_lin + self._run_cnn(tf.concat([x_lin, self.up(lat)], axis=-1), snr)
        return out if training else tf.clip_by_value(out, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="linksim")
class PCADeepJSCC(keras.Model):
    """Encoder -> channel -> decoder (see the module docstring).

    Parameters
    ----------
    image_shape, channel_uses, filters, kernel_size, snr_adaptive :
        As :class:`PCADeepJSCCEncoder`.
    channel : Channel or its config, optional
        The channel inside the model (default one AWGN hop).

    Input
    -----
    images : [batch, H, W, C] tf.float32 in [0, 1]
    snr_db : float or [batch] tf.float32

    Output
    ------
    [batch, H, W, C] tf.float32
    """

    def __init__(self, image_shape, channel_uses: int, filters=(32, 64, 64, 64), kernel_size: int = 5,
                 snr_adaptive: bool = False, channel=None, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.channel_uses = int(channel_uses)
        n = int(np.prod(self.image_shape))
        self.code = PCACode(n, min(n, 2 * self.channel_uses - 1), name="code")
        opts = {"filters": filters, "kernel_size": kernel_size, "snr_adaptive": snr_adaptive, "code": self.code}
        self.encoder = PCADeepJSCCEncoder(self.image_shape, self.channel_uses, name="encoder", **opts)
        self.decoder = PCADeepJSCCDecoder(self.image_shape, self.channel_uses, name="decoder", **opts)
        self.channel, self._channel_given = model_channel(channel)   # the default, one AWGN hop, is not in the config
        self(tf.zeros((1,) + self.image_shape), tf.constant(10.0))

    def build(self, *shapes):
        # built by the call in the constructor
        self.built = True

    @property
    def snr_adaptive(self) -> bool:
        return self.encoder.snr_adaptive

    def call(self, images, snr_db, training=False):
        x = self.encoder(images, snr_db)
        out = self.channel(x, snr_db)
        return self.decoder(out["y"], out["snr_db"], training=training)

    def initialize(self, train_images, snr_db) -> None:
        """Set the linear path to the linear code of ``train_images`` at ``snr_db`` (before training)."""
        mu, vec, lam = pca_statistics(train_images, self.encoder.m)
        gain, _ = linear_allocation_gains(lam, float(snr_db), self.channel_uses)
        self.code.mean.assign(mu)
        self.code.variances.assign(lam)
        self.code.basis.assign(vec)
        for layer in (self.encoder, self.decoder):
            if not self.snr_adaptive:
                layer.gain.assign(gain[0])
                layer.design_snr_db.assign(float(snr_db))
        x = np.asarray(train_images, np.float32)
        payload = np.concatenate([self.encoder.payload(x[i:i + 512], float(snr_db)).numpy()
                                  for i in range(0, len(x), 512)])
        self.code.header.assign(header_stats(payload, self.channel_uses))

    def get_config(self):
        e = self.encoder
        cfg = {"name": self.name, "image_shape": list(self.image_shape), "channel_uses": self.channel_uses,
               "filters": e.filters, "kernel_size": e.kernel_size, "snr_adaptive": e.snr_adaptive}
        if self._channel_given:
            cfg["channel"] = keras.layers.serialize(self.channel)
        return cfg


# --------------------------------------------------------------------------- architecture and scheme

@ARCHITECTURES.register("deepjscc_pca")
class PCADeepJSCCArchitecture(JSCCArchitecture):
    """DeepJSCC refining the optimal linear code (:class:`PCADeepJSCC`, module docstring).

    Parameters
    ----------
    filters : list of 4 int
        Channels of the CNNs (default 32, 64, 64, 64).
    kernel_size : int
        Of the encoder's convolutions (default 5).
    snr_adaptive : bool
        One model for every SNR: the allocation follows the SNR of the call and the
        CNNs carry ADJSCC's SNR attention modules (default False).

    Raises
    ------
    ValueError
        For filters that are not four positive integers or a bad kernel size.
    """

    name = "deepjscc_pca"

    def __init__(self, filters=(32, 64, 64, 64), kernel_size: int = 5, snr_adaptive: bool = False):
        if not isinstance(filters, (list, tuple)) or len(filters) != 4 \
                or not all(isinstance(f, (int, np.integer)) and not isinstance(f, bool) and f > 0 for f in filters):
            raise ValueError(f"filters must be a list of four positive integers (got {filters!r})")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive integer (got {kernel_size!r})")
        if not isinstance(snr_adaptive, bool):
            raise ValueError(f"snr_adaptive must be true or false (got {snr_adaptive!r})")
        self._config = {"filters": [int(f) for f in filters], "kernel_size": int(kernel_size),
                        "snr_adaptive": snr_adaptive}

    @property
    def encoder_uses_snr(self) -> bool:
        return self._config["snr_adaptive"]

    def model_config(self) -> dict:
        return dict(self._config)

    def build(self, image_shape, channel_uses: int, channel=None) -> PCADeepJSCC:
        return PCADeepJSCC(image_shape, channel_uses, channel=channel, **self._config)

    def initialize(self, model, train_images, snr_train_db) -> None:
        """The linear path starts at the linear code of the training images (at the middle of a range)."""
        s = snr_train_db
        model.initialize(train_images, 0.5 * (float(s[0]) + float(s[1])) if isinstance(s, (list, tuple)) else s)

    def fits(self, model, image_shape, channel_uses: int) -> bool:
        return isinstance(model, PCADeepJSCC) and super().fits(model, image_shape, channel_uses)


_STAGE_DEFAULTS = {"epochs": 40, "learning_rate": 1e-3}


@SCHEMES.register("deepjscc_pca")
class PCADeepJSCCScheme(JSCCScheme):
    """PCA-DeepJSCC: DeepJSCC starting at the optimal linear code (see :mod:`linksim.schemes.deepjscc_pca`).

    A preset of :class:`~linksim.schemes.jscc.JSCCScheme`: the ``deepjscc_pca``
    architecture trained in one stage with the ``log_mse`` loss (minus the mean
    per-image PSNR). ``snr_adaptive: true`` trains one model over ``snr_train_db``
    (default ``[0, 20]``, drawn per image) that adapts to the SNR it is used at.

    Parameters
    ----------
    filters, kernel_size, snr_adaptive :
        The architecture (:class:`PCADeepJSCCArchitecture`).
    epochs, learning_rate, steps_per_epoch :
        The training stage (default 40 epochs at 1e-3).
    snr_train_db, batch_size, patience, lr_patience, val_fraction, jit_compile, train_channel, train_seed, spread,
    label :
        As :class:`~linksim.schemes.jscc.JSCCScheme` (``snr_train_db`` defaults to
        10, or ``[0, 20]`` with ``snr_adaptive``).

    Raises
    ------
    ValueError
        For an unknown option (naming the allowed ones) or a value outside its range.
    """

    __signature__ = preset_signature((JSCCScheme, ("architecture", "stages"), "", {}),
                                     (PCADeepJSCCArchitecture, (), "", {}),
                                     (TrainingStage, ("losses", "name"), "", _STAGE_DEFAULTS))

    def __init__(self, **options):
        if options.get("snr_adaptive") is True:
            options = {"snr_train_db": [0, 20], **options}
        super().__init__(**one_stage_preset("deepjscc_pca", options, _STAGE_DEFAULTS, "log_mse"))
