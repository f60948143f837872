"""Training of end-to-end (JSCC) models: Adam, learning-rate schedule, validation,
early stopping, checkpoints every epoch, resume, progress bar.

:func:`train_jscc` trains any Keras model whose ``call(images, snr_db, training)``
returns reconstructed images, through the channel that is part of the model (so
training and evaluation share one code path).

- **SNR in training**: ``snr_train_db`` is one value, or ``[lo, hi]``: then every
  batch draws its SNR uniformly from the range.
- **Schedule**: Adam at ``learning_rate``; the rate halves when the validation loss
  has not improved for ``lr_patience`` epochs (down to ``learning_rate / 64``).
- **Early stopping**: training ends when the validation loss has not improved for
  ``patience`` epochs; the best epoch's weights are restored.
- **Checkpoints**: after every epoch the model, optimiser, schedule state and
  history are written to ``checkpoint_dir``. Calling :func:`train_jscc` again with
  the same directory resumes after the last finished epoch (an interrupted run
  loses at most the epoch in progress). Batch order is a function of the seed
  and the epoch number, so a resumed run sees the same batches as an
  uninterrupted one.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

__all__ = ["TrainConfig", "train_jscc", "mse_loss", "EpochCheckpoints"]


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
    """Per-epoch checkpoints and best weights of a training run (the JSCC and the classifier trainers).

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
            ckpt.restore(self.manager.latest_checkpoint).expect_partial()
            if (self.dir / "history.json").exists():
                self.history = json.loads((self.dir / "history.json").read_text())
            if (self.dir / "best.weights.h5").exists():
                self.best_weights = self.dir / "best.weights.h5"

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
    """Mean squared error over the batch, the DeepJSCC training loss."""
    return tf.reduce_mean(tf.square(x - x_hat))


def _psnr(x, x_hat):
    mse = tf.reduce_mean(tf.square(x - x_hat), axis=[1, 2, 3])
    return tf.reduce_mean(-10.0 * tf.math.log(tf.maximum(mse, 1e-10)) / math.log(10.0))


def _split(n: int, val_fraction: float, seed: int):
    order = np.random.default_rng(seed + 7919).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return order[n_val:], order[:n_val]


