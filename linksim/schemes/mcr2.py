"""Coding-rate-reduction JSCC with an SNR-gated output (the MCR² semantic-communication paper).

*Semantic communications for image recovery and classification via deep joint
source and channel coding* (``../shared/papers/002_*``, summary only): one loss
unifies coding-rate-reduction maximisation and MSE minimisation; classification
runs in feature space on the received features; a gated net prunes the output
features to the channel. linksim's reading of every unstated detail is in
``docs/mcr2.md``. This module holds

- :func:`coding_rate`, :func:`class_coding_rate`, :func:`rate_reduction`: ΔR of
  Yu et al. (NeurIPS 2020) in TensorFlow;
- the losses ``mcr2`` (:class:`RateReductionLoss`, ``-ΔR`` of the features) and
  ``gate_rate`` (:class:`GateRateLoss`, the fraction of feature groups sent);
- the ``mcr2`` architecture (:class:`MCR2Architecture`, model :class:`MCR2JSCC`):
  DeepJSCC's CNN encoder and decoder with an optional gate (:class:`FeatureGate`);
- :class:`NearestSubspaceClassifier`: classification in feature space;
- the ``mcr2_jscc`` scheme (:class:`MCR2JSCCScheme`).

Rate reduction
--------------
For ``m`` features ``Z = [z_1 .. z_m]`` (``d x m``, each of unit l2 norm) and
labels giving the membership matrices ``Π_j`` (diagonal, 0/1)::

    R(Z, ε)       = 1/2 logdet(I_d + d / (m ε²) Z Zᵀ)
    R^c(Z, ε | Π) = Σ_j tr(Π_j) / (2m) logdet(I_d + d / (tr(Π_j) ε²) Z Π_j Zᵀ)
    ΔR            = R - R^c

in nats. By Sylvester's identity ``logdet(I_d + a Z Zᵀ) = logdet(I_m + a ZᵀZ)``, and
``Z Π_j Zᵀ = (Z D_j)(Z D_j)ᵀ`` with ``D_j = Π_j``, so every log-determinant is
taken of an ``m x m`` matrix (the batch's Gram matrix, masked per class) through
its Cholesky factor: the cost does not grow with the feature dimension ``d``.

The gate
--------
``k`` channel uses are split into ``G`` groups of ``k / G`` consecutive symbols;
the first ``always_on`` groups are always sent, and a policy network on
``[pooled features, SNR]`` chooses how many of the other ``S = G - always_on`` to
send (a choice ``c`` in ``0 .. S``; a thermometer mask turns on the first ``c``
selectable groups). Training draws the choice with a Gumbel-softmax at temperature
``τ`` and uses the hard one-hot forward with the soft gradient (straight-through);
``τ`` is annealed geometrically from ``tau_start`` to ``tau_end`` over the stage's
epochs. In evaluation the choice is the policy's argmax (no noise). The sent
symbols are power-normalised over the symbols actually used (mean energy 1 per
used symbol), so a shorter transmission does not spend more energy per image than
a full one would per symbol; the rest are zero and are not counted as used.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from linksim.channels.base import told_snr_db
from linksim.losses import JSCCLoss, _number, _positive_int, training_classes_of, training_labels_of
from linksim.registry import ARCHITECTURES, LOSSES, SCHEMES
from linksim.schemes.base import BatchResult, SchemeContext
from linksim.schemes.deepjscc_layers import DeepJSCCDecoder, DeepJSCCEncoder, to_slots
from linksim.schemes.jscc import (SCHEME_OPTIONS, JSCCArchitecture, JSCCScheme, model_channel, preset_signature,
                                  split_preset_options)

__all__ = ["coding_rate", "class_coding_rate", "rate_reduction", "RateReductionLoss", "GateRateLoss",
           "FEATURE_SOURCES", "FeatureGate", "MCR2JSCC", "MCR2Architecture", "NearestSubspaceClassifier",
           "MCR2JSCCScheme", "level_features"]

#: Where ΔR is computed: the received (noisy) features, or the transmitted ones.
FEATURE_SOURCES = ("received", "transmitted")


# --------------------------------------------------------------------------- rate reduction
def _normalise(z):
    z = tf.convert_to_tensor(z, tf.float32)
    return z * tf.math.rsqrt(tf.maximum(tf.reduce_sum(tf.square(z), axis=1, keepdims=True), 1e-12))


def _gram(z):
    """``(Z Zᵀ, m, d)`` of the rows of ``z`` normalised to unit l2 norm: the ``[m, m]`` Gram matrix."""
    z = _normalise(z)
    m, d = tf.cast(tf.shape(z)[0], tf.float32), tf.cast(tf.shape(z)[1], tf.float32)
    return tf.matmul(z, z, transpose_b=True), m, d


def _logdet_spd(a):
    """``log det`` of symmetric positive-definite matrices ``[..., n, n]`` through their Cholesky factors."""
    chol = tf.linalg.cholesky(a)
    return 2.0 * tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), axis=-1)


def coding_rate(z, eps2: float = 0.5):
    """``R(Z, ε) = 1/2 logdet(I + d/(m ε²) Z Zᵀ)`` (nats) of the rows of ``z``.

    Input
    -----
    z : [m, d] tf.float32, one feature per row (normalised to unit l2 norm here)
    eps2 : float > 0, ε²

    Output
    ------
    scalar tf.float32
    """
    gram, m, d = _gram(z)
    return 0.5 * _logdet_spd(tf.eye(tf.shape(gram)[0]) + d / (m * eps2) * gram)


def class_coding_rate(z, labels, num_classes: int, eps2: float = 0.5):
    """``R^c(Z, ε | Π) = Σ_j tr(Π_j)/(2m) logdet(I + d/(tr(Π_j) ε²) Z Π_j Zᵀ)`` (nats); empty classes add 0.

    Input
    -----
    z : [m, d] tf.float32 (normalised to unit l2 norm here)
    labels : [m] int, in ``0 .. num_classes - 1``
    num_classes : int
    eps2 : float > 0

    Output
    ------
    scalar tf.float32
    """
    gram, m, d = _gram(z)
    member = tf.transpose(tf.one_hot(tf.cast(labels, tf.int32), int(num_classes)))   # [C, m], the diagonals of Π_j
    counts = tf.reduce_sum(member, axis=1)                                            # tr(Π_j)
    masked = member[:, :, None] * gram[None] * member[:, None, :]                      # D_j G D_j, [C, m, m]
    scale = d / (tf.maximum(counts, 1.0) * eps2)
    logdets = _logdet_spd(tf.eye(tf.shape(gram)[0])[None] + scale[:, None, None] * masked)
    return tf.reduce_sum(counts / (2.0 * m) * logdets)


def rate_reduction(z, labels, num_classes: int, eps2: float = 0.5):
    """``ΔR = R(Z, ε) - R^c(Z, ε | Π)`` (nats) of the rows of ``z``; see the module docstring."""
    return coding_rate(z, eps2) - class_coding_rate(z, labels, num_classes, eps2)


@LOSSES.register("mcr2")
class RateReductionLoss(JSCCLoss):
    """``-ΔR`` of the model's features: a stage ``[{type: mse}, {type: mcr2, weight: β}]`` is ``MSE - β ΔR``.

    The features are the ``2k`` real slot values of the received symbols (``features:
    received``, the default: what the receiver classifies) or of the sent ones
    (``transmitted``), each normalised to unit l2 norm; the labels are the batch's
    training labels (the training loop passes them: ``uses_labels``).

    Parameters
    ----------
    eps2 : float > 0
        ε², the distortion of the coding rate (default 0.5, as Yu et al.).
    features : {"received", "transmitted"}

    Raises
    ------
    ValueError
        For a non-positive ``eps2`` or an unknown ``features``.
    """

    label = "mcr2"
    uses_labels = True

    def __init__(self, eps2: float = 0.5, features: str = "received"):
        _number("eps2", eps2, positive=True)
        if features not in FEATURE_SOURCES:
            raise ValueError(f"features must be one of {', '.join(FEATURE_SOURCES)} (got {features!r})")
        self.eps2 = float(eps2)
        self.features = features
        self.num_classes = None

    def prepare(self, context, *, val_fraction: float) -> None:
        """Read the number of classes from the training labels.

        Raises
        ------
        ValueError
            Without training labels (``context.extra["train_labels"]``).
        """
        labels, self.num_classes = training_classes_of(context, "mcr2: the rate-reduction loss needs the class of "
                                                                "every image")
        if int(np.min(labels)) < 0 or int(np.max(labels)) >= self.num_classes:
            raise ValueError(f"mcr2: the training labels must be classes 0 .. {self.num_classes - 1} "
                             f"(got {int(np.min(labels))} .. {int(np.max(labels))})")

    def spec(self, context) -> dict:
        return {"mcr2": {"eps2": self.eps2, "features": self.features}}

    def card(self) -> dict:
        return {"mcr2_eps2": self.eps2, "mcr2_features": self.features, "num_classes": self.num_classes}

    def __call__(self, x, out, labels=None):
        if labels is None or self.num_classes is None:
            raise ValueError("the mcr2 loss needs prepare(context) and the batch's labels "
                             "(train_jscc(..., y_train=labels))")
        if not isinstance(out, dict) or "features" not in out:
            raise ValueError("the mcr2 loss needs a model that returns its features (architecture: mcr2)")
        z = out["features"] if self.features == "received" else out["sent"]
        return -rate_reduction(z, labels, self.num_classes, self.eps2)

    def get_config(self) -> dict:
        return {"eps2": self.eps2, "features": self.features}


@LOSSES.register("gate_rate")
class GateRateLoss(JSCCLoss):
    """``lam * mean_b(active groups_b / G)``: the cost of the channel uses a gated model spends.

    The mean is over the batch of the fraction of the ``G`` feature groups sent
    (always-on groups included), differentiable through the gate's straight-through
    choice. Needs a gated ``mcr2`` model.

    Parameters
    ----------
    lam : float >= 0
    """

    label = "gate_rate"

    def __init__(self, lam: float = 0.01):
        _number("lam", lam, minimum=0)
        self.lam = float(lam)

    def spec(self, context) -> dict:
        return {"gate_rate": {"lam": self.lam}}

    def __call__(self, x, out):
        if not isinstance(out, dict) or "active_fraction" not in out:
            raise ValueError("the gate_rate loss needs a gated model (architecture: {type: mcr2, gate: true})")
        return self.lam * tf.reduce_mean(out["active_fraction"])

    def get_config(self) -> dict:
        return {"lam": self.lam}


# --------------------------------------------------------------------------- the gate
@keras.saving.register_keras_serializable(package="linksim")
class FeatureGate(keras.layers.Layer):
    """The policy network and the thermometer mask (see the module docstring).

    Parameters
    ----------
    groups : int, G
    always_on : int, groups always sent (1 .. G)
    units : int, hidden units of the policy network

    Input
    -----
    slots : [batch, 2k] tf.float32, the encoder's unit-energy real slot values
    snr_db : [batch] tf.float32
    training : bool
        True: a Gumbel-softmax draw at temperature ``tau`` (straight-through);
        False: the argmax.
    groups_on : None or [batch] int
        Force the number of groups sent (a DF relay re-encodes what it received).

    Output
    ------
    [batch, G] tf.float32: 1 for a group sent, 0 otherwise (hard values; with
    ``training`` the gradient of the soft choice flows through them)
    """

    def __init__(self, groups: int, always_on: int, units: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.groups, self.always_on, self.units = int(groups), int(always_on), int(units)
        self.hidden = keras.layers.Dense(self.units, activation="relu", name="hidden")
        self.logits = keras.layers.Dense(self.groups - self.always_on + 1, name="logits")
        self.tau = self.add_weight(shape=(), initializer=keras.initializers.Constant(1.0), trainable=False,
                                   name="tau")

    def policy_logits(self, slots, snr_db):
        """``[batch, S + 1]`` logits of the number of selectable groups sent, from pooled features and the SNR."""
        b = tf.shape(slots)[0]
        per_group = tf.reshape(tf.abs(slots), [b, 2, self.groups, -1])               # re, im parts per group
        pooled = tf.reduce_mean(per_group, axis=[1, 3])                               # [B, G]
        snr = tf.reshape(tf.broadcast_to(tf.cast(snr_db, tf.float32), [b]), [b, 1]) / 20.0
        return self.logits(self.hidden(tf.concat([pooled, snr], axis=1)))

    def call(self, slots, snr_db, training=False, groups_on=None):
        b = tf.shape(slots)[0]
        s = self.groups - self.always_on
        if groups_on is not None:   # forced (a DF relay), within always_on .. G
            forced = tf.clip_by_value(tf.cast(groups_on, tf.int32), self.always_on, self.groups)
            choice = tf.one_hot(forced - self.always_on, s + 1)
        else:
            logits = self.policy_logits(slots, snr_db)
            if training:
                u = tf.random.uniform(tf.shape(logits), 1e-9, 1.0)
                soft = tf.nn.softmax((logits - tf.math.log(-tf.math.log(u))) / self.tau)
                hard = tf.one_hot(tf.argmax(soft, axis=-1), s + 1)
                choice = hard + (soft - tf.stop_gradient(soft))   # exactly ``hard`` forward, soft gradient
            else:
                choice = tf.one_hot(tf.argmax(logits, axis=-1), s + 1)
        # thermometer: selectable group g (0-based) is on when the choice is > g
        selectable = 1.0 - tf.cumsum(choice, axis=-1)[:, :s]                          # [B, S]
        return tf.concat([tf.ones([b, self.always_on]), selectable], axis=1)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "always_on": self.always_on, "units": self.units}


# --------------------------------------------------------------------------- the model
@keras.saving.register_keras_serializable(package="linksim")
class MCR2JSCC(keras.Model):
    """DeepJSCC's encoder and decoder (decoder told the SNR), with an optional gate on the output groups.

    Parameters
    ----------
    image_shape : (H, W, C)
    channel_uses : int, k (divisible by ``groups``)
    filters, kernel_size : as :class:`~linksim.schemes.deepjscc_layers.DeepJSCCEncoder`
    gate : bool
    groups, always_on, gate_units : the gate (:class:`FeatureGate`)

    Input
    -----
    images : [batch, H, W, C], tf.float32 in [0, 1]
    snr_db : float or [batch] tf.float32 (Es/N0, dB)

    Output
    ------
    dict: ``images`` [batch, H, W, C]; ``features`` and ``sent`` [batch, 2k] (real slot
    values of the received and of the sent symbols, zero where nothing was sent);
    ``num_symbols`` [batch] int32; ``active_fraction`` [batch] (fraction of groups sent)
    """

    def __init__(self, image_shape, channel_uses: int, filters=(16, 32, 32, 32), kernel_size: int = 5,
                 gate: bool = False, groups: int = 8, always_on: int = 2, gate_units: int = 32, channel=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.channel_uses = int(channel_uses)
        self.gate_enabled = bool(gate)
        self.groups, self.always_on, self.gate_units = int(groups), int(always_on), int(gate_units)
        self.encoder = DeepJSCCEncoder(self.image_shape, self.channel_uses, filters, kernel_size, name="encoder")
        self.decoder = DeepJSCCDecoder(self.image_shape, self.channel_uses, filters, kernel_size,
                                       snr_side_info=True, name="decoder")
        self.gate = (FeatureGate(self.groups, self.always_on, self.gate_units, name="gate")
                     if self.gate_enabled else None)
        self.channel, self._channel_given = model_channel(channel)
        self(tf.zeros((1,) + self.image_shape), tf.constant(10.0))

    @property
    def group_size(self) -> int:
        return self.channel_uses // self.groups

    def transmit(self, images, snr_db, training=False, groups_on=None):
        """The sent symbols ``[batch, k]`` (unit energy per used symbol, zero beyond) and their mask ``[batch, k]``."""
        x = self.encoder(images)                                             # unit energy over k symbols
        if self.gate is None:
            return x, tf.ones(tf.shape(x), tf.float32)
        slots = to_slots(x)
        on = self.gate(slots, snr_db, training=training, groups_on=groups_on)   # [B, G]
        mask = tf.repeat(on, self.group_size, axis=1)                         # [B, k]
        masked = slots * tf.concat([mask, mask], axis=1)
        used = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
        energy = tf.reduce_sum(tf.square(masked), axis=1, keepdims=True) / used
        masked = masked * tf.math.rsqrt(tf.maximum(energy, 1e-12))
        k = self.channel_uses
        return tf.complex(masked[:, :k], masked[:, k:]), mask

    def call(self, images, snr_db, training=False):
        b = tf.shape(images)[0]
        snr = tf.cast(snr_db, tf.float32)
        # the gate sees one SNR per image (a chain's per-hop SNRs: the weakest hop's); the channel gets them as given
        gate_snr = tf.broadcast_to(snr if snr.shape.rank in (0, 1) else tf.reduce_min(snr, axis=0), [b])
        x, mask = self.transmit(images, gate_snr, training=training)
        num_symbols = tf.cast(tf.round(tf.reduce_sum(tf.stop_gradient(mask), axis=1)), tf.int32)
        out = self.channel(x, snr, num_symbols=num_symbols if self.gate is not None else None)
        y = out["y"]
        images_hat = self.decoder(y, out["snr_db"])
        return {"images": images_hat, "features": to_slots(y), "sent": to_slots(x), "num_symbols": num_symbols,
                "active_fraction": tf.reduce_mean(mask, axis=1)}

    def set_temperature(self, tau: float) -> None:
        if self.gate is not None:
            self.gate.tau.assign(float(tau))

    def get_config(self):
        e = self.encoder
        cfg = {"name": self.name, "image_shape": list(self.image_shape), "channel_uses": self.channel_uses,
               "filters": e.filters, "kernel_size": e.kernel_size, "gate": self.gate_enabled, "groups": self.groups,
               "always_on": self.always_on, "gate_units": self.gate_units}
        if self._channel_given:
            cfg["channel"] = keras.layers.serialize(self.channel)
        return cfg


class TemperatureSchedule:
    """``tau_e = tau_start (tau_end / tau_start)^(e / (E - 1))`` for epoch ``e`` of ``E``: the gate's annealing."""

    def __init__(self, model: MCR2JSCC, tau_start: float, tau_end: float, epochs: int):
        self.model, self.tau_start, self.tau_end, self.epochs = model, float(tau_start), float(tau_end), int(epochs)

    def tau(self, epoch: int) -> float:
        t = min(1.0, epoch / max(1, self.epochs - 1))
        return self.tau_start * (self.tau_end / self.tau_start) ** t

    def set_epoch(self, epoch: int) -> None:
        """Set the temperature of 0-based ``epoch`` (the training loop calls it before every epoch)."""
        self.model.set_temperature(self.tau(int(epoch)))


