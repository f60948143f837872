"""Training losses of the JSCC schemes, registered by scenario name, and SD-JSCC's semantic loss.

Registered losses (``linksim.registry.LOSSES``; a stage of a ``jscc`` scheme names them)
----------------------------------------------------------------------------------------
- ``mse`` (:class:`MSELoss`): pixel mean squared error, DeepJSCC's loss;
- ``semantic`` (:class:`SDJSCCSemanticLoss`): SD-JSCC's eq. 13 on the scenario's
  downstream classifier, with the GSW weights of eqs. 7-10;
- ``dhd`` (:class:`DHDAlignmentLoss`): ``MSE(S, S') + lam (1 - cos(H(S), H(S')))`` with
  the scenario's frozen deep hash network H (``task.hash``, DHD; ``docs/dhd.md``).

The interface of a registered loss is :class:`JSCCLoss`: a callable
``loss(x, out) -> scalar`` (``out`` is what the JSCC model returns: the received
images, or a dict of named outputs with key ``"images"``; :func:`images_of` reads
either), a :meth:`~JSCCLoss.prepare` hook that receives the scheme context before
training (to load a classifier, calibrate weights, ...), :meth:`~JSCCLoss.spec`
(what enters the trained model's store key), :meth:`~JSCCLoss.card` (facts for
the model card) and ``get_config``. A new loss is one file::

    from linksim.losses import JSCCLoss, images_of
    from linksim.registry import LOSSES

    @LOSSES.register("l1")
    class L1Loss(JSCCLoss):
        label = "l1"
        def __call__(self, x, out):
            return tf.reduce_mean(tf.abs(x - images_of(out)))

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

from linksim.registry import LOSSES
from linksim.training import _split, images_of, mse_loss

__all__ = ["gradient_importance", "semantic_weights", "gradient_semantic_weights", "SemanticLoss",
           "WEIGHTS_FROM", "CLASS_AVERAGING", "images_of", "JSCCLoss", "MSELoss", "SDJSCCSemanticLoss",
           "classifier_request", "DHDAlignmentLoss", "hash_alignment", "hash_request_of"]

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


# ------------------------------------------------------------------ registered losses of JSCC stages
class JSCCLoss:
    """Base of the losses a training stage of a ``jscc`` scheme names (see the module docstring).

    Subclasses register themselves with ``@LOSSES.register(name)``, take their
    options as keyword arguments (validated in the constructor, ``ValueError``
    naming the allowed values) and implement ``__call__``.

    Input
    -----
    x : [batch, H, W, C], tf.float32 in [0, 1], the transmitted images
    out : [batch, H, W, C] tf.float32, or a dict with key ``"images"``: the model's output

    Output
    ------
    scalar tf.float32
    """

    #: The name of the loss in a stage's store spec (``training.loss``); part of the store key.
    label = "loss"
    #: True: called as ``loss(x, out, labels)`` with the batch's training labels ([batch] int32;
    #: the stage then needs a labelled data set).
    uses_labels = False

    def prepare(self, context, *, val_fraction: float) -> None:
        """Hook called once before the stage trains, with the scheme's context.

        ``val_fraction`` is the stage's validation split: the images a loss may
        calibrate on are the training part of :func:`linksim.training._split`
        with ``context.seed``, which here is the scheme's training seed
        (:meth:`linksim.schemes.jscc.JSCCScheme.training_context`), not the scenario's.
        Default: nothing to prepare.
        """

    def spec(self, context) -> dict:
        """Entries added to the stage's store spec (everything that changes the trained weights)."""
        return {}

    def card(self) -> dict:
        """Facts written to the trained model's card (after :meth:`prepare`)."""
        return {}

    def __call__(self, x, out):  # pragma: no cover - interface
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


@LOSSES.register("mse")
class MSELoss(JSCCLoss):
    """Pixel mean squared error over the batch, DeepJSCC's training loss: ``mean((x - x')^2)``."""

    label = "mse"

    def __call__(self, x, out):
        return mse_loss(x, out)