def train_jscc(model, x_train: np.ndarray, config: TrainConfig, *, loss_fn: Callable = mse_loss,
               checkpoint_dir: str | Path | None = None, progress: bool = True,
               callbacks: list[Callable] | None = None, desc: str = "train") -> dict:
    """Train ``model`` on ``x_train`` (see the module docstring).

    Parameters
    ----------
    model : keras.Model
        ``model(images, snr_db, training=...)`` -> reconstructed images.
    x_train : [N, H, W, C], float32 in [0, 1]
        Training images; ``val_fraction`` of them are held out for validation.
    config : TrainConfig
    loss_fn : callable ``(x, x_hat) -> scalar``
        Default mean squared error.
    checkpoint_dir : path, optional
        Where to checkpoint every epoch and resume from.
    progress : bool or "epochs"
        True: a progress bar with loss and PSNR, and a line per epoch (stderr);
        "epochs": only the line per epoch (for logs); False: silent.
    callbacks : list of callables ``(epoch, logs)``, optional
        Called after each epoch's checkpoint (e.g. to stop a run in tests).

    Output
    ------
    dict: the history, ``{"epoch": [...], "loss": [...], "val_loss": [...],
    "val_psnr_db": [...], "lr": [...], "best_epoch": int, "epochs_run": int,
    "stopped_early": bool}``
    """
    import keras
    from tqdm.auto import tqdm

    x_train = np.asarray(x_train, np.float32)
    if len(x_train) < 4:
        raise ValueError(f"training needs at least 4 images (got {len(x_train)})")
    tr_idx, val_idx = _split(len(x_train), config.val_fraction, config.seed)
    x_tr, x_val = x_train[tr_idx], x_train[val_idx]
    lo, hi = config.snr_range()
    val_snr = 0.5 * (lo + hi)

    opt = keras.optimizers.Adam(learning_rate=config.learning_rate)
    variables = model.trainable_variables
    opt.build(variables)
    state = {"epoch": tf.Variable(0, dtype=tf.int64), "best": tf.Variable(np.inf, dtype=tf.float64),
             "wait": tf.Variable(0, dtype=tf.int64), "lr_wait": tf.Variable(0, dtype=tf.int64),
             "best_epoch": tf.Variable(0, dtype=tf.int64)}
    checkpoints = EpochCheckpoints(checkpoint_dir, model, opt, state,
                                   {"epoch": [], "loss": [], "val_loss": [], "val_psnr_db": [], "lr": []})
    history = checkpoints.history

    sig = [tf.TensorSpec([None, *x_train.shape[1:]], tf.float32), tf.TensorSpec([], tf.float32)]

    @tf.function(input_signature=sig)
    def train_step(x, snr):
        with tf.GradientTape() as tape:
            x_hat = model(x, snr, training=True)
            loss = loss_fn(x, x_hat)
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return loss, _psnr(x, x_hat)

    @tf.function(input_signature=sig)
    def val_step(x, snr):
        x_hat = model(x, snr, training=False)
        return loss_fn(x, x_hat), _psnr(x, x_hat)

    bs = config.batch_size
    n_batches = max(1, len(x_tr) // bs)
    if config.steps_per_epoch:
        n_batches = min(n_batches, int(config.steps_per_epoch))
    start = int(state["epoch"].numpy())
    stopped_early = start > 0 and int(state["wait"].numpy()) >= config.patience
    epoch = start
    for epoch in range(start, config.epochs):
        if stopped_early:
            break
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(len(x_tr))
        snrs = rng.uniform(lo, hi, n_batches).astype(np.float32) if hi > lo else np.full(n_batches, lo, np.float32)
        bar = tqdm(range(n_batches), disable=progress is not True, file=sys.stderr, leave=False,
                   desc=f"{desc} epoch {epoch + 1}/{config.epochs}", unit="batch")
        losses, psnrs = [], []
        for b in bar:
            x = tf.constant(x_tr[order[b * bs:(b + 1) * bs]])
            loss, p = train_step(x, tf.constant(snrs[b]))
            losses.append(float(loss))
            psnrs.append(float(p))
            if b % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}", psnr=f"{np.mean(psnrs[-10:]):.2f}dB")
        bar.close()
        vl, vp = [], []
        for j in range(0, len(x_val), 256):
            l_, p_ = val_step(tf.constant(x_val[j:j + 256]), tf.constant(val_snr, tf.float32))
            w = len(x_val[j:j + 256])
            vl.append(float(l_) * w)
            vp.append(float(p_) * w)
        val_loss, val_psnr = sum(vl) / len(x_val), sum(vp) / len(x_val)
        lr = float(opt.learning_rate.numpy())
        history["epoch"].append(epoch + 1)
        history["loss"].append(float(np.mean(losses)))
        history["val_loss"].append(val_loss)
        history["val_psnr_db"].append(val_psnr)
        history["lr"].append(lr)
        if progress:  # True or "epochs"
            tqdm.write(f"{desc} epoch {epoch + 1}/{config.epochs}: loss {np.mean(losses):.5f}, "
                       f"val loss {val_loss:.5f}, val PSNR {val_psnr:.2f} dB, lr {lr:.2e}", file=sys.stderr)
        if val_loss < float(state["best"].numpy()) - 1e-7:
            state["best"].assign(val_loss)
            state["best_epoch"].assign(epoch + 1)
            state["wait"].assign(0)
            state["lr_wait"].assign(0)
            checkpoints.keep_best()
        else:
            state["wait"].assign_add(1)
            state["lr_wait"].assign_add(1)
            if int(state["lr_wait"].numpy()) >= config.lr_patience and lr > config.learning_rate / 64:
                opt.learning_rate.assign(lr / 2)
                state["lr_wait"].assign(0)
        state["epoch"].assign(epoch + 1)
        checkpoints.save_epoch()
        for cb in callbacks or []:
            cb(epoch + 1, {"loss": history["loss"][-1], "val_loss": val_loss, "val_psnr_db": val_psnr})
        if int(state["wait"].numpy()) >= config.patience:
            stopped_early = True
            break
    checkpoints.restore_best()
    history.update(best_epoch=int(state["best_epoch"].numpy()), epochs_run=len(history["epoch"]),
                   stopped_early=bool(stopped_early), config={k: v for k, v in asdict(config).items()})
    return history
