"""Training-loop speed: the old hand-written loops, linksim's one loop (``linksim.training.fit``,
on ``keras.Model.fit``) and a plain Keras ``Model.fit``, side by side in one process.

Two networks, as the shipped scenarios train them:

- ``deepjscc``: DeepJSCC on the embedded data (28x28 grey, k = 486 channel uses,
  filters 16/32/32/32, Sionna AWGN at 10 dB), batch 64, MSE, Adam;
- ``classifier``: the default :class:`~linksim.tasks.ImageClassifier` (width 32,
  batch norm, dropout), batch 64, cross-entropy, augmentation (shifts and flips).

Each loop trains a fresh model (same seed) for ``--epochs`` epochs of 126 steps
on the 9,000 embedded training images (8,100 train / 900 validation). Training
images per second = the training images of epochs 2..E over the wall time from the
end of epoch 1 to the end of epoch E (tracing excluded; each epoch's validation
included, the same for every loop); also over the process's CPU time in that
window, which other jobs on the machine disturb less. The loops run interleaved
(old, new, fit, old, new, fit, ...) for ``--rounds`` rounds, because other jobs
share the CPU; the recorded figures are medians over rounds.

- ``old``: the loops of commit 2afa2c6 (``linksim/training.py``'s ``train_jscc`` and
  ``linksim/tasks/classifier.py``'s ``train_classifier``), loaded from git history;
- ``new``: today's ``train_jscc`` and ``train_classifier`` (both through ``fit``);
- ``keras_fit``: a plain ``keras.Model.fit`` with a custom ``train_step`` /
  ``test_step`` (JSCC: fixed SNR; classifier: augmentation in the ``tf.data``
  pipeline), ``jit_compile=False``, no checkpoints: a reference for Keras's own
  overhead.

Usage::

    python benchmarks/training_loop.py [--rounds 3] [--epochs 3]

Writes ``benchmarks/results/training_loop.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's linksim, not an installed one

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from recording import machine_facts, write_results  # noqa: E402

OLD_COMMIT = "2afa2c6"
ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 9000
BATCH = 64
STEPS = 126  # 8,100 training images // 64: the classifier's epoch; the JSCC one is set to match
SNR_DB = 10.0


def _old_module(path: str, name: str):
    """A module from the source of ``path`` at :data:`OLD_COMMIT`."""
    src = subprocess.run(["git", "show", f"{OLD_COMMIT}:{path}"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    mod = types.ModuleType(name)
    mod.__file__ = f"{OLD_COMMIT}:{path}"
    sys.modules[name] = mod
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod


class _EpochTimes(keras.callbacks.Callback):
    def __init__(self, times):
        super().__init__()
        self.times = times

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(_now())


def _now():
    return time.perf_counter(), time.process_time()


def _rate(times: list, epochs: int) -> tuple[float, float]:
    """(training images per wall second, training images per CPU second of this process) over epochs 2..E."""
    n = (epochs - 1) * STEPS * BATCH
    return n / (times[-1][0] - times[0][0]), n / (times[-1][1] - times[0][1])


# ------------------------------------------------------------------ DeepJSCC
def _jscc_model():
    from linksim.schemes.deepjscc import DeepJSCC

    keras.utils.set_random_seed(0)
    return DeepJSCC((28, 28, 1), 486)


def jscc_hand(trainer, config_cls, x, epochs):
    times = []
    trainer(_jscc_model(), x, config_cls(epochs=epochs, batch_size=BATCH, seed=0, steps_per_epoch=STEPS,
                                         patience=100, snr_train_db=SNR_DB),
            progress=False, callbacks=[lambda e, logs: times.append(_now())])
    return _rate(times, epochs)


class _FitJSCC(keras.Model):
    """Model.fit wrapper of a JSCC model: per-batch SNR in the step."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def train_step(self, data):
        x = data
        with tf.GradientTape() as tape:
            x_hat = self.inner(x, tf.constant(SNR_DB), training=True)
            loss = tf.reduce_mean(tf.square(x - x_hat))
        variables = self.inner.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"loss": loss}

    def test_step(self, data):
        x_hat = self.inner(data, tf.constant(SNR_DB), training=False)
        return {"loss": tf.reduce_mean(tf.square(data - x_hat))}


def jscc_fit(x, epochs):
    n_val = N_IMAGES // 10
    x_tr, x_val = x[n_val:], x[:n_val]
    model = _FitJSCC(_jscc_model())
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    ds = tf.data.Dataset.from_tensor_slices(x_tr).shuffle(len(x_tr), seed=0).batch(BATCH, drop_remainder=True)
    times = []
    model.fit(ds.repeat(), epochs=epochs, steps_per_epoch=STEPS, validation_data=tf.data.Dataset.from_tensor_slices(
        x_val).batch(256), verbose=0, callbacks=[_EpochTimes(times)])
    return _rate(times, epochs)


