"""DeepJSCC speed: training and evaluation images per second, graph mode with and without XLA.

Two settings:

- ``embedded``: linksim's default (28x28 grey Fashion-MNIST, k = 486 channel uses,
  filters 16/32/32/32), what the shipped scenarios train and evaluate;
- ``cifar``: the DeepJSCC paper's (32x32 RGB, k/n = 1/6, i.e. k = 512).

For each, a training step (encoder, Sionna AWGN, decoder, MSE, Adam) at batch 64
and an evaluation pass (encoder, AWGN, decoder) at batch 500 are timed under
``tf.function`` and ``tf.function(jit_compile=True)``; images per second is the
batch size over the median step time of ``--repeats`` steps after two warm-up
calls. The faster mode is the scheme's default (``jit_compile`` of ``deepjscc``).

Usage::

    python benchmarks/deepjscc_speed.py [--repeats 30]

Writes ``benchmarks/results/deepjscc_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from linksim.schemes.deepjscc import DeepJSCC  # noqa: E402
from recording import machine_facts, median_seconds, write_results  # noqa: E402

SETTINGS = {"embedded": ((28, 28, 1), 486), "cifar": ((32, 32, 3), 512)}


def measure(shape, k, jit: bool, repeats: int, train_batch=64, eval_batch=500) -> dict:
    keras.utils.set_random_seed(0)
    model = DeepJSCC(shape, k)
    opt = keras.optimizers.Adam(1e-3)
    variables = model.trainable_variables
    opt.build(variables)
    snr = tf.constant(10.0)

    @tf.function(jit_compile=jit)
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(x - model(x, snr, training=True)))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function(jit_compile=jit)
    def eval_step(x):
        return model.decoder(model.channel(model.encoder(x), snr), snr)

    rng = np.random.default_rng(0)
    xt = tf.constant(rng.random((train_batch, *shape), np.float32))
    xe = tf.constant(rng.random((eval_batch, *shape), np.float32))
    t_train = median_seconds(lambda: train_step(xt).numpy(), repeats, warmup=2)
    t_eval = median_seconds(lambda: eval_step(xe).numpy(), max(5, repeats // 3), warmup=2)
    return {"train_images_per_s": train_batch / t_train, "eval_images_per_s": eval_batch / t_eval,
            "train_batch": train_batch, "eval_batch": eval_batch, "params": int(model.count_params())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "deepjscc_speed.json"))
    args = ap.parse_args(argv)
    results = {**machine_facts(), "tensorflow": tf.__version__, "settings": {}}
    for name, (shape, k) in SETTINGS.items():
        r = {}
        for jit in (False, True):
            r["xla" if jit else "graph"] = measure(shape, k, jit, args.repeats)
            print(name, "xla" if jit else "graph", json.dumps(r["xla" if jit else "graph"]), flush=True)
        r["faster_train"] = max(("graph", "xla"), key=lambda m: r[m]["train_images_per_s"])
        r["faster_eval"] = max(("graph", "xla"), key=lambda m: r[m]["eval_images_per_s"])
        r.update(image_shape=list(shape), channel_uses=k, bandwidth_ratio=k / float(np.prod(shape)))
        results["settings"][name] = r
    write_results(args.out, results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
