"""Throughput of the LPIPS metric on CPU: image pairs per second, as a scenario's evaluation calls it.

For 28x28 grey and 32x32 RGB pairs in batches of BATCH (the evaluation batch), through
``linksim.lpips.lpips_distance`` (one ``tf.function`` per image shape; both images of a
pair go through the backbone in one pass): the default upsampling to 64 px, and for
context the native size (32 px RGB only: at 28 px AlexNet's deep layers are empty), 128
and 224 px.  VGG16 too when ``--vgg16 FILE`` names a converted ``vgg16.npz``.  Median
of REPEATS timed calls after one warm-up call (which traces the function).

Usage::

    python benchmarks/lpips_speed.py [--vgg16 ~/.cache/linksim/models/lpips/vgg16.npz]

Writes ``benchmarks/results/lpips_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recording import machine_facts, write_results  # noqa: E402

BATCH = 100
REPEATS = 5


def pairs_per_second(fn, x, y) -> float:
    fn(x, y)  # trace
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn(x, y)
        times.append(time.perf_counter() - t)
    return len(x) / statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--vgg16", type=Path, default=None)
    args = ap.parse_args(argv)
    import tensorflow as tf

    from linksim.lpips import LPIPS, lpips_distance

    rng = np.random.default_rng(0)
    shapes = {"grey28": (28, 28, 1), "rgb32": (32, 32, 3)}
    res = {"machine": machine_facts(), "load_average_1min_at_start": os.getloadavg()[0], "tensorflow": tf.__version__,
           "batch": BATCH, "repeats": REPEATS,
           "unit": "image pairs per second", "alexnet": {}, "vgg16": {}}
    for name, shape in shapes.items():
        x = rng.random((BATCH, *shape), dtype=np.float32)
        y = np.clip(x + 0.1 * rng.standard_normal(x.shape, dtype=np.float32), 0, 1)
        for up in ([None] if name == "rgb32" else []) + [64, 128, 224]:
            key = f"{name}_upsample_{up or 'none'}"
            v = pairs_per_second(lambda a, b: lpips_distance(a, b, upsample_to=up), x, y)
            res["alexnet"][key] = round(v, 1)
            print("alexnet", key, round(v, 1), flush=True)
        if args.vgg16 is not None:
            for up in (64,):
                layer = LPIPS("vgg16", upsample_to=up, weights_path=str(args.vgg16))
                fn = tf.function(layer.call)
                v = pairs_per_second(lambda a, b: fn(tf.constant(a), tf.constant(b)).numpy(), x, y)
                res["vgg16"][f"{name}_upsample_{up}"] = round(v, 1)
                print("vgg16", name, up, round(v, 1), flush=True)
    write_results(REPO / "benchmarks/results/lpips_speed.json", res)


if __name__ == "__main__":
    main()
