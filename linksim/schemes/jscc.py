"""JSCC schemes composed of an architecture and training stages (the ``jscc`` scheme).

A JSCC scheme is

- an encoder/decoder **architecture** from :data:`linksim.registry.ARCHITECTURES`
  (:class:`JSCCArchitecture`; ``deepjscc`` is :class:`~linksim.schemes.deepjscc.DeepJSCCArchitecture`), and
- a list of **training stages** (:class:`TrainingStage`), each training the model
  (from the previous stage's weights) with a weighted sum of losses from
  :data:`linksim.registry.LOSSES` (:class:`~linksim.losses.JSCCLoss`).

DeepJSCC is one stage of ``mse``; SD-JSCC is DeepJSCC with the binary quantizer
(stage 1) then the ``semantic`` loss of eq. 13 (stage 2). The ``deepjscc``,
``sdjscc`` and ``sdjscc_nogsw`` schemes are presets of :class:`JSCCScheme` that
take today's flat options; ``type: jscc`` takes the composition directly::

    - type: jscc
      label: DeepJSCC, generic form
      architecture: {type: deepjscc, quantizer: binary}
      snr_train_db: 5
      stages:
        - {losses: [{type: mse}], epochs: 20}
        - {name: sdjscc, losses: [{type: semantic, tau: 3000}], epochs: 5, steps_per_epoch: 40}

Model store
-----------
Every stage's model is stored under its own name and key, so a later stage (or
another scheme sharing the first stages) starts from the stored model. The spec of
stage 1 is ``{"scheme": <architecture name>, "format": 1, "model": {image_shape,
channel_uses, **architecture options}, "training": {snr_train_db, epochs,
batch_size, learning_rate, patience, lr_patience, val_fraction, steps_per_epoch,
loss[, channel]}, "dataset", "seed"}``, where ``seed`` is the scheme's ``train_seed``
(not the scenario's ``seed``, which only draws the test images and the evaluation
noise); the spec of stage ``i > 1`` is
``{"scheme": <stage name>, "format": 1, "stage1" (i = 2) or "previous" (i > 2):
<the previous stage's spec>, "finetune": {epochs, learning_rate, steps_per_epoch,
batch_size, patience, lr_patience, val_fraction, snr_train_db, loss}}``. Each loss
adds its own entries (:meth:`~linksim.losses.JSCCLoss.spec`, e.g. the semantic
loss's ``classifier`` and ``semantic``) beside them. ``loss`` is the loss's label
when the stage has one loss of weight 1 (``"mse"``, ``"sdjscc_semantic"``), else a
list of ``{"loss", "weight"[, "ramp_epochs"], **spec}``. These are the specs the
``deepjscc`` and ``sdjscc`` schemes always had: the shipped models keep their keys.

Loss weights and schedules
--------------------------
A stage loss is ``{type: <loss>, weight: w, ramp_epochs: n, **loss options}``;
``weight`` defaults to 1, ``ramp_epochs`` (default 0: constant) ramps the weight
linearly as ``w * min(1, (epoch + 1) / n)`` over the stage's first ``n`` epochs
(set between epochs, also when a run resumes). With a ramp, the validation loss of
early epochs is not comparable with later ones: early stopping and the best epoch
see the ramped loss.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings

import keras
import numpy as np
import tensorflow as tf

from linksim.channels.awgn import AWGNChannel
from linksim.channels.base import told_snr_db
from linksim.losses import JSCCLoss, _number, _positive_int
from linksim.registry import ARCHITECTURES, LOSSES, SCHEMES, check_known_options
from linksim.schemes.base import BatchResult, Scheme, SchemeContext
from linksim.schemes.deepjscc_layers import to_slots, to_symbols
from linksim.schemes.gain_header import spreading_matrix
from linksim.training import (DEFAULT_TRAIN_SEED, TrainConfig, check_train_seed, train_jscc, training_facts,
                              training_scope)

__all__ = ["JSCCArchitecture", "TrainingStage", "WeightedLoss", "JSCCScheme", "JSCCTransmission",
           "AdaptiveTransmission", "TRAIN_CHANNELS", "model_channel", "SCHEME_OPTIONS", "STAGE_OPTIONS",
           "FIRST_STAGE_OPTIONS", "split_preset_options", "one_stage_preset"]

#: Allowed values of ``train_channel``.
TRAIN_CHANNELS = ("awgn", "scenario")


class JSCCArchitecture:
    """Interface of an encoder/decoder architecture (registered in ``ARCHITECTURES``).

    A subclass takes its options as keyword arguments (validated in the
    constructor, ``ValueError`` naming the allowed values) and has a class
    attribute ``name``, its registered name (the store name of a stage-1 model).
    """

    name = "architecture"

    def model_config(self) -> dict:  # pragma: no cover - interface
        """The options that shape the model (JSON values); part of the store key."""
        raise NotImplementedError

    def build(self, image_shape, channel_uses: int, channel=None) -> keras.Model:  # pragma: no cover - interface
        """A fresh model ``model(images, snr_db, training=False)`` with ``.encoder``, ``.decoder``,
        ``.channel`` (the channel inside the model; None: one AWGN hop)."""
        raise NotImplementedError

    def fits(self, model, image_shape, channel_uses: int) -> bool:
        """Whether a stored ``model`` is one of this architecture for these images and channel uses."""
        return (tuple(getattr(model, "image_shape", ())) == tuple(image_shape)
                and getattr(model, "channel_uses", None) == int(channel_uses))

    def latent_bits_per_image(self, channel_uses: int) -> int | None:
        """Bits per image of a digital latent (None: analog symbols)."""
        return None

    #: True when the encoder takes the SNR, ``model.encoder(images, snr_db)`` (an SNR-adaptive
    #: transmitter); False: ``model.encoder(images)``.
    encoder_uses_snr = False

    def schedules(self, model, epochs: int) -> list:
        """Per-epoch schedules of a training stage: objects with ``set_epoch(e)``, called with the 0-based
        epoch before each epoch trains (e.g. an annealed temperature); default none."""
        return []

    def initialize(self, model, train_images, snr_train_db) -> None:
        """Set a freshly built stage-1 model's data-dependent starting point (default: nothing).

        Called before the first stage trains (not when a stored model is loaded), with
        the scenario's training images and the stage's ``snr_train_db``.
        """

    def get_config(self) -> dict:
        return self.model_config()

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


def check_train_channel(value):
    """``train_channel`` checked: ``awgn``, ``scenario`` or a ``{type: <channel>, **options}`` mapping.

    Raises
    ------
    ValueError
        Naming the allowed values, or the channel's own complaint about its options.
    """
    if isinstance(value, dict):
        make_train_channel(value)
        return {k: value[k] for k in value}
    if value not in TRAIN_CHANNELS:
        raise ValueError(f"train_channel must be one of {', '.join(TRAIN_CHANNELS)} or a channel mapping "
                         f"{{type: ..., **options}} (got {value!r})")
    return value


def make_train_channel(spec: dict):
    """The channel layer of a ``train_channel`` mapping (a fresh one per call)."""
    from linksim.registry import CHANNELS

    spec = dict(spec)
    if "type" not in spec:
        raise ValueError(f"train_channel needs a type (registered channels: {', '.join(CHANNELS.names())})")
    name = spec.pop("type")
    if name not in CHANNELS.names():
        raise ValueError(f"train_channel: unknown channel {name!r} (registered channels: "
                         f"{', '.join(CHANNELS.names())})")
    try:
        return CHANNELS.create(name, **spec)
    except TypeError as exc:
        raise ValueError(f"train_channel: {exc}") from None


def model_channel(channel):
    """The channel inside a JSCC model: ``(layer, given)``.

    Input
    -----
    channel : None (one AWGN hop), a Channel layer, or its serialised config

    Output
    ------
    (Channel, bool): the layer, and whether it was given (a model leaves the
    default out of its config)

    Raises
    ------
    ValueError
        For a channel that is not differentiable (decode-and-forward relays).
    """
    if channel is None:
        layer = AWGNChannel(name="channel")
    elif isinstance(channel, dict):
        layer = keras.layers.deserialize(channel)
    else:
        layer = channel
    if not layer.differentiable:
        raise ValueError("a JSCC model cannot be trained through a channel that is not differentiable "
                         "(decode-and-forward relays); train over one hop, or through an af / qf chain")
    return layer, channel is not None


class WeightedLoss:
    """``sum_i w_i(epoch) * loss_i(x, out)``: the loss of a stage with several terms or a ramp.

    Parameters
    ----------
    terms : list of (JSCCLoss, weight, ramp_epochs)

    Input / Output
    --------------
    As :class:`~linksim.losses.JSCCLoss`.
    """

    def __init__(self, terms):
        self.terms = list(terms)
        self.weights = [tf.Variable(0.0, trainable=False, dtype=tf.float32) for _ in self.terms]
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Set every weight for 0-based ``epoch`` (ramps: ``w * min(1, (epoch + 1) / ramp_epochs)``); the
        training loop calls it before every epoch (a stage's ``schedules``)."""
        for v, (_, w, ramp) in zip(self.weights, self.terms):
            v.assign(float(w) * (min(1.0, (epoch + 1) / ramp) if ramp else 1.0))

    def __call__(self, x, out, labels=None):
        total = 0.0
        for v, (loss, _, _) in zip(self.weights, self.terms):
            term = loss(x, out, labels) if getattr(loss, "uses_labels", False) else loss(x, out)
            total = total + v * term
        return total


