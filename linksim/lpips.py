"""LPIPS v0.1 (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric", CVPR 2018) in Keras/TensorFlow, with AlexNet and VGG16 backbones.

The metric ``lpips`` (AlexNet, shipped weights) and ``lpips_vgg`` (VGG16, weights
converted on the user's machine: :mod:`linksim.lpips_weights`) are registered in
:mod:`linksim.metrics`; lower is better, 0 for identical images.

What is computed, per image pair (the official ``lpips`` package's ``LPIPS(net=...,
version='0.1', lpips=True, spatial=False)``):

1. images in [0, 1] are mapped to [-1, 1] (``2 x - 1``); a grey image is repeated to
   three channels; images whose shorter side is below ``upsample_to`` are resized
   bilinearly (``tf.image.resize``, half-pixel centres, as ``torch``'s
   ``interpolate(mode='bilinear', align_corners=False)``) so that the shorter side is
   ``upsample_to`` (default 64: 28x28 and 32x32 become 64x64; ``docs/lpips.md`` has the
   measurements behind the choice); larger images are left as they are;
2. the scaling layer ``(x - shift) / scale`` with shift ``(-0.030, -0.088, -0.188)`` and
   scale ``(0.458, 0.448, 0.450)``;
3. the backbone's five ReLU taps (AlexNet relu1-relu5; VGG16 relu1_2, relu2_2, relu3_3,
   relu4_3, relu5_3), each unit-normalised over channels (``f / (||f|| + 1e-10)``);
4. squared differences, weighted over channels by the non-negative linear heads,
   averaged over space, summed over the five layers.
"""

from __future__ import annotations

import collections
import hashlib
import math
import numbers

import keras
import numpy as np
import tensorflow as tf

from linksim.lpips_weights import NETS, load_weights

__all__ = ["LPIPS", "DEFAULT_UPSAMPLE_TO", "lpips_distance", "get_lpips", "min_input_size", "tap_sizes"]

#: Default shorter side images are upsampled to (see docs/lpips.md for the measurements).
DEFAULT_UPSAMPLE_TO = 64
_SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
_SCALE = np.array([0.458, 0.448, 0.450], np.float32)
# backbone programs: ("conv", kernel, stride, pad) / ("pool", size, stride); "tap" after a conv's ReLU
_ALEXNET = [("conv", 11, 4, 2, True), ("pool", 3, 2), ("conv", 5, 1, 2, True), ("pool", 3, 2),
            ("conv", 3, 1, 1, True), ("conv", 3, 1, 1, True), ("conv", 3, 1, 1, True)]
_VGG16 = []
for _i, _v in enumerate([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]):
    _VGG16.append(("pool", 2, 2) if _v == "M" else ("conv", 3, 1, 1, _i in (1, 4, 8, 12, 16)))
_PROGRAMS = {"alexnet": _ALEXNET, "vgg16": _VGG16}


def tap_sizes(net: str, size: int) -> list[int]:
    """Spatial size of each of the five tapped layers for a ``size x size`` input (0 = empty)."""
    out = []
    for op in _PROGRAMS[net]:
        if op[0] == "conv":
            _, k, s, p, tap = op
            size = (size + 2 * p - k) // s + 1 if size + 2 * p >= k else 0
            if tap:
                out.append(max(size, 0))
        else:
            _, k, s = op
            size = (size - k) // s + 1 if size >= k else 0
    return out


def min_input_size(net: str) -> int:
    """The smallest input side for which every tapped layer of ``net`` has at least one pixel."""
    s = 1
    while min(tap_sizes(net, s)) < 1:
        s += 1
    return s