@LOSSES.register("log_mse")
class LogMSELoss(JSCCLoss):
    """``mean_i 10 log10(mse_i)`` over the images of the batch: minus their mean PSNR, in dB.

    The metric linksim reports (the mean of the per-image PSNRs) as a loss. Its
    gradient weighs every image's squared error by ``1 / mse_i``, so when the training
    SNR is drawn per image from a range (an SNR-adaptive model) every SNR counts by
    its *relative* error: with the plain MSE, images at low SNR, whose errors are
    ten to a hundred times larger, would decide the training alone.
    """

    label = "log_mse"

    def __call__(self, x, out):
        err = tf.reduce_mean(tf.square(x - images_of(out)), axis=[1, 2, 3])
        return tf.reduce_mean(10.0 * tf.math.log(tf.maximum(err, 1e-10)) / tf.math.log(10.0))


#: Defaults of the GSW options of :class:`SDJSCCSemanticLoss` (without GSW, other values are refused).
GSW_DEFAULTS = {"tau": 3000.0, "r": None, "weights_from": "calibration", "classes": "all",
                "calibration_size": 1000}


def _positive_int(name, v, allow_none=False):
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer{' or null' if allow_none else ''} (got {v!r})")


def _number(name, v, *, minimum=None, positive=False):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v) \
            or (positive and not v > 0) or (minimum is not None and v < minimum):
        what = "a number > 0" if positive else f"a number >= {minimum}" if minimum is not None else "a number"
        raise ValueError(f"{name} must be {what} (got {v!r})")


def classifier_request(context, label: str = "SD-JSCC") -> dict:
    """Arguments of :func:`~linksim.tasks.load_or_train_classifier` from a scheme context.

    Reads ``context.extra``: ``"train_labels"`` (required, the labels of
    ``context.train_images``), ``"num_classes"`` (optional, default
    ``max(train_labels) + 1``), ``"classifier_config"`` or ``"task"["classifier"]``
    (the classifier's options, with its ``train_seed``: the classifier is the
    classification task's, whatever the scenario's or the scheme's seed).

    Raises
    ------
    ValueError
        Without training labels, or with as many labels as training images.
    """
    from linksim.tasks.classifier import classifier_train_seed

    labels, num_classes = training_classes_of(context, f"{label}: SD-JSCC needs the downstream classifier")
    config = _task_network_config(context, "classifier")
    return {"dataset_spec": context.dataset_spec, "image_shape": tuple(context.image_shape),
            "num_classes": num_classes, "x_train": context.train_images, "y_train": labels,
            "seed": classifier_train_seed(config), "config": config}