class TrainingStage:
    """One training stage of a JSCC scheme: losses with weights, and the stage's epochs and rate.

    Parameters
    ----------
    losses : list of dict
        ``{type: <LOSSES name>, weight: float >= 0 (default 1), ramp_epochs: int >= 0 (default 0),
        **options of the loss}``; at least one. From Python, ``{loss: <JSCCLoss instance>, weight: ...}``
        (or the instance itself) also works.
    epochs : int
        Maximum epochs of the stage (default 60).
    learning_rate : float > 0 or None
        None: the previous stage's (the first stage: 1e-3).
    steps_per_epoch : int or None
        Cap on the batches per epoch (None: the whole training split).
    name : str or None
        Store name of the stage's model; the first stage's is the architecture's
        name and cannot be set; later stages default to ``"jscc"``.

    Raises
    ------
    ValueError
        For an unknown option (naming the allowed ones), an unknown loss (listing
        the registered ones), or a value outside its range.
    """

    def __init__(self, losses, epochs: int = 60, learning_rate: float | None = None,
                 steps_per_epoch: int | None = None, name: str | None = None):
        if not isinstance(losses, (list, tuple)) or not losses:
            raise ValueError(f"a stage's losses must be a non-empty list of {{type: <loss>, weight: ...}} "
                             f"(registered losses: {', '.join(LOSSES.names())}); got {losses!r}")
        _positive_int("epochs", epochs)
        if learning_rate is not None:
            _number("learning_rate", learning_rate, positive=True)
        _positive_int("steps_per_epoch", steps_per_epoch, allow_none=True)
        if name is not None and (not isinstance(name, str) or not name.replace("_", "").isalnum()):
            raise ValueError(f"a stage's name must be letters, digits and underscores (got {name!r})")
        self.terms = []
        self.loss_specs = []
        for spec in losses:
            if isinstance(spec, JSCCLoss):
                spec = {"loss": spec}
            if not isinstance(spec, dict) or ("type" not in spec and "loss" not in spec):
                raise ValueError(f"a stage loss must be {{type: <loss>, weight: ...}} (registered losses: "
                                 f"{', '.join(LOSSES.names())}); got {spec!r}")
            spec = dict(spec)
            weight = spec.pop("weight", 1.0)
            ramp = spec.pop("ramp_epochs", 0)
            _number("weight", weight, minimum=0)
            if isinstance(ramp, bool) or not isinstance(ramp, (int, np.integer)) or ramp < 0:
                raise ValueError(f"ramp_epochs must be an integer >= 0 (got {ramp!r})")
            if "loss" in spec:
                loss = spec.pop("loss")
            else:
                loss = LOSSES.create(spec.pop("type"), **spec)     # Registry.check_options: unknown options
            self.terms.append((loss, float(weight), int(ramp)))
        self.epochs = int(epochs)
        self.learning_rate = None if learning_rate is None else float(learning_rate)
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
        self.name = name

    @property
    def losses(self) -> list[JSCCLoss]:
        return [t[0] for t in self.terms]

    @property
    def plain(self) -> bool:
        """One loss of weight 1 without a ramp: the loss is used as it is."""
        return len(self.terms) == 1 and self.terms[0][1] == 1.0 and not self.terms[0][2]

    def loss_fn(self):
        """The callable ``loss(x, out)`` of the stage (the loss itself, or a :class:`WeightedLoss`)."""
        return self.terms[0][0] if self.plain else WeightedLoss(self.terms)

    def spec(self, context) -> tuple[object, dict]:
        """``(loss field, entries)`` of the stage's store spec (see the module docstring)."""
        if self.plain:
            return self.terms[0][0].label, dict(self.terms[0][0].spec(context))
        field = []
        for loss, w, ramp in self.terms:
            item = {"loss": loss.label, "weight": w, **loss.spec(context)}
            if ramp:
                item["ramp_epochs"] = ramp
            field.append(item)
        return field, {}

    def get_config(self) -> dict:
        losses = []
        for loss, w, ramp in self.terms:
            kind = next((n for n in LOSSES.names() if LOSSES.get(n) is type(loss)), type(loss).__name__)
            losses.append({"type": kind, "weight": w, "ramp_epochs": ramp, **loss.get_config()})
        return {"losses": losses, "epochs": self.epochs, "learning_rate": self.learning_rate,
                "steps_per_epoch": self.steps_per_epoch, "name": self.name}


