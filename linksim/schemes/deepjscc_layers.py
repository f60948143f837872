"""DeepJSCC encoder and decoder as Keras layers.

The network of Bourtsoulatze, Burth Kurka and Gündüz, *Deep joint source-channel
coding for wireless image transmission*, IEEE TCCN 2019 (Fig. 2): five 5x5
convolutions with PReLU activations, the first two of stride 2, then a
power-normalisation layer; the decoder mirrors it with transposed convolutions
and ends in a sigmoid.

One departure from the paper: the encoder's last convolution is linear (no
PReLU). Keras initialises PReLU's slope to 0, so an untrained encoder whose last
activation is a PReLU can emit an all-zero latent for some images (seen with
small ``k``), which no power normalisation can bring to unit energy; a linear
last layer always carries signal, and the trained networks reach the same
quality.

Channel uses
------------
The encoder's last convolution has ``c = ceil(2 k / (H' W'))`` output channels
for ``k`` complex channel uses per image and a latent grid of ``H' x W'`` (``H/4``
by ``W/4``). The flattened latent's first ``2k`` real values become ``k`` complex
symbols (real parts first, then imaginary parts), so every ``k`` is possible and
the scheme spends exactly ``k`` channel uses; the decoder zero-fills the
``H' W' c - 2k`` values that were never sent.

Binary quantizer (SD-JSCC paper, Sun et al., eq. 14)
----------------------------------------------------
With ``quantizer="binary"`` the latent passes a sigmoid and is thresholded at 0.5
to bits (straight-through gradient in training), and the ``2k`` bits are sent as
``k`` QPSK symbols ``((2 b_re - 1) + j (2 b_im - 1)) / sqrt(2)``: BPSK on each real
dimension, unit energy per complex symbol. The latent rate is ``2k`` bits per
image.

With ``quantizer="onoff"`` the same bits go out as on-off keying, the SD-JSCC
paper's Algorithm 1 (the channel noise is added to ``q`` in {0, 1}): level ``b``
on each real dimension, symbol ``b_re + j b_im``. Its energy per complex symbol is
``b_re + b_im``, on average 1 when the bits are balanced (the same average energy
as the antipodal map) but twice the fraction of ones in general; the distance
between the two levels is 1 against sqrt(2) for the antipodal map: 3 dB worse at
equal average energy. :meth:`BinaryQuantizer.bits` gives the bits, so the energy
actually spent can be measured.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

__all__ = ["PowerNormalization", "BinaryQuantizer", "PReLU", "DIGITAL_QUANTIZERS", "QUANTIZERS", "DeepJSCCEncoder",
           "DeepJSCCDecoder", "latent_channels", "check_layer_options", "check_quantizer", "to_slots", "to_symbols"]

#: The quantizers whose latent is bits (2k per image), and the keying of :class:`BinaryQuantizer` each uses.
QUANTIZER_KEYING = {"binary": "antipodal", "onoff": "onoff"}
DIGITAL_QUANTIZERS = tuple(QUANTIZER_KEYING)
#: Every quantizer: None (analog symbols) or a digital one.
QUANTIZERS = (None, *DIGITAL_QUANTIZERS)


def latent_channels(image_shape, channel_uses: int, stride: int = 4) -> int:
    """Channels of the encoder's last convolution for ``channel_uses`` complex symbols."""
    h, w = int(image_shape[0]) // stride, int(image_shape[1]) // stride
    return max(1, math.ceil(2 * int(channel_uses) / (h * w)))


def to_slots(y) -> tf.Tensor:
    """``[batch, k]`` complex symbols -> ``[batch, 2k]`` float real slots: real parts, then imaginary parts."""
    y = tf.convert_to_tensor(y)
    return tf.concat([tf.math.real(y), tf.math.imag(y)], axis=1)


def to_symbols(slots, k: int) -> tf.Tensor:
    """``[batch, 2k]`` real slots -> ``[batch, k]`` complex64 symbols (the inverse of :func:`to_slots`)."""
    slots = tf.cast(slots, tf.float32)
    return tf.complex(slots[:, :k], slots[:, k:])


