"""The deep hash network (DHD), its training, model-store access and the hash / retrieval measures.

Jang, Gu, Cho, *Deep Hash Distillation for Image Retrieval*, ECCV 2022 (DHD), in a
small variant that trains on a CPU. Reference code read:
``github.com/youngkyunJang/Deep-Hash-Distillation`` (``loss.py``: ``HashProxy``,
``HashDistill``, ``BCEQuantization``; ``main_DHD.py``: ``Hash_func`` and the training
step; ``Retrieval.py``: ``Evaluate_mAP``). ``docs/dhd.md`` ("Deep hash network and
hash metrics") states every reading decision.

- :class:`DeepHashNetwork`: a small convolutional backbone (:class:`ConvBlock` of the
  classifier, ``w, w, pool, 2w, 2w, pool, 4w``, global average pooling, a ReLU
  dense layer of ``8w`` units), then DHD's hash head ``Dense(K, use_bias=False) ->
  LayerNormalization -> tanh``, and the trainable class proxies of the hash-proxy loss.
- DHD's three losses: :func:`hash_proxy_loss` (temperature 0.2),
  :func:`self_distillation_loss` (weight 0.1) and :func:`bce_quantization_loss` (the
  Gaussian estimator, sigma 0.5, weight 0.1).
- :func:`train_hash_network`: linksim's one training loop (:func:`linksim.training.fit`)
  over a DHD step: a strongly and a weakly augmented view of every image
  (:func:`augment_views`).
- :func:`load_or_train_hash_network`: the hash network of a data set from the model
  store (name ``hashnet``), trained and stored when missing; its card holds the
  mAP@1000 of its sign codes.
- Measures (pure numpy): :func:`sign_codes`, :func:`hamming_distance`,
  :func:`cosine_similarity`, :func:`average_precision`, :func:`mean_average_precision`.
"""

from __future__ import annotations

import math
import time
import weakref
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from linksim.tasks.classifier import (ConvBlock, _check_image_shape, _check_positive_int, check_training_data,
                                     fit_task_network, split_and_optimizer, stored_task_model, task_model_facts,
                                     unit_scale)
from linksim.training import DEFAULT_TRAIN_SEED, check_train_seed

__all__ = ["DeepHashNetwork", "DEFAULT_MODEL", "DEFAULT_TRAINING", "DEFAULT_EVAL", "HASH_OPTIONS", "STORE_NAME",
           "hash_proxy_loss", "self_distillation_loss", "bce_quantization_loss", "augment_views",
           "draw_augmentation", "train_hash_network", "hash_spec", "hash_train_seed", "load_or_train_hash_network",
           "hash_outputs", "sign_codes", "hamming_distance", "cosine_similarity", "average_precision",
           "mean_average_precision"]

#: The model-store name of trained hash networks.
STORE_NAME = "hashnet"

#: Default architecture options of :class:`DeepHashNetwork` (``bits`` is DHD's K).
DEFAULT_MODEL = {"bits": 32, "width": 16}

#: Default training options of :func:`train_hash_network` (DHD's loss weights, temperature and sigma).
DEFAULT_TRAINING = {"epochs": 30, "batch_size": 64, "learning_rate": 1e-3, "val_fraction": 0.1, "patience": 8,
                    "temperature": 0.2, "distill_weight": 0.1, "quant_weight": 0.1, "sigma": 0.5,
                    "weak_scale": 0.5, "hflip": True}

#: Evaluation options of the hash block (not part of the store key).
DEFAULT_EVAL = {"top_n": 1000}

#: The ``config`` key that seeds the training (default :data:`linksim.training.DEFAULT_TRAIN_SEED`).
TRAIN_SEED_OPTION = "train_seed"

#: Every option of a scenario's ``task.hash`` block.
HASH_OPTIONS = tuple(DEFAULT_MODEL) + tuple(DEFAULT_TRAINING) + (TRAIN_SEED_OPTION,) + tuple(DEFAULT_EVAL)

