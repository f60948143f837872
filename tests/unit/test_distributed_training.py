"""Data-parallel training (``tf.distribute.MirroredStrategy``) over two logical CPU devices.

Logical devices must be configured before TensorFlow initialises, so the training
runs in a fresh Python process (:data:`SCRIPT`), which prints its findings as JSON.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import contextlib, dataclasses, json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import sionna.phy

from linksim.schemes.deepjscc import DeepJSCC
from linksim.training import TrainConfig, train_jscc, training_strategy

rng = np.random.default_rng(0)
# dark images (an untrained decoder outputs about 0.5): a brightness per image plus a ramp of random slope
ramp = np.linspace(-0.5, 0.5, 16, dtype=np.float32)[None, None, :, None]
x = np.clip(rng.uniform(0.05, 0.35, (704, 1, 1, 1)).astype(np.float32)
            + rng.uniform(-0.1, 0.1, (704, 1, 1, 1)).astype(np.float32) * ramp, 0, 1)
x = x * np.ones((1, 16, 16, 1), np.float32)
x_check = x[:64]
# 80 dB: the channel noise is negligible, so one and two devices take (nearly) the same steps
config = TrainConfig(epochs=1, batch_size=32, learning_rate=1e-2, patience=5, lr_patience=5, val_fraction=0.1,
                     snr_train_db=80.0, seed=0)


def mse(model):
    return float(tf.reduce_mean(tf.square(model(tf.constant(x_check), tf.constant(80.0)) - x_check)))


def run(strategy):
    keras.utils.set_random_seed(0)
    sionna.phy.config.seed = 0
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = DeepJSCC((16, 16, 1), 16, filters=(4, 4, 4, 4), kernel_size=3)
    start = [w.copy() for w in model.get_weights()]
    before = mse(model)
    history = train_jscc(model, x, config, progress=False)
    kinds = sorted({type(v.value if hasattr(v, "value") else v).__name__ for v in model.trainable_variables})
    return {"loss": history["loss"], "val_loss": history["val_loss"], "train_steps": history["train_steps"],
            "n_train": history["n_train"], "mse_before": before, "mse_after": mse(model), "variable_types": kinds,
            "moved": max(float(np.abs(w - w0).max()) for w, w0 in zip(model.get_weights(), start)),
            "weights": [w.ravel().tolist() for w in model.get_weights()]}


strategy = training_strategy(["/cpu:0", "/cpu:1"])
one, two = run(None), run(strategy)
out = {"replicas": strategy.num_replicas_in_sync, "one": one, "two": two, "auto_is_none": training_strategy() is None,
       "weight_diff": max(float(np.abs(np.array(a) - np.array(b)).max())
                          for a, b in zip(one["weights"], two["weights"]))}
for r in (one, two):
    del r["weights"]

# the scheme's own path: LINKSIM_TRAIN_DEVICES picks the devices, the scheme builds its model in the strategy's
# scope, trains it over both, stores it, reloads it and transmits with it
import tempfile
from linksim.channels import AWGNChannel
from linksim.schemes.base import SchemeContext
from linksim.schemes.deepjscc import DeepJSCCScheme
from linksim.store import ModelStore

os.environ["LINKSIM_TRAIN_DEVICES"] = "/cpu:0,/cpu:1"
with tempfile.TemporaryDirectory() as tmp:
    ctx = SchemeContext(image_shape=(16, 16, 1), channel_uses=16, train_images=x, channel=AWGNChannel(), seed=3,
                        dataset_spec={"name": "dark_ramps", "params": {}, "train_size": len(x)},
                        store=ModelStore([tmp]), progress=False, train_missing=True)
    scheme = DeepJSCCScheme(filters=[4, 4, 4, 4], kernel_size=3, epochs=1, steps_per_epoch=4, batch_size=32)
    scheme.prepare(ctx)
    trained = type(scheme.model.trainable_variables[0].value).__name__
    res = scheme.evaluate(scheme.encode(x[:8]), 20.0)
    again = DeepJSCCScheme(filters=[4, 4, 4, 4], kernel_size=3, epochs=1, steps_per_epoch=4, batch_size=32)
    again.prepare(dataclasses.replace(ctx, train_missing=False))   # loads the stored model (raises if missing)
    out["scheme"] = {"variable_type": trained, "images_shape": list(res.images.shape),
                     "finite": bool(np.isfinite(res.images).all()),
                     "same_weights": all(np.array_equal(a, b) for a, b in zip(scheme.model.get_weights(),
                                                                               again.model.get_weights()))}
print("RESULT " + json.dumps(out))
'''


def _train_over_two_cpus() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("LINKSIM_TRAIN_DEVICES", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_mirrored_training_over_two_logical_cpus_matches_one_device():
    r = _train_over_two_cpus()
    one, two = r["one"], r["two"]
    # the strategy spans the two devices and the model's variables are mirrored over them
    assert r["replicas"] == 2
    assert two["variable_types"] == ["MirroredVariable"] and one["variable_types"] == ["ResourceVariable"]
    # no GPU here: by default (LINKSIM_TRAIN_DEVICES unset) training stays on one device
    assert r["auto_is_none"]
    # it trained: finite losses, the same optimiser steps (the configured batch is the global batch), and a
    # lower error than the untrained model's
    assert all(math.isfinite(v) for v in one["loss"] + two["loss"] + two["val_loss"])
    assert two["train_steps"] == one["train_steps"] == one["n_train"] // 32
    assert two["mse_after"] < 0.9 * two["mse_before"]
    # and it is the training of one device: at 80 dB (negligible noise) the losses agree to float rounding
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(two["mse_after"], one["mse_after"], rtol=1e-3)
    assert r["weight_diff"] < 0.25 * one["moved"]
    # a scheme trains over the devices LINKSIM_TRAIN_DEVICES names, and its stored model reloads and transmits
    assert r["scheme"] == {"variable_type": "MirroredVariable", "images_shape": [8, 16, 16, 1], "finite": True,
                           "same_weights": True}