class JSCCTransmission:
    """What a JSCC scheme's :meth:`~JSCCScheme.encode` returns: the images, and the symbols once encoded.

    The first :meth:`~JSCCScheme.evaluate` of a transmission runs encoder, channel and
    decoder in one compiled call and keeps the symbols; later SNR points (a sweep) run
    only the channel and the decoder on them. The symbols are those the encoder gives
    for the images, whichever call computes them.

    Parameters
    ----------
    images : [batch, H, W, C], tf.float32
    encode : callable ``images -> [batch, k] tf.complex64``
        The scheme's compiled encoder (for :meth:`numpy` before any evaluation).
    """

    def __init__(self, images, encode):
        self.images = images
        self.symbols = None
        self._encode_fn = encode

    @property
    def shape(self):
        """The shape of the symbols sent, ``[batch, k]``."""
        return self.encoded().shape if self.symbols is None else self.symbols.shape

    def encoded(self):
        """The symbols sent, [batch, k] tf.complex64 (encoded now if no evaluation has yet)."""
        if self.symbols is None:
            self.symbols = self._encode_fn(self.images)
        return self.symbols

    def numpy(self) -> np.ndarray:
        """The symbols sent as a NumPy array."""
        return self.encoded().numpy()


class AdaptiveTransmission:
    """What a JSCC scheme whose encoder takes the SNR sends (:meth:`~JSCCScheme.encode`): the images, and the
    symbols encoded for each SNR the transmitter has adapted to so far.

    In a channel sweep every chain of a job evaluates the same transmission (``run_job`` encodes once per model),
    so a chain evaluated at an SNR an earlier chain already used reuses the encoder's output for it instead of
    running the encoder again: the same symbols (the encoder draws no random numbers), computed once.

    Parameters
    ----------
    images : [batch, H, W, C], tf.float32
    """

    def __init__(self, images):
        self.images = images
        #: ``{SNR the encoder was given (a Python float): [batch, k] tf.complex64}``
        self.symbols_at: dict = {}

    def numpy(self) -> np.ndarray:
        """The images, as a NumPy array (nothing is sent before the SNR is known)."""
        return self.images.numpy()