@ARCHITECTURES.register("mcr2")
class MCR2Architecture(JSCCArchitecture):
    """DeepJSCC's CNN (decoder told the SNR) whose output features may be gated (model :class:`MCR2JSCC`).

    Parameters
    ----------
    filters : list of 4 int (default 16, 32, 32, 32)
    kernel_size : int
    gate : bool
        Gate the output (default False: every image sends all ``k`` symbols).
    groups : int
        Feature groups ``G``; ``k`` must be divisible by it (default 8).
    always_on : int
        Groups always sent, 1 .. G (default 2).
    gate_units : int
        Hidden units of the policy network (default 32).
    tau_start, tau_end : float > 0
        The Gumbel-softmax temperature, annealed geometrically over the epochs (default 2 -> 0.2).

    Raises
    ------
    ValueError
        For a value outside its range.
    """

    name = "mcr2"

    def __init__(self, filters=(16, 32, 32, 32), kernel_size: int = 5, gate: bool = False, groups: int = 8,
                 always_on: int = 2, gate_units: int = 32, tau_start: float = 2.0, tau_end: float = 0.2):
        if not isinstance(filters, (list, tuple)) or len(filters) != 4 \
                or not all(isinstance(f, (int, np.integer)) and not isinstance(f, bool) and f > 0 for f in filters):
            raise ValueError(f"filters must be a list of four positive integers (got {filters!r})")
        _positive_int("kernel_size", kernel_size)
        _positive_int("groups", groups)
        _positive_int("always_on", always_on)
        _positive_int("gate_units", gate_units)
        if not isinstance(gate, bool):
            raise ValueError(f"gate must be true or false (got {gate!r})")
        if always_on > groups:
            raise ValueError(f"always_on must be at most groups ({groups}); got {always_on}")
        _number("tau_start", tau_start, positive=True)
        _number("tau_end", tau_end, positive=True)
        self._config = {"filters": [int(f) for f in filters], "kernel_size": int(kernel_size), "gate": gate,
                        "groups": int(groups), "always_on": int(always_on), "gate_units": int(gate_units),
                        "tau_start": float(tau_start), "tau_end": float(tau_end)}

    @property
    def encoder_uses_snr(self) -> bool:
        return self._config["gate"]

    def model_config(self) -> dict:
        return dict(self._config)

    def check_channel_uses(self, channel_uses: int) -> None:
        """Raise ValueError when the model is gated and ``k`` is not a multiple of ``groups``."""
        g = self._config["groups"]
        if self._config["gate"] and int(channel_uses) % g:
            raise ValueError(f"mcr2: channel_uses ({channel_uses}) must be a multiple of groups ({g}): "
                             f"the gate sends whole groups of k / groups symbols")

    def build(self, image_shape, channel_uses: int, channel=None) -> MCR2JSCC:
        self.check_channel_uses(channel_uses)
        c = self._config
        return MCR2JSCC(image_shape, channel_uses, filters=c["filters"], kernel_size=c["kernel_size"], gate=c["gate"],
                        groups=c["groups"], always_on=c["always_on"], gate_units=c["gate_units"], channel=channel)

    def fits(self, model, image_shape, channel_uses: int) -> bool:
        return isinstance(model, MCR2JSCC) and super().fits(model, image_shape, channel_uses)

    def schedules(self, model, epochs: int) -> list:
        """Per-epoch schedules of a training stage: the gate's temperature."""
        if not self._config["gate"]:
            return []
        return [TemperatureSchedule(model, self._config["tau_start"], self._config["tau_end"], epochs)]