def check_layer_options(image_shape, channel_uses, filters) -> None:
    """The checks every JSCC encoder and decoder makes of its shape options.

    Raises
    ------
    ValueError
        For an image size the strides do not divide, a non-positive k, or filters
        that are not four positive integers.
    """
    _check_image_shape(image_shape)
    if int(channel_uses) < 1:
        raise ValueError(f"channel_uses must be >= 1 (got {channel_uses!r})")
    if len(filters) != 4 or any(int(f) < 1 for f in filters):
        raise ValueError(f"filters must be four positive integers (got {filters!r})")


def check_quantizer(quantizer) -> None:
    """Raise ValueError, naming the allowed values, for a quantizer not in :data:`QUANTIZERS`."""
    if quantizer not in QUANTIZERS:
        raise ValueError(f"quantizer must be one of null, {', '.join(DIGITAL_QUANTIZERS)} (got {quantizer!r})")


def _check_image_shape(image_shape, stride=4):
    if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
        raise ValueError(f"image_shape must be (H, W, C) with positive sizes (got {image_shape!r})")
    h, w, _ = (int(s) for s in image_shape)
    if h % stride or w % stride:
        raise ValueError(f"image height and width must be divisible by the encoder's stride {stride} "
                         f"(got {h}x{w}); pad the images (dataset.params.pad_to) or resize them")


@keras.saving.register_keras_serializable(package="linksim")
class PReLU(keras.layers.PReLU):
    """Keras's ``PReLU`` (same options, weights and results) in four graph operations instead of six.

    ``relu(x) + alpha * min(x, 0)`` is, bit for bit, Keras's ``relu(x) - alpha * relu(-x)``
    (negation is exact); fewer operations per call matter where the per-operation
    cost dominates (small batches, ``benchmarks/deepjscc_vs_kaira.py``). The one
    difference is the gradient at exactly ``x = 0``, where this one passes ``alpha``.
    """

    def call(self, inputs):
        return tf.nn.relu(inputs) + self.alpha * tf.minimum(inputs, tf.zeros((), inputs.dtype))


@keras.saving.register_keras_serializable(package="linksim")
class PowerNormalization(keras.layers.Layer):
    """Real latent -> ``k`` complex symbols with average energy 1 per used symbol, per image.

    Parameters
    ----------
    channel_uses : int
        k, complex symbols allocated per image.

    Input
    -----
    z : [batch, ...], tf.float32, at least ``2k`` values per image
    num_symbols : None or [batch], int32
        Symbols an image uses (a variable-length transmission): the energy is
        normalised over the first ``num_symbols`` symbols and the others are set
        to zero.  None (default): all ``k`` are used.

    Output
    ------
    [batch, k], tf.complex64 with ``mean(|x|^2) = 1`` over the used symbols of every image
    """

    def __init__(self, channel_uses: int, **kwargs):
        super().__init__(**kwargs)
        self.channel_uses = int(channel_uses)

    def call(self, z, num_symbols=None):
        k = self.channel_uses
        flat = tf.reshape(z, [tf.shape(z)[0], -1])[:, : 2 * k]
        if num_symbols is None:
            energy = tf.reduce_mean(tf.square(flat), axis=1, keepdims=True) * 2.0  # mean |x|^2
        else:
            used = tf.cast(tf.sequence_mask(tf.cast(num_symbols, tf.int32), k), flat.dtype)  # [batch, k]
            used = tf.concat([used, used], axis=1)                    # real parts, then imaginary parts
            flat = flat * used
            n = tf.maximum(tf.reduce_sum(used, axis=1, keepdims=True) / 2.0, 1.0)
            energy = tf.reduce_sum(tf.square(flat), axis=1, keepdims=True) / n
        flat = flat * tf.math.rsqrt(tf.maximum(energy, 1e-12))
        # scale the real parts before forming complex values: no complex->real cast in the gradient
        return to_symbols(flat, k)

    def get_config(self):
        return {**super().get_config(), "channel_uses": self.channel_uses}