@SCHEMES.register("jscc")
class JSCCScheme(Scheme):
    """A JSCC scheme: an encoder/decoder architecture trained in stages (see the module docstring).

    Parameters
    ----------
    architecture : dict or JSCCArchitecture
        ``{type: <ARCHITECTURES name>, **options}`` (e.g. ``{type: deepjscc, quantizer: binary}``).
    stages : list of dict or TrainingStage
        ``[{losses: [{type: mse, weight: 1}], epochs: 60, learning_rate: 1e-3,
        steps_per_epoch: null, name: null}, ...]`` (:class:`TrainingStage`); at least one.
    snr_train_db : float or [lo, hi]
        SNR (Es/N0, dB) of every stage's training; a range is sampled per batch.
    batch_size, patience, lr_patience, val_fraction :
        Of every stage (:class:`~linksim.training.TrainConfig`).
    jit_compile : bool
        Compile evaluation with XLA (default False: on CPU, XLA's convolutions are
        slower than TensorFlow's oneDNN ones; batches of at most
        :attr:`SMALL_BATCH` images still run the encoder and decoder under XLA, the
        channel in graph mode).
    train_channel : {"awgn", "scenario"} or dict
        ``awgn`` (default): train over one AWGN hop; ``scenario``: train end to end
        through the scenario's channel (an AF or QF relay chain); a channel mapping
        (``{type: multihop, hops: 2, relay: qf, relay_params: {bits: 4}}``): train end
        to end through that channel, whatever the scenario's (one model for a
        scenario that sweeps hops or relay options).
    spread : bool
        Evaluation only (not part of the model): multiply the ``2k`` real slot values
        by a fixed orthogonal matrix before the channel and undo it after (a DF relay
        undoes and redoes it), so no slot carries much more than the mean power
        (:func:`~linksim.schemes.gain_header.spreading_matrix`). Over AWGN, AF and DF
        the results are those without it up to the noise draw; over a QF relay a
        model whose slot powers are very unequal (PCA-DeepJSCC) is no longer clipped.
        Default False; refused with ``train_channel: scenario`` (the chain the model
        was trained through had no spreading).
    train_seed : int >= 0
        Seeds the training (default 1234, the shipped models'): the initial weights,
        the training/validation split, the batch order and the training noise. It is
        the ``seed`` of the store key; the scenario's ``seed`` (test images,
        evaluation noise) is not, so a stored model serves every evaluation seed.
    label : str

    Raises
    ------
    ValueError
        For an unknown architecture or loss (listing the registered ones), an
        unknown option (naming the allowed ones) or a value outside its range.
    """

    digital = False
    trainable = True

    def __init__(self, architecture, stages, snr_train_db=10.0, batch_size: int = 64, patience: int = 8,
                 lr_patience: int = 3, val_fraction: float = 0.1, jit_compile: bool = False,
                 train_channel: str = "awgn", train_seed: int = DEFAULT_TRAIN_SEED, spread: bool = False,
                 label: str | None = None):
        super().__init__(label)
        self.train_seed = check_train_seed(train_seed)
        self.train_channel = check_train_channel(train_channel)
        if not isinstance(spread, (bool, np.bool_)):
            raise ValueError(f"spread must be true or false (got {spread!r})")
        if spread and train_channel != "awgn":
            raise ValueError("spread applies at evaluation; a model trained through a relay chain "
                             "(train_channel: scenario or a channel) saw it without spreading: use one or the other")
        self.spread = bool(spread)
        if isinstance(architecture, dict):
            arch = dict(architecture)
            if "type" not in arch:
                raise ValueError(f"architecture needs a type (registered architectures: "
                                 f"{', '.join(ARCHITECTURES.names())})")
            architecture = ARCHITECTURES.create(arch.pop("type"), **arch)
        if not isinstance(architecture, JSCCArchitecture):
            raise TypeError(f"architecture must be {{type: ..., **options}} or a JSCCArchitecture "
                            f"(got {type(architecture).__name__})")
        self.architecture = architecture
        if not isinstance(stages, (list, tuple)) or not stages:
            raise ValueError("stages must be a non-empty list of {losses: [...], epochs: ...}")
        built = []
        for i, st in enumerate(stages):
            if isinstance(st, dict):
                check_known_options(f"stage {i + 1}", st, STAGE_OPTIONS)
                st = TrainingStage(**st)
            if not isinstance(st, TrainingStage):
                raise TypeError(f"stage {i + 1} must be a dict or a TrainingStage (got {type(st).__name__})")
            if i == 0 and st.name not in (None, architecture.name):
                raise ValueError(f"the first stage is stored under the architecture's name "
                                 f"({architecture.name}); it takes no name (got {st.name!r})")
            built.append(st)
        self.stages = built
        self.configs = []          # one TrainConfig per stage
        lr = 1e-3
        for st in self.stages:
            lr = st.learning_rate if st.learning_rate is not None else lr
            self.configs.append(TrainConfig(epochs=st.epochs, batch_size=batch_size, learning_rate=lr,
                                            patience=patience, lr_patience=lr_patience, val_fraction=val_fraction,
                                            snr_train_db=snr_train_db, steps_per_epoch=st.steps_per_epoch))
        self.jit_compile = bool(jit_compile)
        self._options = {"snr_train_db": snr_train_db, "batch_size": batch_size, "patience": patience,
                         "lr_patience": lr_patience, "val_fraction": val_fraction, "jit_compile": self.jit_compile,
                         "train_channel": train_channel, "train_seed": self.train_seed, "spread": self.spread,
                         "label": self.label}
        self.model = None
        self.entry = None
        self.stage_entries = [None] * len(self.stages)

    def get_config(self) -> dict:
        """The scheme in its generic form: ``JSCCScheme(**get_config())`` is the same scheme."""
        return {"architecture": {"type": self.architecture.name, **self.architecture.get_config()},
                "stages": [st.get_config() for st in self.stages], **self._options}

    # ------------------------------------------------------------------ views
    @property
    def model_config(self) -> dict:
        """The architecture's options (``model`` of the stage-1 store spec, without shape and k)."""
        return self.architecture.model_config()

    @property
    def train_config(self) -> TrainConfig:
        """The first stage's training configuration."""
        return self.configs[0]

    def stage_name(self, i: int) -> str:
        """The store name of stage ``i``'s model (0-based)."""
        if i == 0:
            return self.architecture.name
        return self.stages[i].name or "jscc"

    def store_name(self) -> str:
        return self.stage_name(len(self.stages) - 1)

    # ---------------------------------------------------------------- model store
    def stage_spec(self, context: SchemeContext, i: int) -> dict:
        """Everything that changes the weights of stage ``i``'s model (hashed into its store key)."""
        tc, (loss_field, entries) = self.configs[i], self.stages[i].spec(context)
        if i == 0:
            training = {"snr_train_db": tc.snr_train_db, "epochs": tc.epochs, "batch_size": tc.batch_size,
                        "learning_rate": tc.learning_rate, "patience": tc.patience,
                        "lr_patience": tc.lr_patience, "val_fraction": tc.val_fraction,
                        "steps_per_epoch": tc.steps_per_epoch, "loss": loss_field}
            if self.train_channel != "awgn":
                training["channel"] = self._train_channel_config(context)
            return {"scheme": self.stage_name(0), "format": 1,
                    "model": {"image_shape": list(context.image_shape), "channel_uses": int(context.channel_uses),
                              **self.model_config},
                    "training": training, **entries, "dataset": context.dataset_spec, "seed": self.train_seed}
        return {"scheme": self.stage_name(i), "format": 1,
                ("stage1" if i == 1 else "previous"): self.stage_spec(context, i - 1), **entries,
                "finetune": {"epochs": tc.epochs, "learning_rate": tc.learning_rate,
                             "steps_per_epoch": tc.steps_per_epoch, "batch_size": tc.batch_size,
                             "patience": tc.patience, "lr_patience": tc.lr_patience,
                             "val_fraction": tc.val_fraction, "snr_train_db": tc.snr_train_db,
                             "loss": loss_field}}

    def store_spec(self, context: SchemeContext) -> dict:
        """The spec of the last stage's model (the one the scheme transmits with)."""
        return self.stage_spec(context, len(self.stages) - 1)

    def _training_chain(self, context: SchemeContext):
        """The channel layer the model is trained through (``train_channel`` not ``awgn``)."""
        if self.train_channel == "scenario":
            return context.channel
        return make_train_channel(self.train_channel)

    def _train_channel_config(self, context: SchemeContext) -> dict:
        ch = self._training_chain(context)
        cfg = {k: v for k, v in ch.get_config().items() if k not in ("name", "trainable", "dtype")}
        return {"class": type(ch).__name__, "config": cfg}

    def training_context(self, context: SchemeContext) -> SchemeContext:
        """``context`` with ``seed`` set to the scheme's ``train_seed``: what a stage's losses prepare with."""
        return dataclasses.replace(context, seed=self.train_seed)

    def build_model(self, context: SchemeContext):
        keras.utils.set_random_seed(self.train_seed)
        channel = None
        lo, hi = self.configs[0].snr_range()
        if self.train_channel != "awgn":
            chain = self._training_chain(context)
            if hi > lo and getattr(chain, "hops", 1) > 1:
                # a range draws one SNR per image, [batch]; a chain takes one per hop, [hops, batch]
                raise ValueError(f"{self.label}: training through a relay chain (train_channel) takes one "
                                 f"snr_train_db, not a range (got {self.configs[0].snr_train_db!r})")
            channel = keras.layers.deserialize(keras.layers.serialize(chain))  # a fresh copy
        with training_scope():   # several GPUs: the model's variables are mirrored and it trains over them all
            return self.architecture.build(context.image_shape, context.channel_uses, channel=channel)

    def _check_loaded(self, model, context: SchemeContext) -> bool:
        ok = self.architecture.fits(model, context.image_shape, context.channel_uses)
        if not ok:
            warnings.warn(f"{self.label}: the stored model does not fit this scenario's images or channel uses; "
                          f"it will be retrained", stacklevel=3)
        return ok

    def _load_stored(self, context: SchemeContext, spec: dict, name: str | None = None):
        """The stored model of ``spec`` and its entry, ``(None, None)`` when missing or unfit."""
        name = self.store_name() if name is None else name
        model, entry = (None, None) if context.store is None else context.store.load(name, spec)
        if model is not None and not self._check_loaded(model, context):
            return None, None
        return model, entry

    def _require_training(self, context: SchemeContext) -> None:
        """Raise ValueError when a missing model may not be trained here."""
        if context.store is None or not context.train_missing:
            raise ValueError(f"{self.label}: no trained model in the store for this scenario; "
                             f"run `linksim train` on the scenario first")

    def _card_facts(self, context: SchemeContext, history: dict, i: int = 0) -> dict:
        """What a stored model's card says of its training and its setting."""
        best = history["best_epoch"]
        facts = {"scheme_label": self.label, "epochs_run": history["epochs_run"], "best_epoch": best,
                 "final_val_psnr_db": history["val_psnr_db"][best - 1] if best else None,
                 "snr_train_db": self.configs[i].snr_train_db, "channel_uses": int(context.channel_uses),
                 "bandwidth_ratio": int(context.channel_uses) / float(np.prod(context.image_shape)),
                 "dataset": context.dataset_spec, "seed": self.train_seed,
                 **training_facts(history, self.train_seed)}
        for loss in self.stages[i].losses:
            facts.update(loss.card())
        if i > 0:
            facts["final_val_loss"] = history["val_loss"][best - 1] if best else None
            facts["stage1_model" if i == 1 else "previous_model"] = str(self.stage_entries[i - 1].path)
            bits = self.latent_bits_per_image_for(context)
            if bits is not None:
                facts["latent_bits_per_image"] = bits
        return facts

    # ---------------------------------------------------------------- training
    def train_stage(self, context: SchemeContext, model, i: int) -> dict:
        """Train ``model`` with stage ``i``'s losses (prepared), resuming from its checkpoint; the history."""
        import sionna.phy

        entry = context.store.entry(self.stage_name(i), self.stage_spec(context, i))
        config = self.configs[i]
        config.seed = self.train_seed
        if i > 0:
            keras.utils.set_random_seed(self.train_seed)
        sionna.phy.config.seed = self.train_seed
        loss_fn = self.stages[i].loss_fn()
        kwargs = {}
        # per-epoch schedules (loss ramps, the architecture's own, e.g. a gate's temperature): set before every
        # epoch, also the first of a resumed run (after its checkpoint is restored)
        kwargs["schedules"] = ([loss_fn] if isinstance(loss_fn, WeightedLoss) else []) + self.architecture.schedules(
            model, config.epochs)
        if any(getattr(loss, "uses_labels", False) for loss in self.stages[i].losses):
            from linksim.losses import training_labels_of

            kwargs["y_train"] = training_labels_of(context, f"{self.label}: a loss of stage {i + 1} needs the "
                                                            f"class of every training image")
        desc = self.label if len(self.stages) == 1 else f"{self.label} (stage {i + 1}/{len(self.stages)})"
        return train_jscc(model, context.train_images, config, loss_fn=loss_fn,
                          checkpoint_dir=entry.checkpoint_dir, log_dir=entry.log_dir, progress=context.progress,
                          desc=desc, **kwargs)

    def train(self, context: SchemeContext, model) -> dict:
        """Train ``model`` with the last stage's losses (prepared); the history."""
        return self.train_stage(context, model, len(self.stages) - 1)

    def stage_model(self, context: SchemeContext, i: int):
        """Stage ``i``'s model and store entry: loaded, or trained (from stage ``i - 1``'s) and stored."""
        spec = self.stage_spec(context, i)
        model, entry = self._load_stored(context, spec, self.stage_name(i))
        if model is not None:
            self.stage_entries[i] = entry
            return model, entry
        self._require_training(context)
        for loss in self.stages[i].losses:           # e.g. the semantic loss loads its classifier
            loss.prepare(self.training_context(context), val_fraction=self.configs[i].val_fraction)
        previous = self.stage_model(context, i - 1)[0] if i > 0 else None
        model = self.build_model(context)
        if previous is not None:
            model.set_weights(previous.get_weights())
        else:
            self.architecture.initialize(model, context.train_images, self.configs[0].snr_train_db)
        history = self.train_stage(context, model, i)
        entry = context.store.save(self.stage_name(i), spec, model, history, self._card_facts(context, history, i))
        self.stage_entries[i] = entry
        return model, entry

    def prepare(self, context: SchemeContext) -> None:
        """Load the last stage's model, or train the missing stages (each stored) and bind it.

        Raises
        ------
        ValueError
            When a model is missing and may not be trained (no store, or
            ``context.train_missing`` False: run ``linksim train`` first), or a loss
            cannot be prepared (e.g. the semantic loss without training labels).
        """
        self.context = context
        spec = self.store_spec(context)                  # a loss's spec may check the context (labels)
        model, entry = self._load_stored(context, spec)
        if model is not None:
            self.stage_entries[-1] = entry
            if len(self.stages) > 1 and context.store is not None:
                self.stage_entries[-2] = context.store.find(self.stage_name(len(self.stages) - 2),
                                                            spec["stage1" if len(self.stages) == 2 else "previous"])
            self._loaded_card(entry.card())
        else:
            model, entry = self.stage_model(context, len(self.stages) - 1)
        self._bind(context, model, entry)

    def _loaded_card(self, card: dict) -> None:
        """Hook: facts read back from a loaded model's card (presets keep e.g. the semantic weights)."""

    # ---------------------------------------------------------------- transmission
    def _bind(self, context: SchemeContext, model, entry) -> None:
        """Use ``model`` for transmission: compile the encoder and the receive path."""
        self.model = model
        self.entry = entry
        if self.architecture.encoder_uses_snr:
            self._transmit = None             # the encoder runs per SNR point (AdaptiveTransmission)
        else:
            self._encode = tf.function(lambda x: self.model.encoder(x), reduce_retracing=True,
                                       jit_compile=self.jit_compile)
            # a transmission's first SNR point: encoder, channel and decoder in one compiled call
            self._transmit = tf.function(self._transmit_impl, reduce_retracing=True, jit_compile=self.jit_compile)
            # small batches: the encoder and the decoder as XLA clusters inside the graph (see SMALL_BATCH)
            self._encode_xla = tf.function(lambda x: self.model.encoder(x), jit_compile=True)
            self._decode_xla = tf.function(lambda y, snr: self.model.decoder(y, snr), jit_compile=True)
            self._transmit_small = tf.function(lambda x, snr: self._transmit_impl(x, snr, small=True),
                                               reduce_retracing=True)
            self._receive_small = tf.function(lambda y, snr: self._receive_impl(y, snr, small=True),
                                              reduce_retracing=True)
        self._receive = tf.function(self._receive_impl, reduce_retracing=True, jit_compile=self.jit_compile)
        self._concrete = {}
        self._q = tf.constant(spreading_matrix(2 * int(context.channel_uses))) if self.spread else None
        self.channel = context.channel.bind(regenerate=self._regenerate_impl)  # DF relays decode and re-encode
        # a channel sweep whose chain this scheme shares (no DF relay): see _evaluate_split
        self._split = bool(context.extra.get("channel_sweep")) and self.channel is context.channel
        if self._split:
            self._bind_split(model, int(context.channel_uses))

    def _bind_split(self, model, k: int) -> None:
        """The compiled encoder and decoder of :meth:`_evaluate_split`, kept on ``model``: a sweep prepares the
        scheme once per chain, each with the same loaded model (``ModelStore.sharing_loaded_models``), and they
        share the traces. One trace per input shape (no ``reduce_retracing``): a chain's told SNR may be a
        scalar or one per image, and a relaxed shape of unknown rank would not do for every channel."""
        cache = model.__dict__.get("_linksim_split")
        if cache is None:
            cache = {}
            object.__setattr__(model, "_linksim_split", cache)   # not a Keras-tracked attribute
        q, jit = self._q, self.jit_compile
        key = (jit, self.spread, k)
        if key not in cache:
            fns = {"decode": tf.function(lambda y, snr: model.decoder(rotate_slots(y, q, k, transpose=False), snr),
                                         jit_compile=jit)}
            if self.architecture.encoder_uses_snr:
                fns["encode_snr"] = tf.function(lambda x, snr: model.encoder(x, snr), jit_compile=jit)
            else:
                fns["encode"] = tf.function(lambda x: model.encoder(x), jit_compile=jit)
                fns["encode_xla"] = tf.function(lambda x: model.encoder(x), jit_compile=True)
                fns["decode_xla"] = tf.function(lambda y, snr: model.decoder(y, snr), jit_compile=True)
            cache[key] = fns
        fns = cache[key]
        self._decode = fns["decode"]
        if self.architecture.encoder_uses_snr:
            self._encode_snr = fns["encode_snr"]
        else:
            self._encode, self._encode_xla, self._decode_xla = fns["encode"], fns["encode_xla"], fns["decode_xla"]

    def _regenerate_impl(self, y, no):
        """A decode-and-forward relay: decode the image with the JSCC decoder, re-encode it.

        An SNR-adaptive encoder re-encodes for the SNR of the hop it received from.
        """
        snr = told_snr_db(no)
        images = self.model.decoder(self._despread(y), snr)
        x = self.model.encoder(images, snr) if self.architecture.encoder_uses_snr else self.model.encoder(images)
        return self._spread(x)

    def _spread(self, x):
        """``x`` with its ``2k`` real slots multiplied by ``Q^T`` (``spread``), else ``x``."""
        return self._rotate(x, transpose=True)

    def _despread(self, y):
        """The inverse of :meth:`_spread` (``Q`` is orthogonal)."""
        return self._rotate(y, transpose=False)

    def _rotate(self, x, transpose: bool):
        return rotate_slots(x, self._q, int(self.context.channel_uses), transpose)

    def _call(self, fn, *args):
        """``fn(*args)``; a ``tf.function`` through its concrete function for the arguments' shapes, kept: a call
        skips ``tf.function``'s dispatch (what a batch of one image mostly costs)."""
        if not hasattr(fn, "get_concrete_function"):
            return fn(*args)
        key = (id(fn), *((tuple(a.shape), a.dtype) for a in args))
        concrete = self._concrete.get(key)
        if concrete is None:
            concrete = self._concrete[key] = fn.get_concrete_function(*args)
        return concrete(*args)

    def _transmit_impl(self, images, snr_db, small=False):
        """Encode ``images`` and receive them at ``snr_db``: ``(received images, symbols sent)``."""
        symbols = self._encode_xla(images) if small else self.model.encoder(images)
        return self._receive_impl(symbols, snr_db, small=small), symbols

    def _receive_impl(self, symbols, snr_db, small=False):
        if self.architecture.encoder_uses_snr:
            # ``symbols`` are the images: the transmitter adapts to the SNR (per-hop SNRs: the weakest hop's)
            symbols = self.model.encoder(symbols, tf.reduce_min(snr_db))
        out = self.channel(self._spread(symbols), snr_db)
        # the decoder's SNR side information is the SNR the channel reports (a chain: destination-equivalent)
        return (self._decode_xla if small else self.model.decoder)(self._despread(out["y"]), out["snr_db"])

    def describe(self) -> dict:
        d = super().describe()
        d.update(model=self.model_config, snr_train_db=self.train_config.snr_train_db,
                 stored_model=str(self.entry.path) if self.entry is not None else None)
        if len(self.stages) > 1:
            d["stages"] = [st.get_config() for st in self.stages]
        return d

    def encode(self, images: np.ndarray):
        """What is sent for ``images``: a :class:`JSCCTransmission` (the images, encoded at the first
        :meth:`evaluate`); with an SNR-adaptive encoder, an :class:`AdaptiveTransmission` (the images, encoded
        per SNR)."""
        x = tf.constant(np.asarray(images, np.float32))
        if self._transmit is None:
            return AdaptiveTransmission(x)
        return JSCCTransmission(x, self._encode)

    def latent_bits_per_image_for(self, context: SchemeContext) -> int | None:
        return self.architecture.latent_bits_per_image(int(context.channel_uses))

    def latent_bits_per_image(self) -> int | None:
        """Bits per image of a digital latent (2k with the binary quantizer); None for analog symbols."""
        return self.latent_bits_per_image_for(self.context)

    #: Batches of at most this many images (with ``jit_compile`` off and an encoder that does not take the SNR)
    #: run the encoder and the decoder as XLA clusters inside the graph, the channel in graph mode (the same
    #: noise): per-operation overhead dominates small batches and XLA fuses the element-wise operations (one
    #: image: about 1.9x faster; from 16 images graph mode is as fast or faster, oneDNN's convolutions winning).
    #: Such batches' images differ from graph mode's in float rounding only (~1e-7); each new small batch size
    #: compiles once (under a second).
    SMALL_BATCH = 8

    def _evaluate_split(self, state, snr):
        """Encoder, channel and decoder as three compiled calls: the encoder and the decoder this scheme's,
        the channel the chain's own (:meth:`~linksim.channels.base.Channel.compiled`), shared by every scheme
        evaluated over the chain in this process.

        A channel sweep's schemes otherwise trace the chain into each of their compiled calls: measured on
        ``dhd_multihop_qf`` (13 QF chains, 200 images), one scheme's job spent 12.4 s of its 52 s tracing. The
        same operations and the same draws of the random generator as the one-call path, in the same order.
        """
        small = False
        if isinstance(state, JSCCTransmission):
            small = not self.jit_compile and int(state.images.shape[0]) <= self.SMALL_BATCH
            if state.symbols is None:
                state.symbols = self._call(self._encode_xla if small else self._encode, state.images)
            symbols = state.symbols
        else:   # the encoder takes the SNR (per-hop SNRs: the weakest hop's), once per SNR for every chain
            told = tf.reduce_min(snr)
            key = float(told)
            symbols = state.symbols_at.get(key)
            if symbols is None:
                symbols = state.symbols_at[key] = self._call(self._encode_snr, state.images, told)
        y, told = self._call(self.channel.compiled(self.jit_compile), self._spread(symbols), snr)
        if small:
            return self._call(self._decode_xla, self._despread(y), told)
        return self._call(self._decode, y, told)

    def evaluate(self, state, snr_db: float) -> BatchResult:
        snr = tf.constant(snr_db, tf.float32)  # snr_db: scalar or per hop
        if self._split:
            images = self._evaluate_split(state, snr)
        elif isinstance(state, JSCCTransmission):
            small = not self.jit_compile and int(state.images.shape[0]) <= self.SMALL_BATCH
            if state.symbols is None:   # the first SNR point: one compiled call, and the symbols kept for the next
                images, state.symbols = self._call(self._transmit_small if small else self._transmit, state.images,
                                                   snr)
            else:
                images = self._call(self._receive_small if small else self._receive, state.symbols, snr)
        else:
            images = self._call(self._receive, state.images, snr)
        images = images.numpy()
        b = int(images.shape[0])
        bits = self.latent_bits_per_image()
        counts = {"images": b, "channel_uses": b * int(self.context.channel_uses),
                  "source_bits": b * bits if bits is not None else float("nan")}
        return BatchResult(images, counts)