#: Random-resized-crop area fraction range and aspect-ratio range of the augmentation.
CROP_SCALE = (0.4, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
#: Colour jitter factor ranges (DHD: ColorJitter(brightness=0.4, contrast=0.8, saturation=0.8)).
BRIGHTNESS = (0.6, 1.4)
CONTRAST = (0.2, 1.8)
SATURATION = (0.2, 1.8)
#: Gaussian blur sigma range (DHD: 0.1 .. 2.0; the kernel is 3 taps at 28-32 px, DHD's int(0.1 size) odd).
BLUR_SIGMA = (0.1, 2.0)
#: Per-view probabilities at full strength (DHD's ``Augmentation`` with Aw = 1): crop, flip, jitter, grey, blur.
AUG_PROBS = {"crop": 1.0, "flip": 0.5, "jitter": 0.8, "grey": 0.2, "blur": 0.5}
#: Columns of an augmentation parameter row (:func:`draw_augmentation`).
AUG_COLUMNS = ("y0", "x0", "y1", "x1", "flip", "brightness", "contrast", "saturation", "grey", "blur_side")


def _check_bits(bits):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 1024:
        raise ValueError(f"bits must be an integer in 2..1024 (DHD uses 16, 32, 64; got {bits!r})")
    return int(bits)


# --------------------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="linksim")
class DeepHashNetwork(keras.Model):
    """DHD's hash network, small CPU variant: a CNN backbone, then Dense(K, no bias) -> LayerNorm -> tanh.

    ``conv1 (w) - conv2 (w) - maxpool - conv3 (2w) - conv4 (2w) - maxpool - conv5 (4w) -
    global average pool - dense (8w, ReLU) - hash (K, no bias) - LayerNorm - tanh``
    (convolution blocks as the classifier's :class:`ConvBlock`: 3x3 convolution,
    batch normalisation, ReLU). The head is DHD's ``Hash_func`` (Jang et al., ECCV 2022;
    reference code ``main_DHD.py``); the backbone replaces DHD's pretrained AlexNet /
    ResNet / ViT by a network that trains from scratch on a CPU (about 47 k
    parameters for 28x28x1 images, ``width=16``, ``bits=32``).

    The model also holds the hash-proxy loss's class proxies (``proxies``, ``[C, K]``,
    Xavier-uniform with the tanh gain 5/3 as DHD), used in training and by
    :meth:`proxy_scores`; they do not change :meth:`call`.

    Parameters
    ----------
    image_shape : (H, W, C)
        Input image size; H, W >= 4 (two 2x2 poolings).
    num_classes : int
        Number of class proxies (>= 2).
    bits : int
        Hash length K, 2..1024 (DHD: 16, 32, 64; default 32).
    width : int
        Channels of the first convolutions (default 16).

    Input
    -----
    images : [batch, H, W, C], tf.float32 in [0, 1]
    training : bool
        Batch statistics (True) or moving averages (False).

    Output
    ------
    h : [batch, K], tf.float32 in (-1, 1)
        The continuous hash; its signs are the binary code (:func:`sign_codes`).

    Raises
    ------
    ValueError
        If an argument is outside its allowed values (the message gives them).
    """

    def __init__(self, image_shape, num_classes: int, bits: int = DEFAULT_MODEL["bits"],
                 width: int = DEFAULT_MODEL["width"], **kwargs):
        super().__init__(**kwargs)
        self.image_shape = _check_image_shape(image_shape)
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2 (got {num_classes!r})")
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
            raise ValueError(f"width must be a positive integer (got {width!r})")
        self.num_classes = int(num_classes)
        self.bits = _check_bits(bits)
        self.width = int(width)
        w = self.width
        self.conv1 = ConvBlock(w, True, name="conv1")
        self.conv2 = ConvBlock(w, True, name="conv2")
        self.pool1 = keras.layers.MaxPooling2D(2, name="pool1")
        self.conv3 = ConvBlock(2 * w, True, name="conv3")
        self.conv4 = ConvBlock(2 * w, True, name="conv4")
        self.pool2 = keras.layers.MaxPooling2D(2, name="pool2")
        self.conv5 = ConvBlock(4 * w, True, name="conv5")
        self.gap = keras.layers.GlobalAveragePooling2D(name="gap")
        self.dense = keras.layers.Dense(8 * w, activation="relu", kernel_initializer="he_normal", name="dense")
        self.hash = keras.layers.Dense(self.bits, use_bias=False, name="hash")
        self.hash_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="hash_norm")
        gain = 5.0 / 3.0  # torch.nn.init.calculate_gain("tanh")
        self.proxies = self.add_weight(shape=(self.num_classes, self.bits), name="proxies",
                                       initializer=keras.initializers.VarianceScaling(
                                           scale=gain ** 2, mode="fan_avg", distribution="uniform"))
        # create the weights now, so a reloaded model has them before its weights are read
        self(tf.zeros((1,) + self.image_shape), training=False)

    def features(self, images, training=False):
        """The backbone's output: ``[batch, 8 width]``, tf.float32 (before the hash head)."""
        x = images
        for name in ("conv1", "conv2", "pool1", "conv3", "conv4", "pool2", "conv5"):
            layer = getattr(self, name)
            x = layer(x, training=training) if name.startswith("conv") else layer(x)
        return self.dense(self.gap(x))

    def call(self, images, training=False):
        return tf.tanh(self.hash_norm(self.hash(self.features(images, training=training))))

    def proxy_scores(self, h):
        """Cosine similarities of hashes ``h [batch, K]`` to the class proxies: ``[batch, C]``."""
        return tf.matmul(tf.math.l2_normalize(h, -1), tf.math.l2_normalize(self.proxies, -1), transpose_b=True)

    def get_config(self):
        return {"name": self.name, "image_shape": list(self.image_shape), "num_classes": self.num_classes,
                "bits": self.bits, "width": self.width}


