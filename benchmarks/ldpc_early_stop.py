"""Throughput of early-stopping BP decoding against Sionna's fixed 20 iterations, in one run.

Both decoders take the same channel LLRs: 802.11n LDPC (1944, 1458) codewords, 16-QAM,
AWGN at Es/N0 below (8, 9 dB), in (10, 11 dB) and above (12, 15 dB) the waterfall, APP
demapping.  "plain" is Sionna's ``LDPCBPDecoder`` (boxplus-phi, 20 iterations, hard
decisions) under ``tf.function(jit_compile=True)``, the decoder of ``early_stop: false``;
"early" is linksim's :class:`~linksim.phy.bp_early_stop.EarlyStopBPDecoder` with the
802.11n codes' options (the decoder of ``early_stop: true``, the default): hopeless words
(too little information in their LLRs) in one plain call, the others in XLA-compiled
chunks of iterations with a parity check after each, converged words leaving the batch.
The batch is the main job's (``scenarios/multihop_df.yaml``: one codeword per image, 486
channel uses): 500 images, 500 codewords.  Timed per call, decoding only (LLRs in, hard
decisions on the host out), after a warm-up call that compiles every shape; the decoders
alternate, their order rotating from repeat to repeat; the median is reported, with the
mean number of iterations, the decoder calls, the BLER of each and the number of words
whose decisions differ from plain decoding's (expected 0).

Targets (issue 14) and what bounds them.  With BLER p at a point, a fraction p of the
words fails and so runs all 20 iterations whatever the stopping rule: early stopping
costs at least ``p * 20`` iterations per word against plain decoding's 20, so its speedup
is at most ``1 / p`` (``bound_speedup`` per point: ``20 / (p * 20 + (1 - p) * 1)``, one
iteration for every converging word).  3x is only possible where BLER < 1/3.  So each
point's ``meets_target``:

- BLER <= 0.1 (at and above the waterfall): early >= 3x plain;
- BLER > 0.9 (below it): early >= 1.0x plain within the run's noise, i.e. speedup
  >= 1 - ``noise``, where ``noise`` is the relative interquartile range of the plain
  decoder's repeated timings at that point (the spread of one decoder timed against
  itself; at least 0.01);
- in between (the waterfall's middle): no target (``null``), the bound is reported.

Usage::

    python benchmarks/ldpc_early_stop.py [--batch 500] [--repeats 7] [--snr-db 8,9,10,11,12,15]
                                         [--stop-check-every 2] [--hopeless-threshold 0.55]
                                         [--block-size 64] [--threads N] [--quick] [--out FILE]

``--stop-check-every 1,2,3``, ``--hopeless-threshold 0.55,none`` and ``--block-size 64,128``
measure several chunk lengths / thresholds / block sizes side by side (``none``: no
hopeless-word fast path).  ``--quick``
(batch 128, 3 repeats) is the sanity run.  The default sizes finish in about 3 minutes
on a quiet 2-core machine, compilation included.

Writes ``benchmarks/results/ldpc_early_stop.json`` (or ``--out``) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# --threads must reach TensorFlow before its runtime starts (importing linksim starts it)
_threads = argparse.ArgumentParser(add_help=False)
_threads.add_argument("--threads", type=int, default=0)
THREADS = _threads.parse_known_args()[0].threads
if THREADS:
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(THREADS)

import numpy as np  # noqa: E402
import sionna  # noqa: E402
import tensorflow as tf  # noqa: E402
from sionna.phy.channel import AWGN  # noqa: E402
from sionna.phy.fec.ldpc import LDPCBPDecoder  # noqa: E402
from sionna.phy.mapping import Demapper, Mapper  # noqa: E402

from linksim.phy.bp_early_stop import DEFAULT_STOP_CHECK_EVERY, EarlyStopBPDecoder, default_block_size  # noqa: E402
from linksim.phy.codes import HOPELESS_THRESHOLD_80211N, LDPC80211n  # noqa: E402
from recording import machine_facts, write_results  # noqa: E402

NUM_ITER = 20


def channel_llrs(code, batch, snr_db, seed, bits: int = 4):
    """LLRs of ``batch`` random codewords over QAM with ``bits`` bits per symbol (default 16-QAM) + AWGN at
    Es/N0 ``snr_db`` (APP demapping), and the codewords."""
    sionna.phy.config.seed = seed
    u = tf.constant(np.random.default_rng(seed).integers(0, 2, (batch, code.k)), tf.float32)
    c = code.encode(u)
    no = 10.0 ** (-snr_db / 10.0)
    return Demapper("app", "qam", bits)(AWGN()(Mapper("qam", bits)(c), no), no), c.numpy()


def bound_speedup(bler: float) -> float:
    """The most any stopping rule can gain at BLER ``bler``: failing words run every iteration, the rest one."""
    return NUM_ITER / (bler * NUM_ITER + (1.0 - bler))


def point_target(bler: float, speedup: float, noise: float):
    """(target text, met) for one point: 3x where BLER <= 0.1, >= 1.0x within ``noise`` where BLER > 0.9."""
    if bler <= 0.1:
        return ">= 3x", bool(speedup >= 3.0)
    if bler > 0.9:
        return f">= 1.0x within noise ({noise:.3f})", bool(speedup >= 1.0 - noise)
    return None, None


def _threshold(text):
    return None if text.strip().lower() == "none" else float(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=500, help="codewords per call (500 images of the main job)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--snr-db", default="8,9,10,11,12,15", help="Es/N0 points in dB, comma-separated")
    ap.add_argument("--stop-check-every", default=str(DEFAULT_STOP_CHECK_EVERY),
                    help="chunk lengths to compare, comma-separated")
    ap.add_argument("--hopeless-threshold", default=str(HOPELESS_THRESHOLD_80211N),
                    help="hopeless-word thresholds to compare, comma-separated; none: no fast path")
    ap.add_argument("--block-size", default=str(default_block_size()),
                    help="words per compiled call to compare, comma-separated")
    ap.add_argument("--threads", type=int, default=0,
                    help="TensorFlow's intra- and inter-op threads (default 0: TensorFlow's choice, all cores; "
                         "1: what each worker process of a run uses)")
    ap.add_argument("--quick", action="store_true", help="sanity run: batch 128, 3 repeats")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ldpc_early_stop.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.repeats = 128, 3
    snrs = [float(s) for s in args.snr_db.split(",")]
    chunks = [int(s) for s in args.stop_check_every.split(",")]
    thresholds = [_threshold(s) for s in args.hopeless_threshold.split(",")]
    blocks = [int(s) for s in args.block_size.split(",")]
    if args.threads != THREADS:
        raise SystemExit("--threads: give it on the command line (TensorFlow's threads are set at start-up)")

    code = LDPC80211n(early_stop=False)
    plain_dec = LDPCBPDecoder(code.pcm, num_iter=NUM_ITER, hard_out=True)
    plain_fn = tf.function(lambda llr: plain_dec(llr), jit_compile=True)
    decoders = {"plain": lambda llr: (plain_fn(llr).numpy(), float(NUM_ITER), 1)}
    for s in chunks:
        for h in thresholds:
            for b in blocks:
                dec = EarlyStopBPDecoder(code.pcm, num_iter=NUM_ITER, stop_check_every=s, hopeless_threshold=h,
                                         block_size=b)
                name = (f"early_s{s}" + ("" if h == HOPELESS_THRESHOLD_80211N else f"_h{h}")
                        + ("" if b == default_block_size() else f"_b{b}"))
                decoders[name] = lambda llr, dec=dec: (dec(llr)["c_hat"].numpy(), dec.last_mean_iterations,
                                                       dec.last_decoder_calls)
    best = next(name for name in decoders if name != "plain")
    if f"early_s{DEFAULT_STOP_CHECK_EVERY}" in decoders:
        best = f"early_s{DEFAULT_STOP_CHECK_EVERY}"

    t_start = time.perf_counter()
    points = []
    for snr in snrs:
        llr, c = channel_llrs(code, args.batch, snr, seed=int(100 * snr))
        names = list(decoders)
        decided, iters, calls = {}, {}, {}
        for name in names:                    # warm-up: compiles every bucket this point needs
            decided[name], iters[name], calls[name] = decoders[name](llr)
        times = {name: [] for name in names}
        for r in range(args.repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                t = time.perf_counter()
                decoders[name](llr)
                times[name].append(time.perf_counter() - t)
        plain_t = float(np.median(times["plain"]))
        q25, q75 = np.percentile(times["plain"], [25, 75])
        noise = max(float((q75 - q25) / plain_t), 0.01)
        bler = float(np.mean(np.any(decided["plain"] != c, axis=-1)))
        point = {"snr_db": snr, "bler_plain": bler, "bound_speedup": bound_speedup(bler), "noise": noise}
        for name in names:
            t = float(np.median(times[name]))
            point[name] = {
                "median_s": t, "info_mbit_s": args.batch * code.k / t / 1e6,
                "speedup_vs_plain": plain_t / t, "mean_iterations": iters[name], "decoder_calls": calls[name],
                "bler": float(np.mean(np.any(decided[name] != c, axis=-1))),
                "words_differing_from_plain": int(np.sum(np.any(decided[name] != decided["plain"], axis=-1))),
            }
        point["target"], point["meets_target"] = point_target(bler, point[best]["speedup_vs_plain"], noise)
        points.append(point)
        print(json.dumps(point), flush=True)

    judged = [p["meets_target"] for p in points if p["meets_target"] is not None]
    results = {
        "code": "802.11n LDPC (1944, 1458), boxplus-phi, at most 20 BP iterations", "modulation": "16-QAM",
        "channel": "AWGN", "batch_codewords": args.batch, "repeats": args.repeats, "statistic": "median",
        "compared": best, "points": points,
        "target": ">= 3x plain where BLER <= 0.1; >= 1.0x plain within the run's noise where BLER > 0.9; "
                  "none in between (speedup <= bound_speedup ~ 1 / BLER there)",
        "meets_target": bool(judged and all(judged)),
        "wall_s": time.perf_counter() - t_start, "quick": bool(args.quick), "threads": args.threads or None,
        "tensorflow": tf.__version__, "sionna": sionna.__version__, **machine_facts(),
    }
    write_results(args.out, results)
    print(json.dumps({k: v for k, v in results.items() if k != "points"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