@LOSSES.register("semantic")
class SDJSCCSemanticLoss(JSCCLoss):
    """SD-JSCC's semantic loss (eq. 13) on the scenario's downstream classifier, as a stage loss.

    :meth:`prepare` loads (or trains and stores) the scenario's classifier
    (:func:`linksim.tasks.load_or_train_classifier`, the entry the accuracy metric
    uses) and builds :class:`SemanticLoss` on it, with GSW weights calibrated on the
    first ``calibration_size`` images of the stage's training split.

    Parameters
    ----------
    feature_layer : str
        Classifier layer of eq. 7, ``"conv1"`` .. ``"conv4"`` (default ``"conv4"``).
    gsw : bool
        True: GSW weights (eqs. 7-10); False: every weight 1 (the paper's ablation),
        and the GSW options below must keep their defaults.
    tau : float > 0
        Temperature of eq. 10 (default 3000; see :mod:`linksim.schemes.sdjscc`).
    r : float > 0 or None
        Scale of eq. 10; None (default): the number of feature maps K.
    weights_from : {"calibration", "batch"}
    classes : {"all", "predicted"}
    calibration_size : int
        Training images the GSW weights are computed from (default 1000).
    mse_weight : float >= 0
        Weight of an added pixel MSE term (default 0, not in the paper).

    Raises
    ------
    ValueError
        For an option outside its allowed values, or a GSW option with ``gsw=False``.
    """

    def __init__(self, feature_layer: str = "conv4", gsw: bool = True, tau: float = GSW_DEFAULTS["tau"],
                 r: float | None = GSW_DEFAULTS["r"], weights_from: str = GSW_DEFAULTS["weights_from"],
                 classes: str = GSW_DEFAULTS["classes"], calibration_size: int = GSW_DEFAULTS["calibration_size"],
                 mse_weight: float = 0.0):
        from linksim.tasks.classifier import FEATURE_LAYERS

        if feature_layer not in FEATURE_LAYERS:
            raise ValueError(f"feature_layer must be one of {', '.join(FEATURE_LAYERS)} (got {feature_layer!r})")
        self.gsw = bool(gsw)
        if not self.gsw:
            given = {"tau": tau, "r": r, "weights_from": weights_from, "classes": classes,
                     "calibration_size": calibration_size}
            odd = sorted(k for k, v in given.items() if v != GSW_DEFAULTS[k])
            if odd:
                raise ValueError(f"SD-JSCC without the GSW module (every semantic weight 1): option(s) "
                                 f"{', '.join(odd)} do not apply")
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not np.isfinite(tau) or tau <= 0:
            raise ValueError(f"tau must be a positive number (got {tau!r})")
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float)) or not np.isfinite(r)
                              or r <= 0):
            raise ValueError(f"r must be a positive number or null (null: the number of feature maps) "
                             f"(got {r!r})")
        if weights_from not in WEIGHTS_FROM:
            raise ValueError(f"weights_from must be one of {', '.join(WEIGHTS_FROM)} (got {weights_from!r})")
        _check_classes(classes)
        _positive_int("calibration_size", calibration_size)
        if isinstance(mse_weight, bool) or not isinstance(mse_weight, (int, float)) or not mse_weight >= 0:
            raise ValueError(f"mse_weight must be a number >= 0 (got {mse_weight!r})")
        self.feature_layer = feature_layer
        self.tau, self.r = float(tau), (None if r is None else float(r))
        self.weights_from, self.classes = weights_from, classes
        self.calibration_size, self.mse_weight = int(calibration_size), float(mse_weight)
        self.loss = None               # the SemanticLoss, after prepare()
        self.classifier_entry = None

    @property
    def label(self) -> str:
        return "sdjscc_semantic" + ("+mse" if self.mse_weight else "")

    def semantic_config(self) -> dict:
        """The options as they enter the store spec (``semantic``); the GSW ones only with GSW."""
        cfg = {"feature_layer": self.feature_layer, "mse_weight": self.mse_weight, "gsw": self.gsw}
        if self.gsw:
            cfg.update(tau=self.tau, r=self.r, weights_from=self.weights_from, classes=self.classes,
                       calibration_size=self.calibration_size)
        return cfg

    def _classifier_key(self, request: dict) -> str:
        from linksim.store import spec_key
        from linksim.tasks.classifier import classifier_spec

        return spec_key(classifier_spec(dataset_spec=request["dataset_spec"], image_shape=request["image_shape"],
                                        num_classes=request["num_classes"], seed=request["seed"],
                                        config=request["config"]))

    def spec(self, context) -> dict:
        request = classifier_request(context)
        return {"classifier": {"key": self._classifier_key(request), "num_classes": request["num_classes"]},
                "semantic": self.semantic_config()}

    def build(self, classifier, context, *, val_fraction: float) -> SemanticLoss:
        """Eq. 13 on ``classifier``, with weights calibrated on the stage's training split when asked."""
        if not self.gsw:
            return SemanticLoss(classifier, self.feature_layer, gsw=False, mse_weight=self.mse_weight)
        calib = None
        if self.weights_from == "calibration":

            # the training part of the split train_jscc uses: the validation images stay unseen
            tr_idx, _ = _split(len(context.train_images), val_fraction, int(context.seed))
            calib = np.asarray(context.train_images, np.float32)[tr_idx[:self.calibration_size]]
        probe = SemanticLoss(classifier, self.feature_layer, gsw=False)       # only to count the maps
        r = float(probe.num_feature_maps) if self.r is None else self.r
        return SemanticLoss(classifier, self.feature_layer, gsw=True, weights_from=self.weights_from,
                            calibration_images=calib, tau=self.tau, r=r, classes=self.classes,
                            mse_weight=self.mse_weight)

    def prepare(self, context, *, val_fraction: float) -> None:
        """Load (or train and store) the scenario's classifier and build eq. 13 on it.

        Raises
        ------
        ValueError
            Without ``context.extra["train_labels"]``, or when the classifier is
            missing and ``context.train_missing`` is False.
        """
        from linksim.tasks import load_or_train_classifier

        classifier, self.classifier_entry = load_or_train_classifier(
            context.store, progress=context.progress, train_missing=context.train_missing,
            **classifier_request(context))
        self.loss = self.build(classifier, context, val_fraction=val_fraction)

    @property
    def semantic_weights(self) -> list[float] | None:
        """The fixed GSW weights ``W'`` (None before :meth:`prepare` or with ``weights_from="batch"``)."""
        if self.loss is None or self.loss.weights is None:
            return None
        return [float(v) for v in self.loss.weights.numpy()]

    def card(self) -> dict:
        return {"semantic_loss": self.loss.get_config(), "semantic_weights": self.semantic_weights,
                "classifier_model": str(self.classifier_entry.path) if self.classifier_entry else None}

    def __call__(self, x, out):
        if self.loss is None:
            raise ValueError("the semantic loss needs prepare(context) first (it loads the classifier)")
        return self.loss(x, images_of(out))

    def get_config(self) -> dict:
        return {"feature_layer": self.feature_layer, "gsw": self.gsw, "tau": self.tau, "r": self.r,
                "weights_from": self.weights_from, "classes": self.classes,
                "calibration_size": self.calibration_size, "mse_weight": self.mse_weight}