def rotate_slots(x, q, k: int, transpose: bool):
    """The ``k`` symbols ``x`` [batch, k] with their ``2k`` real slots multiplied by ``q`` (``q^T`` with
    ``transpose``); ``x`` itself when ``q`` is None (no spreading)."""
    if q is None:
        return x
    return to_symbols(tf.matmul(to_slots(x), q, transpose_b=transpose), k)


#: Options of a stage (:class:`TrainingStage`), the one list.
STAGE_OPTIONS = tuple(p for p in inspect.signature(TrainingStage).parameters)
#: Options :class:`JSCCScheme` takes besides ``architecture`` and ``stages``, the one list.
SCHEME_OPTIONS = tuple(p for p in inspect.signature(JSCCScheme).parameters if p not in ("architecture", "stages"))


def split_preset_options(preset: str, options: dict, groups: dict) -> dict:
    """Split a preset's flat options into named groups, refusing unknown ones.

    Parameters
    ----------
    preset : str
        The preset's scheme name (for the message).
    options : dict
        The flat options given.
    groups : dict of {group: tuple of option names}

    Output
    ------
    dict of {group: dict of the given options of that group}

    Raises
    ------
    ValueError
        For an option in no group; the message names the allowed ones.
    """
    check_known_options(f"scheme '{preset}'", options, [n for names in groups.values() for n in names])
    return {g: {n: options[n] for n in names if n in options} for g, names in groups.items()}


