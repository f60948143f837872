"""DeepJSCC speed against the PyTorch reference, kaira 0.2.1, measured side by side in one sitting.

Target (issue 14): linksim's classic DeepJSCC trains and evaluates at least as fast
as kaira's in PyTorch eager mode (images per second >= 1.0x kaira's) and its
batch-1 latency is no worse.

The network, on both sides: Bourtsoulatze et al.'s DeepJSCC for 32x32x3 images at
k/n = 1/6 (k = 512 complex channel uses: a 16 x 8 x 8 real latent), five 5x5
convolutions with PReLU (strides 2, 2, 1, 1, 1) and the mirrored transposed
convolutions ending in a sigmoid, power normalisation, AWGN at 10 dB (156k
parameters). kaira's is ``DeepJSCCModel(Bourtsoulatze2019DeepJSCCEncoder(16),
AveragePowerConstraint(1.0), AWGNChannel(snr_db=10), Bourtsoulatze2019DeepJSCCDecoder(16))``
(see ``_kaira_side.py`` for how it is loaded without kaira's package ``__init__``
files, which import torchvision, compressai and torchaudio); linksim's is the
``deepjscc`` scheme's model. (Two small differences of the networks: kaira's PReLUs
have one slope each and its last encoder convolution has a PReLU; linksim's PReLUs
have one slope per channel and its last encoder convolution is linear.)

What is timed, each in a fresh process, both frameworks with 2 intra-op threads:

- ``train``: images/s of training: epochs of 50 steps at batch 64 (Adam at 1e-3,
  MSE, AWGN at 10 dB inside the step) followed by a validation pass over 360
  images (batch 256); 4 epochs, the first (tracing, warm-up) left out. linksim
  trains through :func:`linksim.training.train_jscc` (what the scheme's training
  stage calls: ``keras.Model.fit`` over its step), on 3,600 random images
  (``val_fraction`` 0.1: 3,240 train, 50 batches, 360 validation); kaira through a
  plain PyTorch loop (``zero_grad``, forward, ``MSELoss``, ``backward``, ``Adam.step``)
  over the same counts.
- ``eval``: images/s of transmission (encoder, power normalisation, AWGN,
  decoder) over 2,000 images from NumPy batches to NumPy received images, at batch
  64 and at batch 250 (a run's default ``evaluation.batch_size``); the median of 5
  passes after one warm-up pass. linksim goes through the scheme as a run uses it:
  ``scheme.encode(batch)`` then ``scheme.evaluate(state, 10.0)`` per batch (one SNR
  point); kaira through ``model(torch.from_numpy(batch)).numpy()`` under
  ``torch.inference_mode()``. For linksim also ``sweep``: one ``encode`` and 5 SNR
  points' ``evaluate`` per batch (images x points per second), as a sweep runs it.
- ``latency``: the median seconds of one image (batch 1), NumPy in and out, over
  300 calls after 20 warm-up calls; the same code paths as ``eval``.

Each round runs the six (framework, measure) processes in an order rotated by
one every round (``--rounds``, default 6); the recorded figures are the medians
over rounds and the ratios of the medians (linksim / kaira; for latency kaira /
linksim, so above 1 is better for linksim everywhere), with every round's values
kept. The machine must be otherwise idle for the recorded figures: every process
records the 1-minute load average before and after it, and rounds with a load
above about 1 are not a fair comparison (PyTorch's OpenMP threads spin and lose
far more than TensorFlow's thread pool when other jobs share the cores: on the
busy machine kaira's training fell to 120 images/s in one round).

What linksim does to be fast here (``linksim/schemes/jscc.py``,
``deepjscc_layers.py``): a transmission's first SNR point runs encoder, channel and
decoder in one compiled call and keeps the symbols for the next points; compiled
calls go through their concrete functions (no ``tf.function`` dispatch per call);
batches of at most ``JSCCScheme.SMALL_BATCH`` (8) images run the encoder and the
decoder as XLA clusters inside the graph (the channel, so the noise, stays in graph
mode); PReLU is four graph operations instead of Keras's six. Training goes
through ``keras.Model.fit`` with 8 steps per execution, without XLA (slower for
these convolutions on CPU).

The PyTorch side runs with the Python of a separate virtual environment outside
linksim's dependencies (``--torch-python``, default ``/work/kaira_venv/bin/python``)::

    python3.11 -m venv /work/kaira_venv
    /work/kaira_venv/bin/pip install torch numpy
    /work/kaira_venv/bin/pip install --no-deps pykaira==0.2.1

Usage::

    python benchmarks/deepjscc_vs_kaira.py [--rounds 6] [--torch-python PATH]

Writes ``benchmarks/results/deepjscc_vs_kaira.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
SHAPE, K, SNR_DB, BATCH, THREADS = (32, 32, 3), 512, 10.0, 64, 2
MEASURES = ("train", "eval", "latency")
EVAL_BATCHES = (64, 250)


# ---------------------------------------------------------------- the linksim side (a worker process)
def _linksim_setup(threads: int):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))  # this checkout's linksim, not an installed one
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    return tf


def _scheme(model):
    """A ``deepjscc`` scheme bound to ``model`` over one AWGN hop, as a run binds it after loading the model."""
    import numpy as np

    from linksim.channels.awgn import AWGNChannel
    from linksim.schemes.base import SchemeContext
    from linksim.schemes.deepjscc import DeepJSCCScheme

    scheme = DeepJSCCScheme()
    context = SchemeContext(image_shape=SHAPE, channel_uses=K, train_images=np.zeros((4, *SHAPE), np.float32),
                            channel=AWGNChannel(), seed=0, dataset_spec={}, store=None, progress=False,
                            train_missing=False)
    scheme.context = context
    scheme._bind(context, model, None)
    return scheme


def linksim_measure(what: str, args) -> dict:
    from recording import median_seconds

    tf = _linksim_setup(args.threads)
    import keras
    import numpy as np

    from linksim.schemes.deepjscc import DeepJSCCArchitecture
    from linksim.training import TrainConfig, train_jscc

    keras.utils.set_random_seed(0)
    model = DeepJSCCArchitecture().build(SHAPE, K)
    res = {"framework": "linksim", "tensorflow": tf.__version__, "threads": args.threads,
           "params": int(model.count_params())}
    rng = np.random.default_rng(0)
    if what == "train":
        n_train = args.train_batches * BATCH
        x = rng.random((n_train + args.val_images, *SHAPE), dtype=np.float32)
        config = TrainConfig(epochs=args.epochs, batch_size=BATCH, learning_rate=1e-3, patience=1000,
                             lr_patience=1000, val_fraction=args.val_images / len(x), snr_train_db=SNR_DB, seed=0)
        history = train_jscc(model, x, config, progress=False)
        assert history["n_train"] == n_train and history["n_val"] == args.val_images, history
        timed = history["epoch_seconds"][1:]
        res.update(train_images_per_s=n_train * len(timed) / sum(timed), epoch_seconds=history["epoch_seconds"],
                   val_loss=history["val_loss"])
        return res
    scheme = _scheme(model)
    if what == "eval":
        rates, sweep = {}, {}
        snrs = [0.0, 5.0, 10.0, 15.0, 20.0]
        for batch in EVAL_BATCHES:
            xs = [rng.random((batch, *SHAPE), dtype=np.float32) for _ in range(max(1, args.eval_images // batch))]

            def one_pass():
                for x in xs:
                    scheme.evaluate(scheme.encode(x), SNR_DB).images

            def sweep_pass():
                for x in xs:
                    state = scheme.encode(x)
                    for s in snrs:
                        scheme.evaluate(state, s).images

            rates[str(batch)] = batch * len(xs) / median_seconds(one_pass, args.repeats)
            sweep[str(batch)] = batch * len(xs) * len(snrs) / median_seconds(sweep_pass, max(1, args.repeats // 2))
        res.update(eval_images_per_s=rates, sweep_image_points_per_s=sweep, sweep_snr_points=len(snrs))
        return res
    x = rng.random((1, *SHAPE), dtype=np.float32)
    times = []
    for i in range(args.latency_calls + 20):
        t = time.perf_counter()
        scheme.evaluate(scheme.encode(x), SNR_DB).images
        if i >= 20:
            times.append(time.perf_counter() - t)
    res.update(latency_s=float(np.median(times)))
    return res


# ---------------------------------------------------------------- the orchestrator
def _run(cmd) -> dict:
    load = os.getloadavg()[0]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    # the 1-minute load average before and after: above ~1 other jobs shared the CPU (PyTorch's OpenMP threads
    # suffer far more from that than TensorFlow's thread pool: such rounds are not a fair comparison)
    res.update(process_seconds=round(time.perf_counter() - t, 2), load_before=load, load_after=os.getloadavg()[0])
    return res


def _common_args(args) -> list[str]:
    return ["--threads", str(args.threads), "--train-batches", str(args.train_batches), "--val-images",
            str(args.val_images), "--epochs", str(args.epochs), "--eval-images", str(args.eval_images),
            "--repeats", str(args.repeats), "--latency-calls", str(args.latency_calls)]


def _value(res: dict, what: str) -> dict:
    if what == "train":
        return {"train": res["train_images_per_s"]}
    if what == "eval":
        return {f"eval_b{b}": v for b, v in res["eval_images_per_s"].items()}
    return {"latency_ms": 1e3 * res["latency_s"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--torch-python", default="/work/kaira_venv/bin/python")
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--train-batches", type=int, default=50)
    ap.add_argument("--val-images", type=int, default=360)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--eval-images", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--latency-calls", type=int, default=300)
    ap.add_argument("--worker", choices=MEASURES, help=argparse.SUPPRESS)  # one linksim measurement (internal)
    ap.add_argument("--out", default=str(HERE / "results" / "deepjscc_vs_kaira.json"))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.worker:
        print(json.dumps(linksim_measure(args.worker, args)), flush=True)
        return 0

    from recording import machine_facts, write_results

    jobs = [(fw, what) for what in MEASURES for fw in ("linksim", "kaira")]
    rounds = []
    for r in range(args.rounds):
        order = jobs[r % len(jobs):] + jobs[:r % len(jobs)]
        done = {}
        for fw, what in order:
            if fw == "linksim":
                cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", what]
            else:
                cmd = [args.torch_python, str(HERE / "_kaira_side.py"), "--what", what,
                       "--eval-batches", *map(str, EVAL_BATCHES)]
            res = _run(cmd + _common_args(args))
            done.setdefault(fw, {}).update(_value(res, what))
            done.setdefault(f"{fw}_raw", {})[what] = res
            print(f"round {r + 1} {fw} {what}: {json.dumps(_value(res, what))} (load {res['load_before']:.2f})",
                  flush=True)
        rounds.append(done)

    import numpy as np

    keys = list(rounds[0]["linksim"])
    med = {fw: {k: float(np.median([rd[fw][k] for rd in rounds])) for k in keys} for fw in ("linksim", "kaira")}
    ratios = {k: (med["kaira"][k] / med["linksim"][k] if k == "latency_ms" else med["linksim"][k] / med["kaira"][k])
              for k in keys}
    per_round = {k: [round(rd["kaira"][k] / rd["linksim"][k] if k == "latency_ms" else
                           rd["linksim"][k] / rd["kaira"][k], 3) for rd in rounds] for k in keys}
    raw0 = rounds[0]
    results = {**machine_facts(), "tensorflow": raw0["linksim_raw"]["train"]["tensorflow"],
               "torch": raw0["kaira_raw"]["train"]["torch"], "kaira": "0.2.1", "threads": args.threads,
               "image_shape": list(SHAPE), "channel_uses": K, "snr_db": SNR_DB, "train_batch": BATCH,
               "eval_batches": list(EVAL_BATCHES), "rounds": args.rounds,
               "params": {"linksim": raw0["linksim_raw"]["train"]["params"],
                          "kaira": raw0["kaira_raw"]["train"]["params"]},
               "median": med, "ratio_linksim_over_kaira": ratios, "ratio_per_round": per_round,
               "note": "ratios > 1 favour linksim (latency: kaira's over linksim's)",
               "linksim_sweep_image_points_per_s": [rd["linksim_raw"]["eval"]["sweep_image_points_per_s"]
                                                    for rd in rounds],
               "per_round": rounds}
    write_results(args.out, results)
    print(json.dumps({"median": med, "ratio_linksim_over_kaira": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