def training_labels_of(context, needs: str) -> np.ndarray:
    """The training labels of a scheme context (``context.extra["train_labels"]``), one per training image.

    Raises
    ------
    ValueError
        ``"<needs>, hence the training labels; ..."`` without labels, or with as many
        labels as training images.
    """
    labels = (context.extra or {}).get("train_labels")
    if labels is None:
        raise ValueError(f"{needs}, hence the training labels; the scheme context has none "
                         f"(context.extra['train_labels'] is missing; the data set must be labelled)")
    labels = np.asarray(labels)
    if len(labels) != len(context.train_images):
        raise ValueError(f"{needs.split(':')[0]}: context.extra['train_labels'] has {len(labels)} labels for "
                         f"{len(context.train_images)} training images")
    return labels


def training_classes_of(context, needs: str) -> tuple[np.ndarray, int]:
    """``(labels, num_classes)`` of a scheme context: :func:`training_labels_of`, and
    ``context.extra["num_classes"]`` (default ``max(labels) + 1``)."""
    labels = training_labels_of(context, needs)
    num_classes = (context.extra or {}).get("num_classes")
    return labels, int(np.max(labels)) + 1 if num_classes is None else int(num_classes)


def _task_network_config(context, name: str):
    """The options of a task's network in a scheme context: ``extra["<name>_config"]``, else the scenario's
    ``task.<name>`` (``extra["task"][name]``), else None."""
    extra = context.extra or {}
    config = extra.get(f"{name}_config")
    return (extra.get("task") or {}).get(name) if config is None else config


# ------------------------------------------------------------------ DHD hash alignment
def hash_request_of(context, label: str = "dhd") -> dict:
    """Arguments of :func:`~linksim.tasks.hashing.load_or_train_hash_network` from a scheme context.

    Reads ``context.extra``: ``"train_labels"`` (required), ``"num_classes"`` (optional)
    and ``"hash_config"`` or ``"task"["hash"]`` (the scenario's ``task.hash`` block: the
    network the ``hashing`` task's metrics use, with its own ``train_seed``).

    Raises
    ------
    ValueError
        Without training labels, or with as many labels as training images.
    """
    from linksim.tasks.retrieval import hash_request

    labels = training_labels_of(context, f"{label}: the hash alignment loss needs the deep hash network")
    return hash_request(dataset_spec=context.dataset_spec, image_shape=context.image_shape,
                        x_train=context.train_images, y_train=labels,
                        num_classes=(context.extra or {}).get("num_classes"),
                        config=_task_network_config(context, "hash"))


