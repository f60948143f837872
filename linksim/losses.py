"""Training losses of the semantic JSCC schemes: SD-JSCC's gradient-based semantic weights and semantic loss.

Sun, Guo, Yang, Chen, Tang, Liu, *Deep joint source-channel coding for wireless
image transmission with semantic importance* (SD-JSCC), section III.

GSW: gradient-based semantic weights (eqs. 7-10)
------------------------------------------------
For a frozen downstream classifier with feature maps ``f_1 .. f_K`` (each ``M x N``)
of one layer (eq. 7) and perception results ``y^1 .. y^C``:

- eq. 8: ``w_k^c = 1/(M N) sum_{m,n} d y^c / d f_k[m, n]``;
- eq. 9: ``w_k = 1/C sum_c w_k^c`` (the average over *all* C perception results);
- the paper writes eqs. 8-9 for one image; linksim averages ``w_k`` over the images
  it is given (a calibration set, or a batch);
- eq. 10: ``W' = r * softmax(tau * W)``.

Reading decisions (the paper leaves them implicit):

- **y^c are the class logits** (pre-softmax scores). Eq. 9 averages over all C
  results; were ``y^c`` the softmax probabilities, ``sum_c y^c = 1`` and eq. 9 would
  give ``W = 0`` for every image, hence uniform ``W'`` whatever the classifier:
  the GSW module would do nothing. The logits are also what Grad-CAM, the paper's
  reference [16] for the gradient idea, differentiates ("the score for class c,
  before the softmax").
- **all classes, not the predicted one**: eq. 9 says so explicitly ("the
  comprehensive influence of feature map f_k on all perception results"), unlike
  Grad-CAM, which uses one class. ``classes="predicted"`` gives the Grad-CAM
  variant (the predicted class's logit per image) as a documented alternative.
  Note that a softmax classifier is invariant to adding one function to every
  logit, so the class-averaged logit that eq. 9 differentiates is a direction its
  cross-entropy training does not pin down; the weights are still well defined
  and reproducible for a given trained classifier.
- **the feature maps are the layer's outputs after its activation** (linksim's
  :class:`~linksim.tasks.ImageClassifier` blocks end in a ReLU), ``"conv4"`` by
  default, the last convolution block (Grad-CAM's choice of the last
  convolutional layer).

Because eqs. 8 and 9 and the average over images are all linear, ``W`` is computed
with a single gradient of ``sum_b sum_c y_b^c`` with respect to the feature maps
(each image's logits depend only on its own features: the classifier runs in
inference mode), summed over ``b, m, n`` and divided by ``B C M N``; this equals
the per-class loop of eqs. 8-9 (``per_class=True`` computes that loop, and the
tests compare both with finite differences).

Semantic loss (eq. 13)
----------------------
``L = 1/B sum_b sum_k w'_k ||f_k(x'_b) - f_k(x_b)||^2`` with the squared
Frobenius norm of each ``M x N`` map (a sum over positions, as written, not a
mean), the transmitted image ``x_b`` and the received ``x'_b`` passed through the
same frozen classifier (eqs. 11-12).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["gradient_importance", "semantic_weights", "gradient_semantic_weights", "SemanticLoss",
           "WEIGHTS_FROM", "CLASS_AVERAGING"]

#: Allowed values of ``SemanticLoss(weights_from=...)``.
WEIGHTS_FROM = ("calibration", "batch")

#: Allowed values of ``classes``: eq. 9's average over all classes, or Grad-CAM's predicted class.
CLASS_AVERAGING = ("all", "predicted")


def _check_classifier(classifier):
    if not callable(getattr(classifier, "call_with_features", None)):
        raise TypeError("classifier must offer call_with_features(images, layer_names, training=False) -> "
                        "{'logits': [batch, C], layer: [batch, M, N, K]} (e.g. linksim.tasks.ImageClassifier); "
                        f"got {type(classifier).__name__}")


def _check_layer(classifier, layer):
    names = getattr(classifier, "feature_layers", None)
    if names is None:
        from linksim.tasks.classifier import FEATURE_LAYERS

        names = FEATURE_LAYERS
    if not isinstance(layer, str) or layer not in names:
        raise ValueError(f"layer must be one of {', '.join(names)} (got {layer!r})")


def _check_classes(classes):
    if classes not in CLASS_AVERAGING:
        raise ValueError(f"classes must be one of {', '.join(CLASS_AVERAGING)} (got {classes!r})")


def _check_positive_number(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not np.isfinite(v) \
            or v <= 0:
        raise ValueError(f"{name} must be a positive finite number (got {v!r})")


def _gradient_sums(classifier, images, layer, classes, per_class):
    """Sums over images and positions of d(score)/d f_k, the count B M N and the number of classes C.

    The sums are [K], or [C, K] with ``per_class`` (one gradient per class logit).
    """
    with tf.GradientTape(persistent=per_class) as tape:
        out = classifier.call_with_features(images, (layer,), training=False)
        feats, logits = out[layer], out["logits"]
        tape.watch(feats)
        n_classes = int(logits.shape[-1])
        if per_class:                                                        # y^c summed over the images
            scores = [tf.reduce_sum(logits[:, c]) for c in range(n_classes)]
        elif classes == "all":
            score = tf.reduce_sum(logits)
        else:  # the predicted class's logit of every image (Grad-CAM)
            score = tf.reduce_sum(tf.reduce_max(logits, axis=-1))
    shape = tf.shape(feats)
    count = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
    if not per_class:
        g = tape.gradient(score, feats)                                      # [B, M, N, K]
        return tf.reduce_sum(g, axis=[0, 1, 2]), count, n_classes
    rows = []
    for score in scores:                                                     # a loop over the C results
        rows.append(tf.reduce_sum(tape.gradient(score, feats), axis=[0, 1, 2]))
    del tape
    return tf.stack(rows), count, n_classes


def _importance_of_batch(classifier, images, layer, classes):
    """``W`` (eq. 9) of one batch, graph-safe (for ``weights_from="batch"`` inside ``tf.function``)."""
    s, count, n_classes = _gradient_sums(classifier, images, layer, classes, False)
    return s / (count * (float(n_classes) if classes == "all" else 1.0))


def gradient_importance(classifier, images, layer: str = "conv4", *, classes: str = "all",
                        per_class: bool = False, batch_size: int = 256) -> tf.Tensor:
    """The raw semantic importance ``W`` of SD-JSCC's GSW module (eqs. 7-9), averaged over images.

    Parameters
    ----------
    classifier : linksim.tasks.ImageClassifier
        The frozen downstream network (anything with
        ``call_with_features(images, layer_names, training=False)``); run in inference mode.
    layer : str
        The feature layer (eq. 7), one of the classifier's feature layers
        (``"conv1"`` .. ``"conv4"``).
    classes : {"all", "predicted"}
        ``"all"`` (eq. 9): average over all C class logits; ``"predicted"``: the
        logit of each image's predicted class (Grad-CAM), not in the paper.
    per_class : bool
        Return ``w_k^c`` (eq. 8, averaged over images) for every class instead of
        their mean (a loop over the C logits; for inspection and tests).
    batch_size : int
        Images per gradient pass.

    Input
    -----
    images : [B, H, W, C_img], float32 in [0, 1] (numpy or tensor)

    Output
    ------
    [K], tf.float32 (``per_class``: [C, K]): ``w_k`` of eq. 9 (``w_k^c`` of eq. 8)
    averaged over the images.

    Raises
    ------
    ValueError
        For an unknown layer or ``classes`` value, ``per_class`` with
        ``classes="predicted"``, a non-positive ``batch_size`` or no images.
    TypeError
        If ``classifier`` has no ``call_with_features``.
    """
    _check_classifier(classifier)
    _check_layer(classifier, layer)
    _check_classes(classes)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (got {batch_size!r})")
    if per_class and classes != "all":
        raise ValueError("per_class=True gives every class's w_k^c; it needs classes='all'")
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty batch [B, H, W, C] (got shape {images.shape})")
    total, count, n_classes = None, 0.0, 1
    for j in range(0, len(images), int(batch_size)):
        s, c, n_classes = _gradient_sums(classifier, tf.constant(images[j:j + int(batch_size)]), layer,
                                         classes, per_class)
        total = s if total is None else total + s
        count += float(c)
    n_results = float(n_classes) if (classes == "all" and not per_class) else 1.0
    return total / (count * n_results)


def semantic_weights(importance, tau: float = 1.0, r: float = 1.0) -> tf.Tensor:
    """Eq. 10: ``W' = r * softmax(tau * W)``.

    Parameters
    ----------
    tau : float > 0
        Temperature: small ``tau`` gives nearly uniform weights ``r / K``, large
        ``tau`` concentrates the weight on the most important maps.
    r : float > 0
        Scale; the weights sum to ``r``.

    Input
    -----
    importance : [K], float: ``W`` of eq. 9 (:func:`gradient_importance`)

    Output
    ------
    [K], tf.float32, positive, summing to ``r``

    Raises
    ------
    ValueError
        If ``tau`` or ``r`` is not a positive finite number.
    """
    _check_positive_number("tau", tau)
    _check_positive_number("r", r)
    w = tf.convert_to_tensor(importance, tf.float32)
    return float(r) * tf.nn.softmax(float(tau) * w)


def gradient_semantic_weights(classifier, images, layer: str = "conv4", tau: float = 1.0, r: float = 1.0, *,
                              classes: str = "all", batch_size: int = 256) -> tf.Tensor:
    """SD-JSCC's GSW module (eqs. 7-10): the semantic weight ``w'_k`` of every feature map.

    Gradients of the classifier's class *logits* ``y^c`` (see the module docstring
    for why logits) with respect to the feature maps ``f_k`` of ``layer``,
    averaged over width and height (eq. 8), over all C classes (eq. 9) and over
    ``images``, then ``W' = r * softmax(tau * W)`` (eq. 10).

    Parameters
    ----------
    classifier : linksim.tasks.ImageClassifier
        The frozen downstream network (inference mode).
    layer : str
        Feature layer, ``"conv1"`` .. ``"conv4"`` (default ``"conv4"``).
    tau : float > 0
        Temperature of eq. 10.
    r : float > 0
        Scale of eq. 10 (the weights sum to ``r``).
    classes : {"all", "predicted"}
        As :func:`gradient_importance` (default ``"all"``, eq. 9).
    batch_size : int
        Images per gradient pass.

    Input
    -----
    images : [B, H, W, C_img], float32 in [0, 1]

    Output
    ------
    [K], tf.float32: the semantic weights ``W'``

    Raises
    ------
    ValueError
        For an unknown layer or ``classes``, a non-positive ``tau``, ``r`` or
        ``batch_size``, or no images.
    TypeError
        If ``classifier`` has no ``call_with_features``.
    """
    _check_positive_number("tau", tau)
    _check_positive_number("r", r)
    w = gradient_importance(classifier, images, layer, classes=classes, batch_size=batch_size)
    return semantic_weights(w, tau, r)


class SemanticLoss:
    """SD-JSCC's semantic loss (eq. 13): GSW-weighted squared distance of classifier feature maps.

    ``L(x, x') = 1/B sum_b sum_k w'_k ||f_k(x'_b) - f_k(x_b)||^2`` (+ optionally
    ``mse_weight * mean((x - x')^2)``, not in the paper), with the feature maps
    ``f_k`` of ``layer`` of a frozen classifier (eqs. 11-12; inference mode, its
    weights are never trained by this loss) and the semantic weights ``w'_k`` of
    the GSW module (eqs. 7-10, :func:`gradient_semantic_weights`).

    A callable ``loss_fn(x, x_hat)`` for :func:`linksim.training.train_jscc`.

    Parameters
    ----------
    classifier : linksim.tasks.ImageClassifier
        The downstream network (frozen).
    layer : str
        Feature layer, ``"conv1"`` .. ``"conv4"`` (default ``"conv4"``).
    gsw : bool
        True (default): semantic weights from the GSW module. False: every weight
        is 1, the paper's ablation "SD-JSCC w/o GSW" (section IV-C2).
    weights_from : {"calibration", "batch"}
        ``"calibration"`` (default): ``W'`` is computed once, from
        ``calibration_images``, and fixed during training: Algorithm 1 obtains the
        weights (step 2) before the training loop (steps 4-11), and eq. 13's
        ``w'_k`` carry no batch index. ``"batch"``: recomputed in every call from
        the transmitted images ``x`` of the batch (treated as constants: no gradient
        flows through the weights).
    calibration_images : [N, H, W, C], float32 in [0, 1], optional
        Needed for ``weights_from="calibration"`` with ``gsw=True`` (unless
        ``weights`` is given).
    tau, r : float > 0
        Eq. 10's temperature and scale (the weights sum to ``r``).
    classes : {"all", "predicted"}
        Eq. 9's average over all classes (default), or the predicted class (Grad-CAM).
    weights : [K] array, optional
        Fixed semantic weights to use as they are (e.g. read back from a model card);
        overrides the GSW computation.
    mse_weight : float >= 0
        Weight of an added pixel MSE term (default 0: the paper trains on eq. 13 alone).
    batch_size : int
        Images per gradient pass of the calibration.

    Input
    -----
    x : [B, H, W, C], tf.float32 in [0, 1], the transmitted images
    x_hat : [B, H, W, C], tf.float32 in [0, 1], the received images

    Output
    ------
    scalar tf.float32: the batch mean of eq. 13 (plus the MSE term)

    Attributes
    ----------
    weights : [K] tf.float32 or None
        The fixed weights (None with ``weights_from="batch"`` and ``gsw=True``).

    Raises
    ------
    ValueError
        For an unknown ``layer``, ``weights_from`` or ``classes``, a non-positive
        ``tau`` / ``r``, a negative ``mse_weight``, missing calibration images, or
        ``weights`` of the wrong length.
    TypeError
        If ``classifier`` has no ``call_with_features``.
    """

    def __init__(self, classifier, layer: str = "conv4", *, gsw: bool = True,
                 weights_from: str = "calibration", calibration_images=None, tau: float = 1.0, r: float = 1.0,
                 classes: str = "all", weights=None, mse_weight: float = 0.0, batch_size: int = 256):
        _check_classifier(classifier)
        _check_layer(classifier, layer)
        if weights_from not in WEIGHTS_FROM:
            raise ValueError(f"weights_from must be one of {', '.join(WEIGHTS_FROM)} (got {weights_from!r})")
        _check_classes(classes)
        _check_positive_number("tau", tau)
        _check_positive_number("r", r)
        if isinstance(mse_weight, bool) or not isinstance(mse_weight, (int, float)) or not mse_weight >= 0:
            raise ValueError(f"mse_weight must be a number >= 0 (got {mse_weight!r})")
        self.classifier = classifier
        self.layer = layer
        self.gsw = bool(gsw)
        self.weights_from = weights_from
        self.tau, self.r = float(tau), float(r)
        self.classes = classes
        self.mse_weight = float(mse_weight)
        self.batch_size = int(batch_size)
        shape = tuple(int(s) for s in classifier.image_shape)
        out = classifier.call_with_features(tf.zeros((1,) + shape), (layer,), training=False)
        self._num_feature_maps = k = int(out[layer].shape[-1])
        if weights is not None:
            w = np.asarray(weights, np.float32).reshape(-1)
            if w.shape != (k,):
                raise ValueError(f"weights must hold one value per feature map of {layer} ({k}); got {w.shape}")
            self.weights = tf.constant(w)
        elif not self.gsw:
            self.weights = tf.ones([k], tf.float32)            # the ablation: every weight 1
        elif weights_from == "calibration":
            if calibration_images is None or len(calibration_images) == 0:
                raise ValueError("weights_from='calibration' needs calibration_images (the weights are "
                                 "computed once from them); or use weights_from='batch'")
            self.weights = gradient_semantic_weights(classifier, calibration_images, layer, self.tau, self.r,
                                                     classes=classes, batch_size=self.batch_size)
        else:
            self.weights = None

    @property
    def num_feature_maps(self) -> int:
        """K, the channels of the feature layer."""
        return self._num_feature_maps

    def batch_weights(self, x) -> tf.Tensor:
        """The weights used for a batch of transmitted images ``x``: [K], tf.float32, no gradient."""
        if self.weights is not None:
            return self.weights
        w = _importance_of_batch(self.classifier, tf.convert_to_tensor(x, tf.float32), self.layer, self.classes)
        return tf.stop_gradient(semantic_weights(w, self.tau, self.r))

    def per_image(self, x, x_hat) -> tf.Tensor:
        """``sum_k w'_k ||f_k(x'_b) - f_k(x_b)||^2`` for every image b: [B], tf.float32."""
        x = tf.convert_to_tensor(x, tf.float32)
        x_hat = tf.convert_to_tensor(x_hat, tf.float32)
        w = self.batch_weights(x)
        # one pass for both (inference mode: every image's features depend on that image only)
        both = self.classifier.call_with_features(tf.concat([x, x_hat], 0), (self.layer,),
                                                  training=False)[self.layer]
        b = tf.shape(x)[0]
        f, f_hat = tf.stop_gradient(both[:b]), both[b:]
        sq = tf.reduce_sum(tf.square(f_hat - f), axis=[1, 2])               # [B, K]: ||f_k' - f_k||^2
        return tf.reduce_sum(sq * w, axis=-1)

    def __call__(self, x, x_hat):
        loss = tf.reduce_mean(self.per_image(x, x_hat))
        if self.mse_weight:
            loss = loss + self.mse_weight * tf.reduce_mean(tf.square(tf.cast(x, tf.float32) - x_hat))
        return loss

    def get_config(self) -> dict:
        """The options (not the classifier); with the fixed weights when there are any."""
        return {"layer": self.layer, "gsw": self.gsw, "weights_from": self.weights_from, "tau": self.tau,
                "r": self.r, "classes": self.classes, "mse_weight": self.mse_weight,
                "weights": None if self.weights is None else [float(v) for v in self.weights.numpy()]}
