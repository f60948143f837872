"""One training loop for every trained network in linksim: :func:`fit`.

:func:`fit` runs ``keras.Model.fit`` over a network's step functions: a training
step (forward pass, loss, gradients, optimiser update) and a validation step, both
traced into ``fit``'s graph. The batches are index arrays drawn per epoch from
``(seed, epoch)`` and fed through ``tf.data``; the step gathers its images from
the training set held as one tensor. One Keras callback does, with the same rules
for every network, what Keras's stock callbacks do, but with its counters saved:

- **Learning-rate schedule** (as ``ReduceLROnPlateau``): with ``lr_patience``, the
  rate halves when the monitored validation value has not improved for
  ``lr_patience`` epochs, down to ``min_lr``. (A network may instead give its
  optimiser a Keras schedule, as the classifier does with a cosine decay.)
- **Early stopping** (as ``EarlyStopping(restore_best_weights=True)``): training
  ends when the monitored value has not improved for ``patience`` epochs; the best
  epoch's weights are restored.
- **Checkpoints and resume** (as ``BackupAndRestore``): after every epoch the
  model, the optimiser, the schedule and stopping counters and the history are
  written to ``checkpoint_dir``; calling again with the same folder resumes after
  the last finished epoch. The batch order, the data augmentation and the channel
  noise (Sionna's global generator is reseeded from ``(seed, epoch)`` at the start
  of each epoch, :func:`seed_epoch`) are functions of the seed and the epoch
  number, so a resumed run ends with the same weights as an uninterrupted one.
  (Keras's own ``BackupAndRestore`` does not save the other callbacks' counters,
  so a resumed run would restart its patience: hence one callback for all.)
- **Logs**: a tqdm progress bar (``progress=True``) and a line per epoch on
  stderr; with ``log_dir``, TensorBoard scalars (off by default).
- **Callbacks** ``(epoch, logs)`` after each epoch's checkpoint.
- **Cost**: the history records each epoch's wall time (``epoch_seconds``,
  checkpointed with the rest, so a resumed run adds to it) and the optimiser steps
  (``train_steps``, the optimiser's counter, also checkpointed);
  :func:`training_facts` turns them into the facts of a stored model's card.

Measured on the shared 2-core CPU (``benchmarks/training_loop.py``): at least as
fast as the two hand-written loops it replaces (``docs/training.md``).

Several GPUs
------------
When more than one GPU is visible, a JSCC scheme builds its model under a
``tf.distribute.MirroredStrategy`` over them (:func:`training_strategy`,
:func:`training_scope`) and :func:`fit` trains it data-parallel: every replica
takes an equal share of each batch, the gradients are summed across replicas (each
replica's loss is weighted by its share of the batch, so the update is the one of
the whole batch) and the variables stay mirrored. The configured ``batch_size``
is the **global** batch: with 4 GPUs and ``batch_size: 64`` every GPU takes 16
images per step, and the optimiser steps, the epochs and the results per epoch
are those of one device up to the noise draws and float rounding (a loss computed
over the batch, e.g. ``mcr2``'s rate reduction, sees each replica's share). The
environment variable ``LINKSIM_TRAIN_DEVICES`` chooses: unset or ``auto``, every
visible GPU when there are two or more; ``off``, one device (today's path); a
comma-separated list (``/gpu:0,/gpu:1``), those devices. With one device nothing
changes.

Two trainers use it:

- :func:`train_jscc` trains any Keras model whose ``call(images, snr_db, training)``
  returns reconstructed images, or a dict of named outputs with ``"images"``,
  through the channel that is part of the model (so training and evaluation share
  one code path). ``snr_train_db`` is one value, or ``[lo, hi]``: then every
  *image* draws its SNR uniformly from the range (so every batch mixes SNRs and
  the gradient of a step is an average over the range, not one SNR's), and the
  validation images get SNRs evenly spaced over the range. Adam at ``learning_rate``, halving down
  to ``learning_rate / 64``; early stopping on the validation loss.
- :func:`linksim.tasks.classifier.train_classifier`: cross-entropy, augmentation,
  cosine decay, early stopping on the validation accuracy.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

__all__ = ["TrainConfig", "fit", "train_jscc", "mse_loss", "images_of", "seed_epoch", "EpochCheckpoints",
           "DEFAULT_TRAIN_SEED", "check_train_seed", "machine_facts", "training_facts", "training_strategy",
           "training_scope", "TRAIN_DEVICES_ENV"]

#: The default training seed of every trained network (JSCC schemes' and the classifier's
#: ``train_seed``): the seed the shipped models were trained with. It is independent of the
#: scenario's ``seed``, which draws the test subset and the evaluation noise only.
DEFAULT_TRAIN_SEED = 1234


#: The environment variable that chooses the training devices (see "Several GPUs" in the module docstring).
TRAIN_DEVICES_ENV = "LINKSIM_TRAIN_DEVICES"


def training_strategy(devices=None):
    """The ``tf.distribute`` strategy networks train with: a ``MirroredStrategy``, or None for one device.

    Parameters
    ----------
    devices : list of str, optional
        The devices to mirror over (e.g. ``["/gpu:0", "/gpu:1"]``, or logical CPUs in
        a test). None: from ``LINKSIM_TRAIN_DEVICES`` (unset or ``auto``: every
        visible GPU, ``off``: none, else a comma-separated list).

    Output
    ------
    tf.distribute.MirroredStrategy over two or more devices, or None (one device:
    the default strategy, today's path)

    Raises
    ------
    ValueError
        For a ``LINKSIM_TRAIN_DEVICES`` that names no device.
    """
    if devices is None:
        env = os.environ.get(TRAIN_DEVICES_ENV, "auto").strip()
        if env.lower() == "off":
            return None
        if env.lower() in ("", "auto"):
            devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        else:
            devices = [d.strip() for d in env.split(",") if d.strip()]
            if not devices:
                raise ValueError(f"{TRAIN_DEVICES_ENV} must be auto, off or a comma-separated list of devices "
                                 f"(got {env!r})")
    devices = list(devices)
    if len(devices) < 2:
        return None
    return tf.distribute.MirroredStrategy(devices)


def training_scope(strategy=None):
    """The context to build a network and its optimiser in: ``strategy.scope()``, or nothing for one device.

    ``strategy`` defaults to :func:`training_strategy` ``()``. A model built inside a
    ``MirroredStrategy``'s scope has mirrored variables, and :func:`train_jscc` trains
    it over that strategy's devices.
    """
    strategy = training_strategy() if strategy is None else strategy
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def _model_strategy(model):
    """The ``MirroredStrategy`` ``model`` was built under (its variables are mirrored), or None."""
    strategy = getattr(model, "distribute_strategy", None)   # Keras: the strategy of the scope it was built in
    return strategy if strategy is not None and strategy.num_replicas_in_sync > 1 else None


def check_train_seed(value, name: str = "train_seed") -> int:
    """``value`` as an int, or ValueError unless it is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0 (got {value!r})")
    return int(value)


def machine_facts() -> dict:
    """Where a network trains: ``{"processor", "platform", "cpu_count", "device"}``.

    ``device`` is ``"CPU"`` or the name of the first GPU TensorFlow sees.
    """
    import os
    import platform

    try:
        gpus = tf.config.list_physical_devices("GPU")
        device = "CPU"
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            device = f"GPU: {details.get('device_name', gpus[0].name)}" + (f" (x{len(gpus)})" if len(gpus) > 1 else "")
    except Exception:  # pragma: no cover - a device query should not fail a training run
        device = "unknown"
    return {"processor": platform.processor() or platform.machine(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "device": device}


def training_facts(history: dict, train_seed: int) -> dict:
    """The card facts of a training run: how long it trained, and on what.

    Parameters
    ----------
    history : dict
        The history :func:`fit` returned (``epoch_seconds``, ``train_steps``) with
        ``n_train`` added by the trainer.
    train_seed : int

    Output
    ------
    dict: ``train_seconds`` (wall time of the epochs, summed over resumed runs; None
    for a history without it), ``train_steps`` (optimiser steps), ``train_images``
    (training images after the validation split), ``machine``
    (:func:`machine_facts`), ``tensorflow`` (its version) and ``train_seed``.
    """
    secs = history.get("epoch_seconds")
    return {"train_seconds": round(float(sum(secs)), 1) if secs else None,
            "train_steps": history.get("train_steps"), "train_images": history.get("n_train"),
            "machine": machine_facts(), "tensorflow": tf.__version__, "train_seed": int(train_seed)}


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train_jscc` (each is a scenario field of a JSCC scheme).

    Raises
    ------
    ValueError
        On a non-positive count or rate, or a bad ``snr_train_db``.
    """

    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 8
    lr_patience: int = 3
    val_fraction: float = 0.1
    snr_train_db: float | list = 10.0
    seed: int = 0
    steps_per_epoch: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "patience", "lr_patience"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer (got {v!r})")
        if not (self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0 (got {self.learning_rate!r})")
        if not (0 < self.val_fraction < 0.5):
            raise ValueError(f"val_fraction must be in (0, 0.5) (got {self.val_fraction!r})")
        self.snr_range()  # validates

    def snr_range(self) -> tuple[float, float]:
        """``(lo, hi)`` of the training SNR in dB (equal for a single value)."""
        s = self.snr_train_db
        if isinstance(s, (int, float)) and not isinstance(s, bool):
            return float(s), float(s)
        if isinstance(s, (list, tuple)) and len(s) == 2 and all(isinstance(v, (int, float)) for v in s) \
                and s[0] <= s[1]:
            return float(s[0]), float(s[1])
        raise ValueError(f"snr_train_db must be a number or [lo, hi] with lo <= hi (got {s!r})")


class EpochCheckpoints:
    """Per-epoch checkpoints and best weights of a training run (used by :func:`fit`).

    With a ``checkpoint_dir``, the model, the optimiser and the run's counters
    (``state``, a dict of ``tf.Variable``) are checkpointed there after every epoch
    (:meth:`save_epoch`, with ``history.json`` beside them), and an existing
    checkpoint is restored at construction: the run resumes after its last finished
    epoch, with its history. The best epoch's weights go to ``best.weights.h5``
    (without a folder: a copy in memory) and :meth:`restore_best` loads them back.

    Parameters
    ----------
    checkpoint_dir : path or None
    model : keras.Model
    optimizer : keras.optimizers.Optimizer
        Built (its variables exist).
    state : dict of tf.Variable
        The counters to checkpoint (epoch, best value, waits, ...).
    history : dict of lists
        The empty history of a fresh run; :attr:`history` is the one to append to.
    """

    def __init__(self, checkpoint_dir, model, optimizer, state: dict, history: dict):
        self.dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.model = model
        self.history = history
        self.best_weights = None
        self.manager = None
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, **state)
        self.manager = tf.train.CheckpointManager(ckpt, str(self.dir), max_to_keep=1)
        if self.manager.latest_checkpoint:
            fresh = [(v, v.numpy()) for v in [*model.weights, *optimizer.variables, *state.values()]]
            try:
                self._restore(ckpt)
            except Exception as exc:  # a damaged checkpoint: any of TF's, h5py's or json's errors
                for v, value in fresh:
                    v.assign(value)
                self._set_aside(exc)
                self.manager = tf.train.CheckpointManager(ckpt, str(self.dir), max_to_keep=1)

    def _restore(self, ckpt) -> None:
        """Restore the last epoch; raises when a file of the checkpoint is damaged."""
        best = self.dir / "best.weights.h5"
        if best.exists():
            self.model.load_weights(best)  # read once here, so a damaged file is found before training
            self.best_weights = best
        ckpt.restore(self.manager.latest_checkpoint).assert_existing_objects_matched().expect_partial()
        if (self.dir / "history.json").exists():
            history = json.loads((self.dir / "history.json").read_text())
            if not isinstance(history, dict) or not isinstance(history.get("epoch"), list):
                raise ValueError("history.json is not a training history")
            self.history = history

    def _set_aside(self, exc: Exception) -> None:
        """Move a damaged checkpoint folder aside (kept, never deleted) and start afresh."""
        import warnings
        from datetime import datetime

        aside = self.dir.with_name(f"{self.dir.name}.damaged-{datetime.now():%Y%m%d-%H%M%S}")
        self.dir.rename(aside)
        self.dir.mkdir(parents=True)
        self.best_weights = None
        cause = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        warnings.warn(f"the training checkpoint in {self.dir} is damaged ({type(exc).__name__}: {cause}); it was "
                      f"moved to {aside} and training starts again from the first epoch", stacklevel=3)

    def keep_best(self) -> None:
        """Remember the model's current weights as the best so far."""
        if self.dir is not None:
            self.best_weights = self.dir / "best.weights.h5"
            self.model.save_weights(self.best_weights)
        else:
            self.best_weights = [v.numpy() for v in self.model.weights]

    def save_epoch(self) -> None:
        """Checkpoint the finished epoch (model, optimiser, counters, history)."""
        if self.manager is not None:
            self.manager.save()
            (self.dir / "history.json").write_text(json.dumps(self.history))

    def restore_best(self) -> None:
        """Load the best weights into the model (nothing if no epoch was better than none)."""
        if isinstance(self.best_weights, Path):
            self.model.load_weights(self.best_weights)
        elif self.best_weights is not None:
            for v, w in zip(self.model.weights, self.best_weights):
                v.assign(w)


def mse_loss(x, x_hat):
    """Mean squared error over the batch, the DeepJSCC training loss.

    ``x_hat`` may also be a model's dict of outputs (its ``"images"`` are used).
    """
    return tf.reduce_mean(tf.square(x - images_of(x_hat)))


def images_of(out):
    """The received images in a model's output.

    Input
    -----
    out : [batch, H, W, C] tf.float32, or a dict of named outputs with key ``"images"``

    Output
    ------
    [batch, H, W, C], tf.float32
    """
    return out["images"] if isinstance(out, dict) else out


def _psnr(x, x_hat):
    mse = tf.reduce_mean(tf.square(x - x_hat), axis=[1, 2, 3])
    return tf.reduce_mean(-10.0 * tf.math.log(tf.maximum(mse, 1e-10)) / math.log(10.0))


def _split(n: int, val_fraction: float, seed: int):
    order = np.random.default_rng(seed + 7919).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return order[n_val:], order[:n_val]


def seed_epoch(seed: int, epoch: int) -> None:
    """Reseed Sionna's global generator (the channel noise) from ``(seed, epoch)``.

    Called by :func:`fit` at the start of every epoch, so the noise a model is
    trained with depends on the seed and the epoch only, not on how many epochs ran
    in this process (a resumed run sees the same noise).
    """
    import sionna.phy

    state = np.random.default_rng([int(seed), int(epoch), 104729]).integers(0, 2 ** 31 - 1)
    sionna.phy.config.tf_rng.reset_from_seed(int(state))


def _write_scalars(writer, values: dict, step: int) -> None:
    """TensorBoard scalars without the tensorboard package (``tf.summary.scalar`` needs it)."""
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    with writer.as_default():
        for k, v in values.items():
            tf.summary.write(k, tf.constant(float(v), tf.float32), step=step, metadata=meta)
    writer.flush()


def _current_lr(optimizer) -> float:
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class _StepModel(keras.Model):
    """Runs ``train_step`` / ``val_step`` functions under ``keras.Model.fit``.

    The network itself is not an attribute (:func:`fit` checkpoints it); the step
    functions apply the gradients. Each metric the steps return is averaged over
    the epoch, weighted by the batch sizes.
    """

    def __init__(self, train_fn, val_fn, metric_names, **kwargs):
        super().__init__(**kwargs)
        self._train_fn, self._val_fn = train_fn, val_fn
        self._trackers = {k: keras.metrics.Mean(name=k) for k in metric_names}
        self.built = True

    @property
    def metrics(self):
        return list(self._trackers.values())

    def _update(self, values, batch):
        n = tf.cast(tf.shape(batch[0])[0], tf.float32)
        for k, tracker in self._trackers.items():
            tracker.update_state(values[k], sample_weight=n)
        return {k: t.result() for k, t in self._trackers.items()}

    def train_step(self, data):
        return self._update(self._train_fn(*data), data)

    def test_step(self, data):
        return self._update(self._val_fn(*data), data)


class _EpochControl(keras.callbacks.Callback):
    """Learning-rate plateau, early stopping, checkpoints, history, logs and user callbacks, once per epoch.

    Keras's ``ReduceLROnPlateau``, ``EarlyStopping`` and ``BackupAndRestore`` do the
    same jobs, but the first two's counters and best weights are not part of the
    backup, so a resumed run would restart its patience; here they are part of the
    checkpoint (:class:`_Run`).
    """

    def __init__(self, run):
        super().__init__()
        self.run = run

    def on_epoch_begin(self, epoch, logs=None):
        self.run.begin_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self.run.end_epoch(epoch, logs):
            self.model.stop_training = True


class _ProgressBar(keras.callbacks.Callback):
    """A tqdm bar over the batches of each epoch (only with ``progress=True``: it reads every batch's logs)."""

    def __init__(self, run):
        super().__init__()
        self.run = run
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.run.n_batches, file=sys.stderr, leave=False, unit="batch",
                        desc=f"{self.run.desc} epoch {epoch + 1}/{self.run.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(batch + 1 - self.bar.n)  # called every steps_per_execution batches
        if logs:
            self.bar.set_postfix({k: f"{float(v):.4g}" for k, v in logs.items()})

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()


class _Run:
    """The per-epoch bookkeeping of :func:`fit` (called from its Keras callback)."""

    def __init__(self, *, network, optimizer, epochs, seed, monitor, mode, min_delta, patience, lr_patience,
                 min_lr, checkpoint_dir, log_dir, progress, callbacks, desc, n_batches, schedules=None):
        self.optimizer, self.epochs, self.seed = optimizer, epochs, seed
        self.schedules = list(schedules or [])
        self.monitor, self.sign, self.min_delta = monitor, (1.0 if mode == "min" else -1.0), min_delta
        self.patience, self.lr_patience, self.min_lr = patience, lr_patience, min_lr
        self.progress, self.callbacks, self.desc, self.n_batches = progress, callbacks or [], desc, n_batches
        self.state = {"epoch": tf.Variable(0, dtype=tf.int64), "best": tf.Variable(np.inf, dtype=tf.float64),
                      "wait": tf.Variable(0, dtype=tf.int64), "lr_wait": tf.Variable(0, dtype=tf.int64),
                      "best_epoch": tf.Variable(0, dtype=tf.int64)}
        if mode == "max":
            self.state["best"].assign(-np.inf)
        self.checkpoints = EpochCheckpoints(checkpoint_dir, network, optimizer, self.state, {"epoch": []})
        self.history = self.checkpoints.history
        self.writer = None
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            self.writer = tf.summary.create_file_writer(str(log_dir))

    @property
    def start(self) -> int:
        return int(self.state["epoch"].numpy())

    @property
    def stopped(self) -> bool:
        return int(self.state["wait"].numpy()) >= self.patience

    def begin_epoch(self, epoch):
        self.epoch_start = time.perf_counter()
        seed_epoch(self.seed, epoch)
        for schedule in self.schedules:   # after a resumed run's restore, so a checkpointed value is overridden
            schedule.set_epoch(epoch)

    def end_epoch(self, epoch, logs) -> bool:
        """Record the finished epoch; True when training must stop."""
        logs = {k: float(v) for k, v in (logs or {}).items() if k not in ("learning_rate", "lr")}
        lr = _current_lr(self.optimizer)
        history, state = self.history, self.state
        history["epoch"].append(epoch + 1)
        for k, v in logs.items():
            history.setdefault(k, []).append(v)
        history.setdefault("lr", []).append(lr)
        history.setdefault("epoch_seconds", []).append(round(time.perf_counter() - self.epoch_start, 3))
        if self.writer is not None:
            _write_scalars(self.writer, {**logs, "lr": lr}, epoch + 1)
        if self.progress:  # True or "epochs"
            from tqdm.auto import tqdm

            tqdm.write(f"{self.desc} epoch {epoch + 1}/{self.epochs}: "
                       + ", ".join(f"{k} {v:.5g}" for k, v in logs.items())
                       + f", lr {lr:.2e}", file=sys.stderr)
        value = logs[self.monitor]
        if self.sign * value < self.sign * float(state["best"].numpy()) - self.min_delta:
            state["best"].assign(value)
            state["best_epoch"].assign(epoch + 1)
            state["wait"].assign(0)
            state["lr_wait"].assign(0)
            self.checkpoints.keep_best()
        else:
            state["wait"].assign_add(1)
            state["lr_wait"].assign_add(1)
            if self.lr_patience is not None and int(state["lr_wait"].numpy()) >= self.lr_patience \
                    and lr > self.min_lr:
                self.optimizer.learning_rate.assign(max(lr / 2, self.min_lr))
                state["lr_wait"].assign(0)
        state["epoch"].assign(epoch + 1)
        self.checkpoints.save_epoch()
        for cb in self.callbacks:
            cb(epoch + 1, dict(logs))
        return self.stopped

    def finish(self, stopped_early: bool) -> dict:
        self.checkpoints.restore_best()
        if self.writer is not None:
            self.writer.close()
        self.history.update(best_epoch=int(self.state["best_epoch"].numpy()), epochs_run=len(self.history["epoch"]),
                            stopped_early=bool(stopped_early), train_steps=int(self.optimizer.iterations.numpy()))
        return self.history


def fit(model, optimizer, *, train_step: Callable, epoch_batches: Callable, n_batches: int, val_step: Callable,
        val_data: tuple, val_batch_size: int = 256, epochs: int, seed: int, monitor: str = "val_loss",
        mode: str = "min", min_delta: float = 0.0, patience: int, lr_patience: int | None = None,
        min_lr: float = 0.0, checkpoint_dir: str | Path | None = None, log_dir: str | Path | None = None,
        progress: bool | str = True, callbacks: list[Callable] | None = None, desc: str = "train",
        steps_per_execution: int = 8, schedules: list | None = None, strategy=None) -> dict:
    """The training loop of every network: ``keras.Model.fit`` over step functions (see the module docstring).

    Parameters
    ----------
    model : keras.Model
        The network; its weights are checkpointed and the best epoch's restored.
    optimizer : keras.optimizers.Optimizer
        Built on the model's trainable variables. Its learning rate is a variable
        (halved on plateaus when ``lr_patience`` is given) or a Keras schedule.
    train_step : callable ``(*batch) -> dict`` of scalar tensors
        One optimisation step (traced into ``fit``'s graph): takes the batch's
        elements of ``epoch_batches``' arrays, applies the gradients, and returns
        ``"loss"`` and any other metric, each the mean over the batch.
    epoch_batches : callable ``(epoch) -> tuple of np.ndarray``
        The training batches of the 0-based ``epoch``: arrays whose first
        dimension is ``n_batches`` (e.g. ``[n_batches, batch]`` image indices and
        ``[n_batches]`` SNRs); must be a function of the seed and the epoch only.
    n_batches : int
        Batches per epoch.
    val_step : callable ``(*batch) -> dict`` of scalar tensors
        Validation metrics of one batch (the same keys as ``train_step``), each the
        mean over the batch; recorded with the prefix ``val_``, weighted by the
        batch sizes.
    val_data : tuple of arrays
        The validation set, batched along its first dimension by ``val_batch_size``.
    epochs, patience : int
        Positive.
    seed : int
        Passed to :func:`seed_epoch` at the start of every epoch.
    monitor : str
        The history key early stopping and the schedule watch (default ``"val_loss"``).
    mode : {"min", "max"}
        Whether lower or higher ``monitor`` values are better.
    min_delta : float
        An improvement must exceed this.
    lr_patience : int, optional
        Halve the learning rate after this many epochs without improvement (not
        below ``min_lr``); None: no plateau schedule.
    checkpoint_dir : path, optional
        Checkpoint every epoch there and resume from it.
    log_dir : path, optional
        TensorBoard logs (one scalar per history key and epoch); None: none.
    progress : bool or "epochs"
        True: a progress bar and a line per epoch (stderr); "epochs": only the line
        per epoch; False: silent.
    callbacks : list of callables ``(epoch, logs)``, optional
        Called after each epoch's checkpoint with the 1-based epoch and its metrics.
    desc : str
        Label of the progress display.
    schedules : list, optional
        Objects with ``set_epoch(epoch)``, called with the 0-based epoch before each
        epoch trains (also the first epoch of a resumed run, after its checkpoint is
        restored): loss-weight ramps, an annealed temperature.
    steps_per_execution : int
        At most this many training steps per call of Keras's compiled train
        function (default 8: less Python overhead per step): the largest divisor
        of ``n_batches`` not above it. The result is the same; the progress bar
        moves in steps of this size. With a ``strategy``: 1.
    strategy : tf.distribute.MirroredStrategy, optional
        Train data-parallel over its devices (``model`` and ``optimizer`` must have
        been built in its scope; the steps run on every replica with its share of each
        batch and must weight their gradients by it, as :func:`train_jscc`'s do).
        Then every array of ``epoch_batches`` must be ``[n_batches, batch, ...]``
        (one value per image), so that each batch can be split. None: one device.

    Output
    ------
    dict: the history: ``"epoch"``, ``"lr"``, ``"epoch_seconds"`` (wall time) and one
    list per metric (``"loss"``, ..., ``"val_loss"``, ...) with one entry per finished
    epoch, and ``"best_epoch"`` (1-based, 0 if none), ``"epochs_run"``,
    ``"stopped_early"``, ``"train_steps"`` (the optimiser's steps, over resumed runs too).

    Raises
    ------
    ValueError
        If ``mode`` is not "min" or "max", or ``monitor`` is not a metric of the run.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max' (got {mode!r})")
    run = _Run(network=model, optimizer=optimizer, epochs=epochs, seed=seed, monitor=monitor, mode=mode,
               min_delta=min_delta, patience=patience, lr_patience=lr_patience, min_lr=min_lr,
               checkpoint_dir=checkpoint_dir, log_dir=log_dir, progress=progress, callbacks=callbacks, desc=desc,
               n_batches=n_batches, schedules=schedules)
    start = run.start
    if start >= epochs or (start > 0 and run.stopped):
        return run.finish(start > 0 and run.stopped)

    per_epoch = [tuple(np.asarray(a) for a in epoch_batches(e)) for e in range(start, epochs)]
    train_arrays = tuple(np.concatenate(parts) for parts in zip(*per_epoch))
    if strategy is None:
        train_ds = tf.data.Dataset.from_tensor_slices(train_arrays).prefetch(tf.data.AUTOTUNE)
    else:
        # batched by tf.data, so that Keras's distributed dataset splits every batch across the replicas
        bs = train_arrays[0].shape[1]
        if any(a.ndim < 2 or a.shape[1] != bs for a in train_arrays):
            raise ValueError("with a strategy, every array of epoch_batches must be [n_batches, batch, ...]")
        flat = tuple(a.reshape(-1, *a.shape[2:]) for a in train_arrays)
        train_ds = tf.data.Dataset.from_tensor_slices(flat).batch(bs, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    val_ds = tf.data.Dataset.from_tensor_slices(tuple(val_data)).batch(val_batch_size)
    probe = val_step(*next(iter(val_ds)))
    names = list(probe)
    if monitor.removeprefix("val_") not in names:
        allowed = ", ".join(f"{p}{k}" for p in ("", "val_") for k in names)
        raise ValueError(f"monitor must be one of {allowed} (got {monitor!r})")

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        stepper = _StepModel(train_step, val_step, names)   # Keras distributes what was built in the scope
    # Keras runs whole executions: one that does not end at the epoch's end would take the next epoch's
    # batches, so the steps per execution must divide the epoch's steps
    spe = max(d for d in range(1, max(1, min(int(steps_per_execution), n_batches)) + 1) if n_batches % d == 0)
    if strategy is not None:
        # one step per execution: Keras's loop of several distributed steps fails here (TF 2.21, Keras 3) with
        # "You must feed a value for placeholder" on the channel's random generator; the steps on several GPUs
        # are long enough for Python's overhead not to matter
        spe = 1
    stepper.compile(optimizer=optimizer, jit_compile=False, steps_per_execution=spe)
    keras_callbacks = ([_ProgressBar(run)] if progress is True else []) + [_EpochControl(run)]
    stepper.fit(train_ds, epochs=epochs, initial_epoch=start, steps_per_epoch=n_batches, validation_data=val_ds,
                verbose=0, callbacks=keras_callbacks, shuffle=False)
    return run.finish(run.stopped)


def train_jscc(model, x_train: np.ndarray, config: TrainConfig, *, loss_fn: Callable = mse_loss,
               checkpoint_dir: str | Path | None = None, progress: bool = True,
               callbacks: list[Callable] | None = None, desc: str = "train",
               log_dir: str | Path | None = None, y_train: np.ndarray | None = None,
               schedules: list | None = None) -> dict:
    """Train a JSCC ``model`` on ``x_train`` with :func:`fit` (see the module docstring).

    Parameters
    ----------
    model : keras.Model
        ``model(images, snr_db, training=...)`` -> reconstructed images
        ``[batch, H, W, C]``, or a dict of named outputs holding them under
        ``"images"`` (and e.g. ``"symbols"``, ``"num_symbols"``).
    x_train : [N, H, W, C], float32 in [0, 1]
        Training images; ``val_fraction`` of them are held out for validation.
    config : TrainConfig
    loss_fn : callable ``(x, out) -> scalar``, or ``(x, out, labels) -> scalar`` with ``y_train``
        Receives what the model returned (images, or the dict of outputs, so a loss
        can use a rate term or the symbols). Default :func:`mse_loss`.
    checkpoint_dir : path, optional
        Where to checkpoint every epoch and resume from.
    progress : bool or "epochs"
        True: a progress bar with loss and PSNR, and a line per epoch (stderr);
        "epochs": only the line per epoch (for logs); False: silent.
    callbacks : list of callables ``(epoch, logs)``, optional
        Called after each epoch's checkpoint (e.g. to stop a run in tests).
    desc : str
        Label of the progress display.
    log_dir : path, optional
        TensorBoard logs; None (default): none.
    y_train : [N] int, optional
        The class of every training image: given, the loss is called with the batch's
        labels as a third argument (e.g. the rate-reduction loss, ``mcr2``).
    schedules : list, optional
        Per-epoch schedules (``set_epoch(epoch)`` before each epoch), as :func:`fit`.

    A ``model`` built in a ``MirroredStrategy``'s scope (:func:`training_scope`)
    trains data-parallel over its devices; ``config.batch_size`` is the global batch
    (see "Several GPUs" in the module docstring).

    Output
    ------
    dict: the history, ``{"epoch": [...], "loss": [...], "psnr_db": [...],
    "val_loss": [...], "val_psnr_db": [...], "lr": [...], "epoch_seconds": [...],
    "best_epoch": int, "epochs_run": int, "stopped_early": bool, "train_steps": int,
    "n_train": int, "n_val": int, "config": dict}``. The validation
    PSNR is that of the output images at SNRs evenly spaced over the training range.

    Raises
    ------
    ValueError
        With fewer than 4 training images.
    """
    x_train = np.asarray(x_train, np.float32)
    if len(x_train) < 4:
        raise ValueError(f"training needs at least 4 images (got {len(x_train)})")
    tr_idx, val_idx = _split(len(x_train), config.val_fraction, config.seed)
    x_tr, x_val = x_train[tr_idx], x_train[val_idx]
    if y_train is not None:
        y_train = np.asarray(y_train).astype(np.int32)
        if len(y_train) != len(x_train):
            raise ValueError(f"y_train has {len(y_train)} labels for {len(x_train)} training images")
        labels = tf.constant(y_train[tr_idx])
        val_labels = y_train[val_idx]
    lo, hi = config.snr_range()
    # validation SNRs: one value, or for a range one per image, evenly spaced over it
    val_snr = (np.float32(lo) if hi == lo else
               (lo + (hi - lo) * (np.arange(len(x_val)) + 0.5) / max(1, len(x_val))).astype(np.float32))

    # a model built in a MirroredStrategy's scope (several GPUs, training_scope) trains over its devices
    strategy = _model_strategy(model)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        opt = keras.optimizers.Adam(learning_rate=config.learning_rate)
        variables = model.trainable_variables
        opt.build(variables)
    images = tf.constant(x_tr)
    bs = min(config.batch_size, len(x_tr))   # the global batch: the replicas share it

    def metrics(x, out, loss):
        return {"loss": loss, "psnr_db": _psnr(x, images_of(out))}

    def train_step(idx, snr):
        x = tf.gather(images, idx)
        with tf.GradientTape() as tape:
            out = model(x, snr, training=True)
            loss = loss_fn(x, out) if y_train is None else loss_fn(x, out, tf.gather(labels, idx))
            # several replicas: the optimiser sums their gradients, so each weights its loss by its share
            scaled = loss if strategy is None else loss * tf.cast(tf.shape(idx)[0], loss.dtype) / bs
        grads = tape.gradient(scaled, variables)
        opt.apply_gradients(zip(grads, variables))
        return metrics(x, out, loss)

    def val_step(x, *rest):
        # a batch is (x), (x, snr) for an SNR range, and the labels last when they are given
        snr = rest[0] if hi > lo else tf.constant(val_snr)
        out = model(x, snr, training=False)
        return metrics(x, out, loss_fn(x, out) if y_train is None else loss_fn(x, out, rest[-1]))

    n_batches = max(1, len(x_tr) // bs)
    if config.steps_per_epoch:
        n_batches = min(n_batches, int(config.steps_per_epoch))

    def epoch_batches(epoch):
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(len(x_tr))
        snrs = (rng.uniform(lo, hi, (n_batches, bs)).astype(np.float32) if hi > lo
                else np.full(n_batches if strategy is None else (n_batches, bs), lo, np.float32))  # split per image
        return order[:n_batches * bs].reshape(n_batches, bs).astype(np.int32), snrs

    val_data = ((x_val,) if hi == lo else (x_val, val_snr)) + (() if y_train is None else (val_labels,))
    history = fit(model, opt, train_step=train_step, epoch_batches=epoch_batches, n_batches=n_batches,
                  val_step=val_step, val_data=val_data, val_batch_size=256,
                  epochs=config.epochs,
                  seed=config.seed, monitor="val_loss", mode="min", min_delta=1e-7, patience=config.patience,
                  lr_patience=config.lr_patience, min_lr=config.learning_rate / 64,
                  checkpoint_dir=checkpoint_dir, log_dir=log_dir, progress=progress, callbacks=callbacks,
                  desc=desc, schedules=schedules, strategy=strategy)
    history.update(n_train=int(len(x_tr)), n_val=int(len(x_val)), config=dict(asdict(config)))
    return history