@keras.saving.register_keras_serializable(package="linksim")
class LPIPS(keras.layers.Layer):
    """LPIPS v0.1 distance between two batches of images (Zhang et al. 2018).

    The weights are frozen (non-trainable); they are read from the ``.npz`` of
    :mod:`linksim.lpips_weights` without pickle.  The layer is differentiable, so it
    can also serve in a loss.

    Parameters
    ----------
    net : str
        Backbone: ``alexnet`` (weights ship with linksim) or ``vgg16`` (converted on
        the user's machine, :func:`linksim.lpips_weights.how_to_get`).
    upsample_to : int or None
        Images whose shorter side is below this are resized bilinearly so that it is
        ``upsample_to`` (aspect ratio kept); None leaves every image as it is (then the
        image must be at least :func:`min_input_size` pixels: 31 for AlexNet, 16 for VGG16).
    weights_path : str or None
        The ``.npz`` to read; None searches :func:`linksim.lpips_weights.search_dirs`.

    Input
    -----
    x, x_hat : [batch, H, W, C], tf.float32 in [0, 1], C = 1 (grey, repeated) or 3

    Output
    ------
    [batch], tf.float32: the distances (0 for identical images, symmetric).

    Raises
    ------
    ValueError
        ``net`` or ``upsample_to`` not allowed; C not 1 or 3; the images are too small.
    linksim.lpips_weights.LPIPSWeightsError
        The weights are missing (the message gives the commands that make them) or unreadable.
    """

    def __init__(self, net: str = "alexnet", upsample_to: int | None = DEFAULT_UPSAMPLE_TO,
                 weights_path: str | None = None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if net not in NETS:
            raise ValueError(f"LPIPS net must be one of {', '.join(sorted(NETS))} (got {net!r})")
        if upsample_to is not None and (isinstance(upsample_to, bool)
                                        or not isinstance(upsample_to, numbers.Integral)
                                        or upsample_to < min_input_size(net)):
            raise ValueError(f"upsample_to must be None or an integer >= {min_input_size(net)} for {net} "
                             f"(got {upsample_to!r})")
        self.net = net
        self.upsample_to = None if upsample_to is None else int(upsample_to)
        self.weights_path = None if weights_path is None else str(weights_path)
        arrays = load_weights(net, weights_path)
        n_conv = NETS[net][1]
        self._kernels = [self.add_weight(name=f"conv{i}_kernel", shape=arrays[f"conv{i}_kernel"].shape,
                                         initializer=keras.initializers.Constant(arrays[f"conv{i}_kernel"]),
                                         trainable=False) for i in range(n_conv)]
        self._biases = [self.add_weight(name=f"conv{i}_bias", shape=arrays[f"conv{i}_bias"].shape,
                                        initializer=keras.initializers.Constant(arrays[f"conv{i}_bias"]),
                                        trainable=False) for i in range(n_conv)]
        self._lins = [self.add_weight(name=f"lin{j}", shape=arrays[f"lin{j}"].shape,
                                      initializer=keras.initializers.Constant(arrays[f"lin{j}"]),
                                      trainable=False) for j in range(5)]

    def get_config(self):
        return {**super().get_config(), "net": self.net, "upsample_to": self.upsample_to,
                "weights_path": self.weights_path}

    def compute_output_shape(self, x_shape, x_hat_shape=None):
        return (x_shape[0],)

    def _prepare(self, x):
        x = tf.convert_to_tensor(x, tf.float32)
        c = x.shape[-1]
        if x.shape.rank != 4 or c not in (1, 3):
            raise ValueError(f"LPIPS takes images [batch, H, W, C] with C = 1 or 3 (got shape {x.shape})")
        if c == 1:
            x = tf.tile(x, [1, 1, 1, 3])
        h, w = x.shape[1], x.shape[2]
        if self.upsample_to is not None and min(h, w) < self.upsample_to:
            f = self.upsample_to / min(h, w)
            size = (self.upsample_to if h <= w else int(math.ceil(h * f - 1e-9)),
                    self.upsample_to if w <= h else int(math.ceil(w * f - 1e-9)))
            x = tf.image.resize(x, size, method="bilinear", antialias=False)
        if min(x.shape[1], x.shape[2]) < min_input_size(self.net):
            raise ValueError(f"LPIPS-{self.net} needs images of at least {min_input_size(self.net)} pixels a side "
                             f"(got {x.shape[1]}x{x.shape[2]}); set upsample_to")
        return (2.0 * x - 1.0 - _SHIFT) / _SCALE

    def features(self, x):
        """The five tapped layers of the (already scaled) input, unit-normalised over channels."""
        taps, i = [], 0
        for op in _PROGRAMS[self.net]:
            if op[0] == "conv":
                _, _, s, p, tap = op
                x = tf.nn.conv2d(x, self._kernels[i], strides=s, padding=[[0, 0], [p, p], [p, p], [0, 0]])
                x = tf.nn.relu(tf.nn.bias_add(x, self._biases[i]))
                i += 1
                if tap:
                    norm = tf.sqrt(tf.reduce_sum(tf.square(x), axis=-1, keepdims=True))
                    taps.append(x / (norm + 1e-10))
            else:
                _, k, s = op
                x = tf.nn.max_pool2d(x, k, s, padding="VALID")
        return taps

    def layer_distances(self, x, x_hat):
        """The five layers' contributions (weighted, spatially averaged); their sum is the distance.

        Input
        -----
        x, x_hat : [batch, H, W, C], tf.float32 in [0, 1]

        Output
        ------
        [batch, 5], tf.float32
        """
        a, b = self._prepare(x), self._prepare(x_hat)
        n = tf.shape(a)[0]
        feats = self.features(tf.concat([a, b], axis=0))  # one pass for both batches
        per_layer = [tf.reduce_mean(tf.tensordot(tf.square(f[:n] - f[n:]), lin, axes=[[3], [0]]), axis=[1, 2])
                     for f, lin in zip(feats, self._lins)]
        return tf.stack(per_layer, axis=1)

    def call(self, x, x_hat):
        return tf.reduce_sum(self.layer_distances(x, x_hat), axis=1)

    def reference_features(self, x):
        """The tapped features of reference images ``x`` (to compare many reconstructions with)."""
        return self.features(self._prepare(x))

    def distance_to(self, ref_features, x_hat):
        """Per-image distance of ``x_hat`` to the images whose :meth:`reference_features` are given."""
        feats = self.features(self._prepare(x_hat))
        return tf.add_n([tf.reduce_mean(tf.tensordot(tf.square(f - r), lin, axes=[[3], [0]]), axis=[1, 2])
                         for r, f, lin in zip(ref_features, feats, self._lins)])


_CACHE: dict = {}
_FUNCTIONS: dict = {}


def get_lpips(net: str = "alexnet", upsample_to: int | None = DEFAULT_UPSAMPLE_TO) -> LPIPS:
    """A cached :class:`LPIPS` layer (the weights are read once per process)."""
    key = (net, upsample_to)
    if key not in _CACHE:
        _CACHE[key] = LPIPS(net=net, upsample_to=upsample_to)
    return _CACHE[key]


def _compiled(net: str, upsample_to, image_shape: tuple):
    """``tf.function`` s of the cached layer for images of ``image_shape`` (any batch size):
    ``(reference_features, distance_to)``."""
    key = (net, upsample_to, image_shape)
    if key not in _FUNCTIONS:
        spec = tf.TensorSpec((None, *image_shape), tf.float32)
        layer = get_lpips(net, upsample_to)
        _FUNCTIONS[key] = (tf.function(layer.reference_features, input_signature=[spec]),
                           tf.function(layer.distance_to, reduce_retracing=True))
    return _FUNCTIONS[key]


#: Reference features of recently seen image chunks: a sweep compares the same test images with every
#: scheme's reconstruction at every point, so their half of the work is done once. Keyed by the net,
#: the upsampling and a digest of the images' bytes; at most ``_REF_BUDGET`` bytes are kept.
_REFERENCES: "collections.OrderedDict[tuple, list]" = collections.OrderedDict()
_REF_BUDGET = 512 * 2**20


def _reference(net, upsample_to, fn, chunk: np.ndarray) -> list:
    key = (net, upsample_to, chunk.shape, hashlib.sha1(chunk.tobytes()).hexdigest())
    if key in _REFERENCES:
        _REFERENCES.move_to_end(key)
        return _REFERENCES[key]
    feats = fn(tf.constant(chunk))
    _REFERENCES[key] = feats
    total = sum(sum(int(np.prod(f.shape)) * 4 for f in v) for v in _REFERENCES.values())
    while total > _REF_BUDGET and len(_REFERENCES) > 1:
        _, old = _REFERENCES.popitem(last=False)
        total -= sum(int(np.prod(f.shape)) * 4 for f in old)
    return feats


def lpips_distance(x, x_hat, net: str = "alexnet", upsample_to: int | None = DEFAULT_UPSAMPLE_TO,
                   chunk: int | None = None) -> np.ndarray:
    """Per-image LPIPS distance, computed in chunks of ``chunk`` images (bounded memory).

    ``chunk`` None: as many images as keep the backbone's input near 2**21 pixels
    per image batch (256 at 64x64, 41 at 224x224), so large images do not exhaust memory.

    Input
    -----
    x, x_hat : [batch, H, W, C] or [H, W, C], float32 in [0, 1], C = 1 or 3

    Output
    ------
    [batch], float64

    Raises
    ------
    ValueError
        Shapes differ, or see :class:`LPIPS`.
    linksim.lpips_weights.LPIPSWeightsError
        The weights are missing or unreadable.
    """
    x = np.asarray(x, np.float32)
    x_hat = np.asarray(x_hat, np.float32)
    if x.ndim == 3:
        x, x_hat = x[None], x_hat[None] if x_hat.ndim == 3 else x_hat
    if x.shape != x_hat.shape:
        raise ValueError(f"LPIPS compares images of the same shape (got {x.shape} and {x_hat.shape})")
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"LPIPS takes images [batch, H, W, C] with C = 1 or 3 (got shape {x.shape})")
    ref_fn, dist_fn = _compiled(net, upsample_to, tuple(x.shape[1:]))
    if chunk is None:
        side = min(x.shape[1], x.shape[2])
        scale = upsample_to / side if upsample_to is not None and side < upsample_to else 1.0
        chunk = int(max(1, min(256, 2 ** 21 // (x.shape[1] * x.shape[2] * scale * scale))))
    out = [dist_fn(_reference(net, upsample_to, ref_fn, np.ascontiguousarray(x[i:i + chunk])),
                   tf.constant(x_hat[i:i + chunk])).numpy()
           for i in range(0, len(x), chunk)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)