def hash_alignment(hash_network, x, x_hat, lam: float):
    """``MSE(x, x_hat) + lam * mean_b (1 - cos(H(x_b), H(x_hat_b)))`` with ``H`` frozen (inference mode).

    The hashes are H's continuous (tanh) outputs; no gradient reaches H's weights
    (they are not among the trained variables, and H runs with ``training=False``
    so its batch-normalisation statistics do not move). The gradient flows through
    ``H(x_hat)`` into ``x_hat``; ``H(x)`` is a constant.

    Input
    -----
    x, x_hat : [batch, H, W, C], tf.float32 in [0, 1]
    lam : float >= 0

    Output
    ------
    scalar tf.float32
    """
    from linksim.tasks.hashing import _cosine

    x = tf.convert_to_tensor(x, tf.float32)
    x_hat = tf.convert_to_tensor(x_hat, tf.float32)
    mse = tf.reduce_mean(tf.square(x - x_hat))
    if not lam:
        return mse
    b = tf.shape(x)[0]
    both = hash_network(tf.concat([x, x_hat], 0), training=False)   # inference mode: per-image outputs
    h, h_hat = tf.stop_gradient(both[:b]), both[b:]
    return mse + float(lam) * tf.reduce_mean(1.0 - _cosine(h, h_hat))


@LOSSES.register("dhd")
class DHDAlignmentLoss(JSCCLoss):
    """Hash-aligned reconstruction: ``MSE(S, S') + lam * (1 - cos(H(S), H(S')))`` with the DHD network H frozen.

    Bergström, Gündüz, Günlü (the DHD-aligned multi-hop DeepJSCC): H is the scenario's
    deep hash network (scenario ``task.hash``, the network the ``hashing`` task's
    metrics use; :func:`linksim.tasks.hashing.load_or_train_hash_network`), trained
    first and frozen; :meth:`prepare` loads it (or trains and stores it). The cosine
    is of H's continuous (tanh) outputs, averaged over the batch.

    Parameters
    ----------
    lam : float >= 0
        The paper's lambda, the weight of the hash term (default 0.1; the stage's
        ``weight`` scales the whole loss). ``lam: 0`` is the plain MSE (H is still
        loaded: it is part of the model's store key).

    Raises
    ------
    ValueError
        If ``lam`` is not a finite number >= 0.
    """

    label = "dhd"

    def __init__(self, lam: float = 0.1):
        _number("lam", lam, minimum=0)
        self.lam = float(lam)
        self.hash_network = None
        self.hash_entry = None

    def _hash_key(self, request: dict) -> str:
        from linksim.store import spec_key
        from linksim.tasks.hashing import hash_spec

        return spec_key(hash_spec(dataset_spec=request["dataset_spec"], image_shape=request["image_shape"],
                                  num_classes=request["num_classes"], config=request["config"]))

    def spec(self, context) -> dict:
        request = hash_request_of(context)
        return {"hash": {"key": self._hash_key(request), "num_classes": request["num_classes"]},
                "dhd": {"lam": self.lam}}

    def prepare(self, context, *, val_fraction: float) -> None:
        """Load (or train and store) the scenario's hash network and freeze it.

        Raises
        ------
        ValueError
            Without ``context.extra["train_labels"]``, or when the network is missing and
            ``context.train_missing`` is False.
        """
        from linksim.tasks.hashing import load_or_train_hash_network

        network, self.hash_entry = load_or_train_hash_network(
            context.store, progress=context.progress, train_missing=context.train_missing,
            **hash_request_of(context))
        self.set_hash_network(network)

    def set_hash_network(self, network) -> None:
        """Use ``network`` as H (frozen: ``trainable = False``); for tests and Python use."""
        network.trainable = False
        self.hash_network = network

    def card(self) -> dict:
        return {"dhd_lam": self.lam, "hash_model": str(self.hash_entry.path) if self.hash_entry else None,
                "hash_bits": int(self.hash_network.bits) if self.hash_network is not None else None}

    def __call__(self, x, out):
        if self.hash_network is None:
            raise ValueError("the dhd loss needs prepare(context) first (it loads the deep hash network)")
        return hash_alignment(self.hash_network, x, images_of(out), self.lam)

    def get_config(self) -> dict:
        return {"lam": self.lam}