# --------------------------------------------------------------------------- feature-space classification
def level_features(slots, symbols: int, channel_uses: int):
    """The real slot values of the first ``symbols`` symbols (real parts, then imaginary parts), [batch, 2 symbols]."""
    slots = np.asarray(slots)
    return np.concatenate([slots[:, :symbols], slots[:, channel_uses:channel_uses + symbols]], axis=1)


class NearestSubspaceClassifier:
    """Per class, the top ``r`` right singular vectors of its training features; the class of least residual.

    Features are normalised to unit l2 norm. A class ``j`` with basis ``U_j`` ([d, r],
    orthonormal columns) leaves the residual ``||z - U_j U_jᵀ z||²`` for a feature ``z``;
    the prediction is the class with the smallest.

    Parameters
    ----------
    r : int >= 1
        Subspace dimension (capped by the smallest class's number of features and by ``d``).
    """

    def __init__(self, r: int = 8):
        _positive_int("subspace_dim", r)
        self.r = int(r)
        self.bases = None

    def fit(self, features, labels) -> "NearestSubspaceClassifier":
        """Fit on ``features`` [n, d] with ``labels`` [n] (classes ``0 .. C - 1``, each present)."""
        z = _unit_rows(features)
        labels = np.asarray(labels).astype(int)
        classes = np.unique(labels)
        r = min(self.r, z.shape[1], *(int(np.sum(labels == c)) for c in classes))
        self.classes = classes
        self.bases = np.stack([np.linalg.svd(z[labels == c], full_matrices=False)[2][:r].T for c in classes])
        return self

    def residuals(self, features) -> np.ndarray:
        """``[n, C]`` squared residuals of the unit-norm features against each class subspace."""
        z = _unit_rows(features)
        proj = np.einsum("nd,cdr->ncr", z, self.bases)
        return np.maximum(1.0 - np.sum(proj ** 2, axis=-1), 0.0)

    def predict(self, features) -> np.ndarray:
        """The predicted class of every row of ``features``, [n] int."""
        return self.classes[np.argmin(self.residuals(features), axis=1)]