#: The first stage's options that one-stage presets (and SD-JSCC's stage 1) take flat.
FIRST_STAGE_OPTIONS = ("epochs", "learning_rate", "steps_per_epoch")


def one_stage_preset(preset: str, options: dict, stage_defaults: dict, loss: str) -> dict:
    """:class:`JSCCScheme` arguments of a preset that is the architecture ``preset`` trained in one stage.

    Parameters
    ----------
    preset : str
        The preset's scheme name, also its architecture's registered name.
    options : dict
        The flat options given (scheme, architecture and first-stage options).
    stage_defaults : dict
        Defaults of the stage options (``epochs``, ``learning_rate``).
    loss : str
        The stage's one loss (a :data:`~linksim.registry.LOSSES` name).

    Output
    ------
    dict: ``architecture``, ``stages`` and the scheme options.

    Raises
    ------
    ValueError
        For an option in no group; the message names the allowed ones.
    """
    g = split_preset_options(preset, options, {"scheme": SCHEME_OPTIONS, "architecture": ARCHITECTURES.options(preset),
                                               "stage": FIRST_STAGE_OPTIONS})
    stage = {**stage_defaults, **g["stage"], "losses": [{"type": loss}]}
    return {"architecture": {"type": preset, **g["architecture"]}, "stages": [stage], **g["scheme"]}


def preset_signature(*parts) -> inspect.Signature:
    """A keyword-only signature from ``(callable or Signature, excluded names, prefix, default overrides)``
    parts: a preset's flat options.

    ``inspect.signature`` of a preset gives its flat options with their defaults, so
    :meth:`linksim.registry.Registry.options` lists them (one list, derived).
    """
    params, seen = [], set()
    for fn, exclude, prefix, overrides in parts:
        sig = fn if isinstance(fn, inspect.Signature) else inspect.signature(fn)
        for p in sig.parameters.values():
            if p.name in exclude or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            name = prefix + p.name
            if name in seen:
                continue
            seen.add(name)
            default = overrides.get(p.name, p.default)
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default))
    return inspect.Signature(params)