@keras.saving.register_keras_serializable(package="linksim")
class BinaryQuantizer(keras.layers.Layer):
    """Sigmoid, threshold at 0.5 with a straight-through gradient, QPSK symbols (eq. 14 of Sun et al.).

    Parameters
    ----------
    channel_uses : int
        k; ``2k`` bits are sent per image.
    keying : {"antipodal", "onoff"}
        ``antipodal`` (default): ``(2b - 1) / sqrt(2)`` per real dimension (QPSK);
        ``onoff``: ``b`` per real dimension (the paper's Algorithm 1).

    Input
    -----
    z : [batch, ...], tf.float32

    Output
    ------
    [batch, k], tf.complex64, symbols in ``{(+-1 +- j) / sqrt(2)}`` (antipodal) or
    ``{0, 1, j, 1 + j}`` (on-off)
    """

    KEYINGS = ("antipodal", "onoff")

    def __init__(self, channel_uses: int, keying: str = "antipodal", **kwargs):
        super().__init__(**kwargs)
        if keying not in self.KEYINGS:
            raise ValueError(f"keying must be one of {', '.join(self.KEYINGS)} (got {keying!r})")
        self.channel_uses = int(channel_uses)
        self.keying = keying

    def bits(self, z):
        """The ``2k`` latent bits of every image, [batch, 2k] tf.float32 in {0, 1} (straight-through)."""
        k = self.channel_uses
        p = tf.sigmoid(tf.reshape(z, [tf.shape(z)[0], -1])[:, : 2 * k])
        hard = tf.cast(p > 0.5, p.dtype)
        return p + tf.stop_gradient(hard - p)

    def call(self, z):
        b = self.bits(z)
        s = b if self.keying == "onoff" else (2.0 * b - 1.0) / math.sqrt(2.0)
        return to_symbols(s, self.channel_uses)

    def get_config(self):
        return {**super().get_config(), "channel_uses": self.channel_uses, "keying": self.keying}


@keras.saving.register_keras_serializable(package="linksim")
class DeepJSCCEncoder(keras.layers.Layer):
    """DeepJSCC encoder: images -> ``k`` complex channel symbols of unit average energy.

    Parameters
    ----------
    image_shape : (H, W, C)
        H and W divisible by 4.
    channel_uses : int
        k, complex channel uses per image.
    filters : list of int
        Output channels of the first four convolutions (default the paper's 16, 32, 32, 32).
    kernel_size : int
        Default 5.
    quantizer : {None, "binary", "onoff"}
        None: analog symbols (power normalisation); "binary": eq. 14 of Sun et al.,
        bits as antipodal (QPSK) symbols; "onoff": the same bits on-off keyed.

    Input
    -----
    images : [batch, H, W, C], tf.float32 in [0, 1]

    Output
    ------
    [batch, k], tf.complex64

    Raises
    ------
    ValueError
        For an image size the strides do not divide, a non-positive k, or an unknown quantizer.
    """

    def __init__(self, image_shape, channel_uses: int, filters=(16, 32, 32, 32), kernel_size: int = 5,
                 quantizer: str | None = None, **kwargs):
        super().__init__(**kwargs)
        check_layer_options(image_shape, channel_uses, filters)
        check_quantizer(quantizer)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.channel_uses = int(channel_uses)
        self.filters = [int(f) for f in filters]
        self.kernel_size = int(kernel_size)
        self.quantizer = quantizer
        c_out = latent_channels(self.image_shape, self.channel_uses)
        strides = (2, 2, 1, 1, 1)
        self.convs = []
        self.acts = []
        for i, (f, s) in enumerate(zip(self.filters + [c_out], strides)):
            self.convs.append(keras.layers.Conv2D(f, self.kernel_size, strides=s, padding="same", name=f"conv{i}"))
            # the last convolution is linear (see the module docstring)
            self.acts.append(PReLU(shared_axes=[1, 2], name=f"prelu{i}") if i < 4 else None)
        self.to_symbols = (BinaryQuantizer(self.channel_uses, keying=QUANTIZER_KEYING[quantizer],
                                           name="binary_quantizer") if quantizer in QUANTIZER_KEYING
                           else PowerNormalization(self.channel_uses, name="power_norm"))

    def latent(self, images):
        """The real latent before quantisation/normalisation, [batch, H/4, W/4, c]."""
        z = images
        for conv, act in zip(self.convs, self.acts):
            z = conv(z)
            z = act(z) if act is not None else z
        return z

    def call(self, images):
        return self.to_symbols(self.latent(images))

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "channel_uses": self.channel_uses,
                "filters": self.filters, "kernel_size": self.kernel_size, "quantizer": self.quantizer}