# ---------------------------------------------------------------- classifier
def _classifier():
    from linksim.tasks import ImageClassifier

    keras.utils.set_random_seed(0)
    return ImageClassifier((28, 28, 1), 10)


def classifier_hand(trainer, x, y, epochs):
    times = []
    trainer(_classifier(), x, y, epochs=epochs, batch_size=BATCH, seed=0, patience=100, progress=False,
            callbacks=[lambda e, logs: times.append(_now())])
    return _rate(times, epochs)


def classifier_fit(x, y, epochs):
    from linksim.tasks.classifier import MAX_SHIFT_PX, _augment

    n_val = N_IMAGES // 10
    model = _classifier()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def augment(xb, yb):
        xb = tf.cast(xb, tf.float32) / 255.0
        n = tf.shape(xb)[0]
        flip = tf.random.uniform([n]) < 0.5
        dy = tf.random.uniform([n], -MAX_SHIFT_PX, MAX_SHIFT_PX + 1, tf.int32)
        dx = tf.random.uniform([n], -MAX_SHIFT_PX, MAX_SHIFT_PX + 1, tf.int32)
        return _augment(xb, flip, dy, dx, MAX_SHIFT_PX), yb

    ds = (tf.data.Dataset.from_tensor_slices((x[n_val:], y[n_val:])).shuffle(N_IMAGES, seed=0)
          .batch(BATCH, drop_remainder=True).map(augment).repeat())
    val = tf.data.Dataset.from_tensor_slices((x[:n_val].astype(np.float32) / 255.0, y[:n_val])).batch(500)
    times = []
    model.fit(ds, epochs=epochs, steps_per_epoch=STEPS, validation_data=val, verbose=0,
              callbacks=[_EpochTimes(times)])
    return _rate(times, epochs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--loops", default="old,new,keras_fit", help="comma-separated subset of old,new,keras_fit")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "training_loop.json"))
    args = parser.parse_args(argv)

    from linksim.data import get_dataset
    from linksim.data.base import to_float
    from linksim.tasks.classifier import train_classifier
    from linksim.training import TrainConfig, train_jscc

    old_training = _old_module("linksim/training.py", "_old_linksim_training")
    old_classifier = _old_module("linksim/tasks/classifier.py", "_old_linksim_classifier")
    x_u8, y = get_dataset("embedded").load("train", N_IMAGES, seed=0)
    x = to_float(x_u8)

    loops = {
        "deepjscc": {"old": lambda: jscc_hand(old_training.train_jscc, old_training.TrainConfig, x, args.epochs),
                     "new": lambda: jscc_hand(train_jscc, TrainConfig, x, args.epochs),
                     "keras_fit": lambda: jscc_fit(x, args.epochs)},
        "classifier": {"old": lambda: classifier_hand(old_classifier.train_classifier, x_u8, y, args.epochs),
                       "new": lambda: classifier_hand(train_classifier, x_u8, y, args.epochs),
                       "keras_fit": lambda: classifier_fit(x_u8, y, args.epochs)},
    }
    chosen = args.loops.split(",")
    loops = {net: {k: v for k, v in variants.items() if k in chosen} for net, variants in loops.items()}
    samples = {net: {loop: [] for loop in variants} for net, variants in loops.items()}
    cpu_samples = {net: {loop: [] for loop in variants} for net, variants in loops.items()}
    for r in range(args.rounds):
        for net, variants in loops.items():
            for loop, run in variants.items():
                rate, cpu_rate = run()
                samples[net][loop].append(rate)
                cpu_samples[net][loop].append(cpu_rate)
                print(f"round {r + 1}/{args.rounds} {net:10s} {loop:9s} {rate:7.0f} training images/s "
                      f"({cpu_rate:5.0f} per CPU second)", flush=True)

    results = {"benchmark": "training_loop", **machine_facts(), "tensorflow": tf.__version__,
               "keras": keras.__version__, "old_loop_commit": OLD_COMMIT, "images": N_IMAGES, "batch_size": BATCH,
               "steps_per_epoch": STEPS, "epochs": args.epochs, "rounds": args.rounds,
               "unit": "training images/s (median over rounds; epochs 2..E incl. validation); also per CPU "
                       "second of the process (less sensitive to other jobs on the machine)", "networks": {}}
    for net, by_loop in samples.items():
        med = {loop: float(np.median(v)) for loop, v in by_loop.items()}
        ratios = {f"{k}_over_old": med[k] / med["old"] for k in med if k != "old" and "old" in med}
        cpu_med = {loop: float(np.median(v)) for loop, v in cpu_samples[net].items()}
        results["networks"][net] = {"median": med, "samples": by_loop, **ratios,
                                    "median_per_cpu_second": cpu_med, "samples_per_cpu_second": cpu_samples[net]}
        print(f"{net}: median " + ", ".join(f"{k} {v:.0f}" for k, v in med.items())
              + "".join(f"; {k} {v:.3f}" for k, v in ratios.items()))
    write_results(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