# --------------------------------------------------------------------------- DHD losses
def hash_proxy_loss(h, proxies, labels, temperature: float = 0.2):
    """DHD's hash-proxy loss: softmax cross-entropy over cosine similarities to the class proxies.

    ``L_hp = mean_b [ -log softmax_c( cos(h_b, p_c) / T )[y_b] ]`` (reference ``HashProxy``:
    both normalised, ``D = X P^T / temp``; with one label per image its normalised
    label vector is one-hot, so the soft-label cross-entropy is the ordinary one).

    Input
    -----
    h : [batch, K], tf.float32
    proxies : [C, K], tf.float32
    labels : [batch], int
    temperature : float > 0

    Output
    ------
    scalar tf.float32
    """
    logits = tf.matmul(tf.math.l2_normalize(h, -1), tf.math.l2_normalize(proxies, -1), transpose_b=True)
    logits = logits / float(temperature)
    labels = tf.cast(labels, tf.int32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def _cosine(a, b):
    """Row-wise cosine similarity, as ``torch.nn.functional.cosine_similarity`` (eps 1e-8)."""
    num = tf.reduce_sum(a * b, axis=-1)
    # max(|a| |b|, 1e-8) as one square root, with a finite gradient at a zero vector
    den = tf.sqrt(tf.maximum(tf.reduce_sum(a * a, axis=-1) * tf.reduce_sum(b * b, axis=-1), 1e-16))
    return num / den


def self_distillation_loss(h_strong, h_weak):
    """DHD's self-distillation: ``mean_b (1 - cos(h_strong_b, stop_gradient(h_weak_b)))`` (``HashDistill``).

    The weakly augmented view is the teacher (no gradient flows through it).

    Input
    -----
    h_strong, h_weak : [batch, K], tf.float32

    Output
    ------
    scalar tf.float32 in [0, 2]
    """
    return tf.reduce_mean(1.0 - _cosine(h_strong, tf.stop_gradient(h_weak)))


def bce_quantization_loss(h, sigma: float = 0.5):
    """DHD's BCE quantization loss with the Gaussian estimator (``BCEQuantization``).

    With ``g_m(h) = exp(-(h - m)^2 / (2 sigma^2))``, the targets ``y = (sign(h) + 1) / 2``
    (no gradient; ``sign(0) = 0`` gives 1/2) and ``BCE(p, t) = -mean[t log p + (1 - t)
    log(1 - p)]`` over every element (logs clamped at -100 as ``torch.nn.BCELoss``):

    ``L_q = BCE(g_{+1}(h), y) + BCE(g_{-1}(h), 1 - y)``.

    ``log g_m`` is used in closed form (``-(h - m)^2 / (2 sigma^2)``), which equals the
    reference's ``log(exp(...))`` wherever that is above the clamp.

    Input
    -----
    h : [batch, K], tf.float32
    sigma : float > 0

    Output
    ------
    scalar tf.float32
    """
    h = tf.convert_to_tensor(h, tf.float32)
    y = tf.stop_gradient((tf.sign(h) + 1.0) / 2.0)

    def bce(mean, target):
        log_p = tf.maximum(-0.5 * tf.square((h - mean) / float(sigma)), -100.0)
        q = 1.0 - tf.exp(log_p)
        # a saturated tanh gives h = +-1 exactly, q = 0: log q is clamped to -100 as in torch's BCELoss,
        # without the 0 * inf = NaN its gradient would carry (tf.where keeps the bad branch out of the gradient)
        ok = q > 0.0
        log_q = tf.where(ok, tf.maximum(tf.math.log(tf.where(ok, q, 1.0)), -100.0), -100.0)
        return -tf.reduce_mean(target * log_p + (1.0 - target) * log_q)

    return bce(1.0, y) + bce(-1.0, 1.0 - y)


# --------------------------------------------------------------------------- augmentation
def draw_augmentation(rng: np.random.Generator, n: int, strength: float, *, hflip: bool = True,
                      rgb: bool = False) -> np.ndarray:
    """Random parameters of :func:`augment_views` for ``n`` images: ``[n, 10]`` float32 (:data:`AUG_COLUMNS`).

    DHD's ``Augmentation(org_size, Aw)``: every transformation is applied with its
    probability (:data:`AUG_PROBS`) times ``strength`` (DHD's ``Aw``: 1 for the strong
    view, the ``transformation_scale`` for the weak one). Random resized crop of
    :data:`CROP_SCALE` of the area and aspect ratio in :data:`CROP_RATIO`; horizontal
    flip (only with ``hflip``); colour jitter (brightness, contrast; saturation only
    for ``rgb``); random greyscale (only ``rgb``); Gaussian blur, 3 taps, sigma in
    :data:`BLUR_SIGMA` (``blur_side`` is the weight of each neighbour tap, 0: none).
    """
    s = float(strength)
    out = np.zeros((n, len(AUG_COLUMNS)), np.float32)
    crop = rng.random(n) < AUG_PROBS["crop"] * s
    area = rng.uniform(*CROP_SCALE, n)
    ratio = np.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), n))
    hh = np.minimum(np.sqrt(area / ratio), 1.0)
    ww = np.minimum(np.sqrt(area * ratio), 1.0)
    y0 = rng.random(n) * (1.0 - hh)
    x0 = rng.random(n) * (1.0 - ww)
    out[:, 0] = np.where(crop, y0, 0.0)
    out[:, 1] = np.where(crop, x0, 0.0)
    out[:, 2] = np.where(crop, y0 + hh, 1.0)
    out[:, 3] = np.where(crop, x0 + ww, 1.0)
    flip = rng.random(n) < AUG_PROBS["flip"] * s
    out[:, 4] = flip & bool(hflip)
    jitter = rng.random(n) < AUG_PROBS["jitter"] * s
    out[:, 5] = np.where(jitter, rng.uniform(*BRIGHTNESS, n), 1.0)
    out[:, 6] = np.where(jitter, rng.uniform(*CONTRAST, n), 1.0)
    sat = rng.uniform(*SATURATION, n)
    out[:, 7] = np.where(jitter & rgb, sat, 1.0)
    grey = rng.random(n) < AUG_PROBS["grey"] * s
    out[:, 8] = grey & bool(rgb)
    blur = rng.random(n) < AUG_PROBS["blur"] * s
    sigma = rng.uniform(*BLUR_SIGMA, n)
    side = np.exp(-0.5 / sigma ** 2)
    out[:, 9] = np.where(blur, side / (1.0 + 2.0 * side), 0.0)
    return out