@keras.saving.register_keras_serializable(package="linksim")
class DeepJSCCDecoder(keras.layers.Layer):
    """DeepJSCC decoder: received symbols -> images in [0, 1].

    Parameters
    ----------
    image_shape : (H, W, C)
    channel_uses : int
    filters : list of int
        As the encoder's; the decoder mirrors them.
    kernel_size : int
    snr_side_info : bool
        If True, the decoder is told the SNR: ``snr_db / 20`` is appended as an
        extra feature map to the reshaped received latent.

    Input
    -----
    y : [batch, k], tf.complex64, received symbols
    snr_db : float or [batch] tf.float32, Es/N0 in dB (used only with ``snr_side_info``)

    Output
    ------
    [batch, H, W, C], tf.float32 in [0, 1]
    """

    def __init__(self, image_shape, channel_uses: int, filters=(16, 32, 32, 32), kernel_size: int = 5,
                 snr_side_info: bool = False, **kwargs):
        super().__init__(**kwargs)
        _check_image_shape(image_shape)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.channel_uses = int(channel_uses)
        self.filters = [int(f) for f in filters]
        self.kernel_size = int(kernel_size)
        self.snr_side_info = bool(snr_side_info)
        h, w, c = self.image_shape
        self.grid = (h // 4, w // 4, latent_channels(self.image_shape, self.channel_uses))
        rev = list(reversed(self.filters))               # 32, 32, 32, 16
        specs = [(rev[0], 1), (rev[1], 1), (rev[2], 1), (rev[3], 2), (c, 2)]
        self.deconvs, self.acts = [], []
        for i, (f, s) in enumerate(specs):
            self.deconvs.append(keras.layers.Conv2DTranspose(f, self.kernel_size, strides=s, padding="same",
                                                             name=f"deconv{i}"))
            self.acts.append(PReLU(shared_axes=[1, 2], name=f"prelu{i}") if i < 4 else None)

    def call(self, y, snr_db=None):
        k = self.channel_uses
        hh, ww, cc = self.grid
        b = tf.shape(y)[0]
        flat = to_slots(y)                                                  # [B, 2k]
        flat = tf.pad(flat, [[0, 0], [0, hh * ww * cc - 2 * k]])
        z = tf.reshape(flat, [b, hh, ww, cc])
        if self.snr_side_info:
            if snr_db is None:
                raise ValueError("this decoder was built with snr_side_info=True and needs snr_db")
            s = tf.cast(tf.reshape(tf.broadcast_to(tf.cast(snr_db, tf.float32), [b]), [b, 1, 1, 1]), z.dtype)
            z = tf.concat([z, tf.broadcast_to(s / 20.0, [b, hh, ww, 1])], axis=-1)
        for deconv, act in zip(self.deconvs, self.acts):
            z = deconv(z)
            z = act(z) if act is not None else tf.sigmoid(z)
        return z

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "channel_uses": self.channel_uses,
                "filters": self.filters, "kernel_size": self.kernel_size, "snr_side_info": self.snr_side_info}