def _unit_rows(z) -> np.ndarray:
    z = np.asarray(z, np.float64)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------- the scheme
#: The flat options of the ``mcr2_jscc`` preset besides the scheme's and the architecture's.
_LOSS_OPTIONS = ("beta", "eps2", "features", "gate_lambda")
_STAGE_OPTIONS = ("epochs", "learning_rate", "steps_per_epoch")
_DEFAULTS = {"epochs": 60, "learning_rate": 1e-3}


def _preset_options(beta=0.01, eps2=0.5, features="received", gate_lambda=0.05, subspace_dim=8,
                    classifier_images=5000, epochs=60, learning_rate=1e-3, steps_per_epoch=None):
    """The loss, classifier and stage options of the ``mcr2_jscc`` preset, with their defaults (a signature)."""


@SCHEMES.register("mcr2_jscc")
class MCR2JSCCScheme(JSCCScheme):
    """Coding-rate-reduction JSCC (``MSE - β ΔR``), optionally gated, with a nearest-subspace classifier.

    A preset of :class:`~linksim.schemes.jscc.JSCCScheme`: the ``mcr2`` architecture
    trained in one stage of ``[{type: mse}, {type: mcr2, weight: beta, eps2, features}]``
    plus, when gated, ``{type: gate_rate, lam: gate_lambda}``. After the model is
    loaded, a :class:`NearestSubspaceClassifier` is fitted on the clean sent features
    of the training images (per number of groups sent, on the features of those
    groups); evaluation classifies the *received* features of every image with it,
    without decoding the image (the ``feature_accuracy`` metric), and reports the
    symbols each image used (``used_channel_uses``, with its spread).

    Parameters
    ----------
    beta : float >= 0
        Weight of ΔR (default 0.01).
    eps2, features :
        As :class:`RateReductionLoss`.
    gate_lambda : float >= 0
        Weight of the gate's channel-use cost (:class:`GateRateLoss`, default 0.05; gated models only).
    subspace_dim : int
        ``r`` of the classifier (default 8).
    classifier_images : int
        Training images the classifier is fitted on (default 5000; fewer when the set is smaller).
    filters, kernel_size, gate, groups, always_on, gate_units, tau_start, tau_end :
        The architecture (:class:`MCR2Architecture`).
    epochs, learning_rate, steps_per_epoch :
        The training stage (default 60 epochs at 1e-3).
    snr_train_db, batch_size, patience, lr_patience, val_fraction, jit_compile, train_channel, train_seed, label :
        As :class:`~linksim.schemes.jscc.JSCCScheme` (``snr_train_db`` default ``[0, 20]``).
    """

    __signature__ = preset_signature(
        (JSCCScheme, ("architecture", "stages", "spread"), "", {"snr_train_db": [0, 20]}),
        (MCR2Architecture, (), "", {}),
        (_preset_options, (), "", {}))

    def __init__(self, **options):
        scheme_opts = tuple(o for o in SCHEME_OPTIONS if o != "spread")
        g = split_preset_options("mcr2_jscc", options, {
            "scheme": scheme_opts, "architecture": ARCHITECTURES.options("mcr2"), "loss": _LOSS_OPTIONS,
            "stage": _STAGE_OPTIONS, "classifier": ("subspace_dim", "classifier_images")})
        loss = {"beta": 0.01, "eps2": 0.5, "features": "received", "gate_lambda": 0.05, **g["loss"]}
        _number("beta", loss["beta"], minimum=0)
        _number("gate_lambda", loss["gate_lambda"], minimum=0)
        if "gate_lambda" in g["loss"] and not g["architecture"].get("gate", False):
            raise ValueError("gate_lambda is the cost of the gate's channel uses: it needs gate: true")
        losses = [{"type": "mse"}, {"type": "mcr2", "weight": loss["beta"], "eps2": loss["eps2"],
                                    "features": loss["features"]}]
        if g["architecture"].get("gate", False):
            losses.append({"type": "gate_rate", "lam": loss["gate_lambda"]})
        clf = {"subspace_dim": 8, "classifier_images": 5000, **g["classifier"]}
        _positive_int("subspace_dim", clf["subspace_dim"])
        _positive_int("classifier_images", clf["classifier_images"])
        self.subspace_dim, self.classifier_images = int(clf["subspace_dim"]), int(clf["classifier_images"])
        scheme = {"snr_train_db": [0, 20], **g["scheme"]}
        super().__init__(architecture={"type": "mcr2", **g["architecture"]},
                         stages=[{**_DEFAULTS, **g["stage"], "losses": losses}], **scheme)
        self.classifiers = {}

    # ---------------------------------------------------------------- preparation
    def prepare(self, context: SchemeContext) -> None:
        """Load or train the model (see :class:`~linksim.schemes.jscc.JSCCScheme`), then fit the classifier.

        Raises
        ------
        ValueError
            ``k`` not a multiple of ``groups``, no training labels, or a missing model
            that may not be trained here.
        """
        self.architecture.check_channel_uses(context.channel_uses)
        super().prepare(context)
        labels = training_labels_of(context, f"{self.label}: the feature-space classifier needs the classes")
        n = min(self.classifier_images, len(context.train_images))
        rng = np.random.default_rng(self.train_seed)
        idx = np.sort(rng.choice(len(context.train_images), n, replace=False))
        slots = np.concatenate([to_slots(self.model.encoder(tf.constant(context.train_images[idx[j:j + 500]])))
                                .numpy() for j in range(0, n, 500)])
        k = int(context.channel_uses)
        self.classifiers = {s: NearestSubspaceClassifier(self.subspace_dim).fit(level_features(slots, s, k),
                                                                                labels[idx])
                            for s in self.symbol_levels()}

    def symbol_levels(self) -> list[int]:
        """The numbers of symbols an image may use: every count of groups the gate can send, or just ``k``."""
        k = int(self.context.channel_uses)
        if self.model.gate is None:
            return [k]
        gs = k // self.model.groups
        return [g * gs for g in range(self.model.always_on, self.model.groups + 1)]

    def _regenerate_impl(self, y, no):
        """A DF relay: decode the image, re-encode it sending as many groups as it received."""
        snr = told_snr_db(no)
        images = self.model.decoder(y, snr)
        groups_on = None
        if self.model.gate is not None:
            used = tf.reduce_sum(tf.cast(tf.abs(y) > 0, tf.int32), axis=1)
            groups_on = used // self.model.group_size
        b = tf.shape(images)[0]
        x, _ = self.model.transmit(images, tf.broadcast_to(tf.cast(snr, tf.float32), [b]), groups_on=groups_on)
        return x

    def _receive_impl(self, images, snr_db):
        b = tf.shape(images)[0]
        # the transmitter's gate sees the SNR it is evaluated at (per-hop SNRs: the weakest hop's)
        x, mask = self.model.transmit(images, tf.broadcast_to(tf.reduce_min(snr_db), [b]))
        num_symbols = tf.cast(tf.round(tf.reduce_sum(mask, axis=1)), tf.int32)
        out = self.channel(x, snr_db, num_symbols=num_symbols)
        return self.model.decoder(out["y"], out["snr_db"]), to_slots(out["y"]), num_symbols

    def evaluate(self, state, snr_db: float) -> BatchResult:
        images, slots, used = (t.numpy() for t in self._receive(state, tf.constant(snr_db, tf.float32)))
        k = int(self.context.channel_uses)
        pred = np.zeros(len(used), np.int64)
        for s in np.unique(used):
            rows = used == s
            pred[rows] = self.classifiers[int(s)].predict(level_features(slots[rows], int(s), k))
        b = int(images.shape[0])
        counts = {"images": b, "channel_uses": b * k, "source_bits": float("nan"),
                  "used_channel_uses": int(used.sum()), "used_channel_uses_sq": int((used.astype(np.int64) ** 2).sum())}
        return BatchResult(images, counts, outputs={"feature_class": pred, "used_channel_uses": used})

    def encode(self, images: np.ndarray):
        """The images themselves: the gate needs the SNR, so the encoder runs per SNR point (``evaluate``)."""
        return tf.constant(np.asarray(images, np.float32))

    def describe(self) -> dict:
        d = super().describe()
        d.update(subspace_dim=self.subspace_dim, classifier_images=self.classifier_images,
                 symbol_levels=self.symbol_levels() if self.model is not None else None)
        return d