def _blur_axis(x, side, axis):
    """3-tap blur ``side * x[i-1] + (1 - 2 side) * x[i] + side * x[i+1]`` along ``axis`` (edge replicated)."""
    n = x.shape[axis]
    first = tf.gather(x, [0], axis=axis)
    last = tf.gather(x, [n - 1], axis=axis)
    prev = tf.concat([first, tf.gather(x, tf.range(n - 1), axis=axis)], axis=axis)
    nxt = tf.concat([tf.gather(x, tf.range(1, n), axis=axis), last], axis=axis)
    return side * (prev + nxt) + (1.0 - 2.0 * side) * x


def augment_views(x, params):
    """Apply :func:`draw_augmentation`'s parameters: crop-resize, flip, jitter, greyscale, blur (graph-safe).

    Input
    -----
    x : [batch, H, W, C], tf.float32 in [0, 1]
    params : [batch, 10], tf.float32

    Output
    ------
    [batch, H, W, C], tf.float32 in [0, 1]
    """
    x = tf.convert_to_tensor(x, tf.float32)
    params = tf.convert_to_tensor(params, tf.float32)
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    b = tf.shape(x)[0]
    x = tf.image.crop_and_resize(x, params[:, :4], tf.range(b), (h, w), method="bilinear")
    col = lambda j: params[:, j][:, None, None, None]  # noqa: E731
    x = tf.where(col(4) > 0.5, tf.reverse(x, axis=[2]), x)
    x = tf.clip_by_value(x * col(5), 0.0, 1.0)
    grey = tf.reduce_mean(x, axis=-1, keepdims=True) if c == 1 else tf.image.rgb_to_grayscale(x)
    mean = tf.reduce_mean(grey, axis=[1, 2, 3], keepdims=True)
    x = tf.clip_by_value((x - mean) * col(6) + mean, 0.0, 1.0)
    if c == 3:
        grey = tf.image.rgb_to_grayscale(x)
        x = tf.clip_by_value(grey + (x - grey) * col(7), 0.0, 1.0)
        x = tf.where(col(8) > 0.5, tf.tile(tf.image.rgb_to_grayscale(x), [1, 1, 1, 3]), x)
    side = col(9)
    x = _blur_axis(_blur_axis(x, side, 1), side, 2)
    return tf.clip_by_value(x, 0.0, 1.0)


# --------------------------------------------------------------------------- training
def train_hash_network(model: DeepHashNetwork, x, y, *, epochs: int = DEFAULT_TRAINING["epochs"],
                       batch_size: int = DEFAULT_TRAINING["batch_size"],
                       learning_rate: float = DEFAULT_TRAINING["learning_rate"],
                       val_fraction: float = DEFAULT_TRAINING["val_fraction"],
                       patience: int = DEFAULT_TRAINING["patience"],
                       temperature: float = DEFAULT_TRAINING["temperature"],
                       distill_weight: float = DEFAULT_TRAINING["distill_weight"],
                       quant_weight: float = DEFAULT_TRAINING["quant_weight"],
                       sigma: float = DEFAULT_TRAINING["sigma"], weak_scale: float = DEFAULT_TRAINING["weak_scale"],
                       hflip: bool = DEFAULT_TRAINING["hflip"], seed: int = 0,
                       checkpoint_dir: str | Path | None = None, progress: bool | str = True,
                       callbacks: list[Callable] | None = None, desc: str = "hash network",
                       log_dir: str | Path | None = None) -> dict:
    """Train a :class:`DeepHashNetwork` with DHD's losses, through :func:`linksim.training.fit`.

    Every step draws a strongly (``strength`` 1) and a weakly (``weak_scale``) augmented
    view of each image (:func:`augment_views`) and minimises (reference ``main_DHD.py``)

    ``L = L_hp(h_weak) + distill_weight * (1 - cos(h_strong, sg(h_weak))) + quant_weight * L_q(h_weak)``

    (:func:`hash_proxy_loss` at ``temperature``, :func:`self_distillation_loss`,
    :func:`bce_quantization_loss` with ``sigma``). Adam; the learning rate decays from
    ``learning_rate`` to ``learning_rate / 20`` along a cosine over ``epochs``; early
    stopping on the validation loss (``L_hp + quant_weight L_q`` on the un-augmented
    validation images; the best epoch's weights are restored); checkpoints every epoch
    and resume (batches and augmentations are functions of ``(seed, epoch)``).

    Parameters
    ----------
    model : DeepHashNetwork
    epochs, batch_size, patience : int
        Positive.
    learning_rate, temperature, sigma : float
        Positive.
    val_fraction : float
        In (0, 0.5).
    distill_weight, quant_weight : float
        >= 0.
    weak_scale : float
        In [0, 1]: the weak view's transformation probabilities relative to the strong one's.
    hflip : bool
        Horizontal flips in the augmentation (off for digits and text).
    seed : int
        Non-negative; seeds the split, batch order and augmentation.
    checkpoint_dir, log_dir : path, optional
    progress : bool or "epochs"
    callbacks : list of callables ``(epoch, logs)``, optional
    desc : str

    Input
    -----
    x : [N, H, W, C], np.uint8 or float in [0, 1]
    y : [N], int labels in ``range(model.num_classes)``

    Output
    ------
    dict: the history of :func:`linksim.training.fit` (keys ``loss``, ``proxy``,
    ``distill``, ``quant``, ``accuracy`` (nearest proxy) and their ``val_`` versions, ...),
    with ``best_val_loss``, ``n_train``, ``n_val`` and ``config``.

    Raises
    ------
    ValueError
        On an option outside its allowed values, fewer than 4 images, or labels that do
        not match the images or the model's classes.
    """
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        _check_positive_int(name, v)
    for name, v in (("learning_rate", learning_rate), ("temperature", temperature), ("sigma", sigma)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a finite number > 0 (got {v!r})")
    for name, v in (("distill_weight", distill_weight), ("quant_weight", quant_weight)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0 (got {v!r})")
    if isinstance(weak_scale, bool) or not isinstance(weak_scale, (int, float)) or not 0 <= weak_scale <= 1:
        raise ValueError(f"weak_scale must be a number in [0, 1] (got {weak_scale!r})")
    x, y = check_training_data(x, y, model.num_classes, val_fraction, seed)
    config = {"epochs": int(epochs), "batch_size": int(batch_size), "learning_rate": float(learning_rate),
              "val_fraction": float(val_fraction), "patience": int(patience), "temperature": float(temperature),
              "distill_weight": float(distill_weight), "quant_weight": float(quant_weight), "sigma": float(sigma),
              "weak_scale": float(weak_scale), "hflip": bool(hflip), "seed": int(seed)}

    x_tr, y_tr, x_val, y_val, bs, n_batches, opt, variables = split_and_optimizer(
        model, x, y, val_fraction, seed, batch_size, learning_rate, epochs)
    to_unit = unit_scale(x)
    images, labels = tf.constant(x_tr), tf.constant(y_tr)
    rgb = x.shape[-1] == 3
    t, dw, qw, sg = float(temperature), float(distill_weight), float(quant_weight), float(sigma)

    def proxy_accuracy(h, yb):
        pred = tf.argmax(model.proxy_scores(h), -1, output_type=tf.int32)
        return tf.reduce_mean(tf.cast(tf.equal(pred, tf.cast(yb, tf.int32)), tf.float32))

    def train_step(idx, p_strong, p_weak):
        xb, yb = to_unit(tf.gather(images, idx)), tf.gather(labels, idx)
        x_s, x_w = augment_views(xb, p_strong), augment_views(xb, p_weak)
        with tf.GradientTape() as tape:
            h_w = model(x_w, training=True)          # the teacher (DHD's weakly transformed view)
            h_s = model(x_s, training=True)
            l_hp = hash_proxy_loss(h_w, model.proxies, yb, t)
            l_sd = self_distillation_loss(h_s, h_w)
            l_q = bce_quantization_loss(h_w, sg)
            loss = l_hp + dw * l_sd + qw * l_q
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return {"loss": loss, "proxy": l_hp, "distill": l_sd, "quant": l_q, "accuracy": proxy_accuracy(h_w, yb)}

    def val_step(xb, yb):
        h = model(to_unit(xb), training=False)
        l_hp = hash_proxy_loss(h, model.proxies, yb, t)
        l_q = bce_quantization_loss(h, sg)
        return {"loss": l_hp + qw * l_q, "proxy": l_hp, "distill": tf.zeros(()), "quant": l_q,
                "accuracy": proxy_accuracy(h, yb)}

    def epoch_batches(epoch):
        rng = np.random.default_rng([int(seed), epoch])
        order = rng.permutation(len(x_tr))
        m = n_batches * bs
        strong = draw_augmentation(rng, m, 1.0, hflip=hflip, rgb=rgb)
        weak = draw_augmentation(rng, m, weak_scale, hflip=hflip, rgb=rgb)
        return (order[:m].reshape(n_batches, bs).astype(np.int32), strong.reshape(n_batches, bs, -1),
                weak.reshape(n_batches, bs, -1))

    return fit_task_network(model, opt, monitor="val_loss", mode="min", x_tr=x_tr, x_val=x_val, y_val=y_val,
                            config=config, train_step=train_step, epoch_batches=epoch_batches, n_batches=n_batches,
                            val_step=val_step, epochs=int(epochs), seed=int(seed), patience=int(patience),
                            checkpoint_dir=checkpoint_dir, log_dir=log_dir, progress=progress, callbacks=callbacks,
                            desc=desc)


# --------------------------------------------------------------------------- measures (numpy)
def sign_codes(h) -> np.ndarray:
    """Binary codes of hashes: ``+1`` where ``h >= 0``, else ``-1`` (``[N, K]`` int8).

    ``sign(0)`` is taken as ``+1`` so every code is a vertex of the hypercube
    (DHD's ``torch.sign`` would give 0 there; a tanh output is exactly 0 with
    probability 0).
    """
    h = np.asarray(h)
    return np.where(h >= 0, 1, -1).astype(np.int8)


def hamming_distance(a, b) -> np.ndarray:
    """Per-row Hamming distance, in bits, of the sign codes of ``a`` and ``b`` (``[N, K]`` each): ``[N]`` int64."""
    ca, cb = sign_codes(a), sign_codes(b)
    if ca.shape != cb.shape:
        raise ValueError(f"a and b must have the same shape (got {ca.shape} and {cb.shape})")
    return np.sum(ca != cb, axis=-1).astype(np.int64)


def cosine_similarity(a, b) -> np.ndarray:
    """Per-row cosine similarity ``a.b / max(|a| |b|, 1e-8)`` of ``[N, K]`` arrays: ``[N]`` float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (got {a.shape} and {b.shape})")
    den = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-8)
    return np.sum(a * b, axis=-1) / den


def average_precision(query_codes, query_labels, gallery_codes, gallery_labels, top_n: int = 1000,
                      chunk: int = 256) -> np.ndarray:
    """AP@top_n of every query: gallery ranked by Hamming distance of sign codes, relevant = same label.

    As DHD's ``Evaluate_mAP``: the gallery is sorted by Hamming distance to the query;
    **ties are broken by gallery order** (a stable sort: the earlier gallery item
    first), so the result is deterministic; among the first ``top_n`` items with
    ``R`` relevant ones at ranks ``r_1 < ... < r_R``,
    ``AP = (1/R) sum_i i / r_i``, and ``AP = 0`` when ``R = 0`` (the query still
    counts in the mean). ``R`` counts the relevant items retrieved in the top
    ``top_n``, not all relevant gallery items (DHD's and HashNet's convention).

    Input
    -----
    query_codes : [Q, K], real (their signs are used: :func:`sign_codes`)
    query_labels : [Q], int
    gallery_codes : [G, K], real
    gallery_labels : [G], int
    top_n : int
        Positive; ``min(top_n, G)`` items are ranked.

    Output
    ------
    [Q], float64 in [0, 1]

    Raises
    ------
    ValueError
        On shapes that do not match or a non-positive ``top_n``.
    """
    _check_positive_int("top_n", top_n)
    q = sign_codes(query_codes).astype(np.float32)   # +-1 sums are exact in float32 (K <= 1024), BLAS-fast
    g = sign_codes(gallery_codes).astype(np.float32)
    ql = np.asarray(query_labels).reshape(-1)
    gl = np.asarray(gallery_labels).reshape(-1)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"codes must be [Q, K] and [G, K] with the same K (got {q.shape} and {g.shape})")
    if len(ql) != len(q) or len(gl) != len(g):
        raise ValueError(f"labels must match the codes ({len(ql)} for {len(q)} queries, "
                         f"{len(gl)} for {len(g)} gallery items)")
    n = min(int(top_n), len(g))
    k = q.shape[1]
    out = np.zeros(len(q), np.float64)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    small = np.uint8 if k <= 255 else np.uint16                   # a stable sort of small ints is a radix sort
    for j in range(0, len(q), chunk):
        dist = np.rint((k - q[j:j + chunk] @ g.T) / 2).astype(small)  # Hamming distance in bits
        order = np.argsort(dist, axis=1, kind="stable")[:, :n]        # ties: gallery order
        rel = (gl[order] == ql[j:j + chunk, None]).astype(np.float64)
        hits = np.cumsum(rel, axis=1)
        found = rel.sum(axis=1)
        out[j:j + chunk] = np.where(found > 0, (rel * hits / ranks).sum(axis=1) / np.maximum(found, 1), 0.0)
    return out


def mean_average_precision(query_codes, query_labels, gallery_codes, gallery_labels, top_n: int = 1000) -> float:
    """mAP@top_n: the mean of :func:`average_precision` over the queries (float)."""
    return float(np.mean(average_precision(query_codes, query_labels, gallery_codes, gallery_labels, top_n)))


_HASH_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def hash_outputs(model, images, batch_size: int = 500) -> np.ndarray:
    """The continuous hashes ``model(images, training=False)`` batch by batch: ``[N, K]`` float32.

    ``uint8`` images are scaled to [0, 1]. Runs in a ``tf.function`` (traced once per
    model and batch shape).

    Raises
    ------
    ValueError
        If ``images`` is not 4-D or ``batch_size`` is not positive.
    """
    _check_positive_int("batch_size", batch_size)
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C] (got shape {x.shape})")
    if len(x) == 0:
        return np.zeros((0, int(model.bits)), np.float32)
    fn = _HASH_FNS.get(model)
    if fn is None:
        fn = tf.function(lambda xb: model(xb, training=False), reduce_retracing=True)
        _HASH_FNS[model] = fn
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        xb = xb.astype(np.float32) / np.float32(255.0) if xb.dtype == np.uint8 else xb.astype(np.float32)
        out.append(fn(tf.constant(xb)).numpy())
    return np.concatenate(out).astype(np.float32)


# --------------------------------------------------------------------------- model store
def hash_train_seed(config: dict | None = None) -> int:
    """The training seed of a hash network: ``config["train_seed"]``, else 1234."""
    given = (config or {}).get(TRAIN_SEED_OPTION)
    return DEFAULT_TRAIN_SEED if given is None else check_train_seed(given)


def _resolve_config(config: dict | None) -> tuple[dict, dict, dict]:
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"the hash options must be a mapping (got {config!r})")
    config = dict(config or {})
    unknown = sorted(set(config) - set(HASH_OPTIONS), key=str)
    if unknown:
        raise ValueError(f"unknown hash option(s) {', '.join(map(str, unknown))} "
                         f"(allowed: {', '.join(HASH_OPTIONS)})")
    model_cfg = {k: config.get(k, v) for k, v in DEFAULT_MODEL.items()}
    train_cfg = {k: config.get(k, v) for k, v in DEFAULT_TRAINING.items()}
    eval_cfg = {k: config.get(k, v) for k, v in DEFAULT_EVAL.items()}
    _check_bits(model_cfg["bits"])
    _check_positive_int("top_n", eval_cfg["top_n"])
    return model_cfg, train_cfg, eval_cfg


def hash_spec(*, dataset_spec: dict, image_shape, num_classes: int, config: dict | None = None) -> dict:
    """The model-store spec of a hash network: everything that changes its trained weights.

    ``{"task": "hash", "format": 1, "model": {...}, "training": {...}, "dataset":
    dataset_spec, "seed": train_seed}``; ``config`` (a scenario's ``task.hash``)
    overrides :data:`DEFAULT_MODEL` and :data:`DEFAULT_TRAINING`; ``top_n`` is not part
    of it (an evaluation option).

    Raises
    ------
    ValueError
        If ``config`` holds an unknown key (the message lists the allowed ones) or a bad value.
    """
    model_cfg, train_cfg, _ = _resolve_config(config)
    return {"task": "hash", "format": 1,
            "model": {"image_shape": [int(s) for s in image_shape], "num_classes": int(num_classes), **model_cfg},
            "training": {**train_cfg, "loss": "dhd", "lr_schedule": "cosine", "crop_scale": list(CROP_SCALE),
                         "augment": "dhd_small"},
            "dataset": dataset_spec, "seed": hash_train_seed(config)}


def load_or_train_hash_network(store, *, dataset_spec: dict, image_shape, num_classes: int, x_train, y_train,
                               config: dict | None = None, progress: bool | str = True, train_missing: bool = True,
                               x_test=None, y_test=None):
    """The hash network of a data set: loaded from the model store, or trained and stored.

    The store key is the hash of :func:`hash_spec` (name ``hashnet``). A stored model
    that does not fit ``image_shape`` / ``num_classes`` / ``bits`` is reported with a
    warning and trained again; training resumes from the entry's checkpoints.

    Parameters
    ----------
    store : linksim.store.ModelStore
    dataset_spec : dict
        The scenario's data set (name, params, train_size); part of the key.
    image_shape : (H, W, C)
    num_classes : int
    config : dict, optional
        A scenario's ``task.hash`` block (:data:`HASH_OPTIONS`).
    progress : bool or "epochs"
    train_missing : bool
        Train when the store has no model (else raise ValueError).

    Input
    -----
    x_train : [N, H, W, C], np.uint8 or float in [0, 1] (only read when training)
    y_train : [N], int
    x_test, y_test : optional
        When given and the network is trained, its mAP@top_n (test queries against
        the training set) is written to the card (``map_at_top_n``).

    Output
    ------
    model : DeepHashNetwork
    entry : linksim.store.StoredModel

    Raises
    ------
    ValueError
        An unknown or bad option, or no model stored and ``train_missing`` False, or no
        training images when training is needed.
    """
    image_shape = _check_image_shape(image_shape)
    spec = hash_spec(dataset_spec=dataset_spec, image_shape=image_shape, num_classes=num_classes, config=config)
    _, _, eval_cfg = _resolve_config(config)
    seed = spec["seed"]
    model, entry = stored_task_model(
        store, STORE_NAME, spec, lambda m: isinstance(m, DeepHashNetwork) and m.image_shape == image_shape
        and m.num_classes == int(num_classes) and m.bits == spec["model"]["bits"], "hash network",
        f"images {image_shape}, {num_classes} classes, {spec['model']['bits']} bits, seed {seed}", dataset_spec,
        train_missing, x_train is not None and y_train is not None)
    if model is not None:
        return model, entry
    model_cfg, train_cfg = spec["model"], spec["training"]
    keras.utils.set_random_seed(int(seed))
    model = DeepHashNetwork(image_shape, int(num_classes), bits=model_cfg["bits"], width=model_cfg["width"],
                            name="hashnet")
    t0 = time.perf_counter()
    entry = store.entry(STORE_NAME, spec)
    history = train_hash_network(model, x_train, y_train, seed=int(seed), checkpoint_dir=entry.checkpoint_dir,
                                 log_dir=entry.log_dir, progress=progress, desc=f"hash network ({model.bits} bits)",
                                 **{k: train_cfg[k] for k in DEFAULT_TRAINING})
    seconds = time.perf_counter() - t0
    facts = {"task": "hash", "bits": model.bits, "final_val_loss": history["best_val_loss"],
             "final_val_proxy_accuracy": history["val_accuracy"][history["best_epoch"] - 1]
             if history["best_epoch"] else None,
             **task_model_facts(model, history, seconds, image_shape, num_classes, dataset_spec, seed)}
    if x_test is not None and y_test is not None:
        top_n = int(eval_cfg["top_n"])
        gallery = hash_outputs(model, x_train)
        queries = hash_outputs(model, x_test)
        facts["retrieval"] = {"metric": f"mAP@{top_n}", "top_n": top_n,
                              "map": mean_average_precision(queries, y_test, gallery, y_train, top_n),
                              "queries": "test images", "gallery": "training images (all, with the validation part)",
                              "ranking": "Hamming distance of sign codes, ties by gallery order",
                              "relevant": "same label", "n_queries": int(len(queries)),
                              "n_gallery": int(len(gallery))}
    entry = store.save(STORE_NAME, spec, model, history, facts)
    return model, entry
