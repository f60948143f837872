"""What the LDPC codes' hopeless-word threshold costs: the data behind ``HOPELESS_THRESHOLD_80211N`` and ``_5G``.

The early-stopping decoder (:mod:`linksim.phy.bp_early_stop`) decodes a word whose channel LLRs
miss more than a fraction ``t`` of the code's redundancy, ``x = (1 - I) / (1 - R) > t`` (``I`` the
soft-bit mutual-information estimate, ``R`` the design rate), by one plain 20-iteration call, and
the others in chunks that stop at convergence.  The decisions do not depend on ``t`` (a word that
would have converged gets plain decoding's decisions, which are the same codeword), only the time
does: a *hopeless* word that would have converged after ``j`` iterations runs ``20 - j`` more.  A
high ``t`` leaves words that cannot converge in the chunks below the waterfall (their chunk calls
cost more than one plain call); a low ``t`` makes converging words run every iteration.

For every 802.11n (n = 1944) and 5G NR code / modulation pair linksim's scenarios use, over its waterfall,
this decodes ``--words`` random codewords per SNR (AWGN, APP demapping, 20 iterations, parity check
after every iteration) and records per threshold ``t``: the fraction of words classified hopeless,
how many of them converged anyway (and their mean iterations), and the iterations per word that
misclassification costs (``lost_iterations_per_word``: the sum of ``20 - j`` over those words, per
word of the batch).  Also the largest ``x`` of a converged word.

Usage::

    python benchmarks/ldpc_hopeless_threshold.py [--words 2000] [--thresholds 0.4,0.45,...,0.75]

Writes ``benchmarks/results/ldpc_hopeless_threshold.json`` (about 8 minutes on the 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import sionna  # noqa: E402
import tensorflow as tf  # noqa: E402

from linksim.phy.bp_early_stop import EarlyStopBPDecoder, soft_bit_information  # noqa: E402
from linksim.phy.codes import HOPELESS_THRESHOLD_5G, HOPELESS_THRESHOLD_80211N, LDPC5G, LDPC80211n  # noqa: E402
from ldpc_early_stop import channel_llrs  # noqa: E402
from recording import machine_facts, write_results  # noqa: E402

#: 802.11n (n = 1944): (rate, bits per symbol, Es/N0 points in dB over the waterfall)
CONFIGS = [("1/2", 2, [0.0, 0.5, 1.0, 1.5, 2.0]), ("2/3", 2, [2.5, 3.0, 3.5, 4.0]),
           ("3/4", 4, [8.0, 8.5, 9.0, 9.5, 10.0, 10.5, 11.0]), ("5/6", 6, [15.5, 16.0, 16.5, 17.0, 17.5]),
           ("1/2", 4, [5.0, 5.5, 6.0, 6.5]), ("3/4", 2, [3.5, 4.0, 4.5, 5.0])]
#: 5G NR, the (k, n) the shipped scenarios use, all on 16-QAM: ((k, n), bits per symbol, Es/N0 points in dB)
CONFIGS_5G = [((972, 1944), 4, [4.0, 5.0, 5.5, 6.0, 6.5, 7.0, 8.0]), ((384, 512), 4, [8.0, 9.0, 10.0, 11.0, 12.0]),
              ((294, 392), 4, [8.0, 9.0, 10.0, 11.0, 12.0]), ((147, 196), 4, [8.0, 9.0, 10.0, 11.0, 12.0])]
NUM_ITER = 20


def words_at(code, bits: int, snr_db: float, words: int, seed: int):
    """(x, converged, iterations) of ``words`` random codewords at Es/N0 ``snr_db``.

    802.11n: the channel LLRs and the code's parity-check matrix. 5G NR: the word the decoder
    iterates on (``LDPC5G._mother_llr``: rate recovery, filler bits) and its lifted, pruned matrix.
    """
    llr, _ = channel_llrs(code, words, snr_db, seed, bits)
    if isinstance(code, LDPC80211n):
        pcm = code.pcm
    else:
        pcm, llr = code._decoder.pcm, code._mother_llr(llr)
    rate = 1.0 - pcm.shape[0] / pcm.shape[1]
    x = (1.0 - soft_bit_information(llr).numpy()) / (1.0 - rate)
    dec = EarlyStopBPDecoder(pcm, num_iter=NUM_ITER, stop_check_every=1, hopeless_threshold=None)
    out = dec(llr)
    return x, out["ok"].numpy().astype(bool), out["iterations"].numpy()


def summary(x, conv, it, thresholds) -> dict:
    point = {"words": int(x.size), "bler": float(1.0 - conv.mean()),
             "max_x_converged": float(x[conv].max()) if conv.any() else None, "thresholds": {}}
    for t in thresholds:
        hopeless = x > t
        wrong = hopeless & conv
        point["thresholds"][str(t)] = {
            "hopeless_fraction": float(hopeless.mean()), "converged_but_hopeless": int(wrong.sum()),
            "their_mean_iterations": float(it[wrong].mean()) if wrong.any() else None,
            "lost_iterations_per_word": float(np.sum(NUM_ITER - it[wrong]) / x.size)}
    return point


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=2000, help="codewords per SNR point")
    ap.add_argument("--thresholds", default="0.4,0.45,0.5,0.55,0.6,0.65,0.7,0.75")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ldpc_hopeless_threshold.json"))
    args = ap.parse_args(argv)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    t0 = time.perf_counter()
    points = []
    cases = [("802.11n", f"(1944, rate {rate})", LDPC80211n(rate=rate, early_stop=False), bits, snrs)
             for rate, bits, snrs in CONFIGS]
    cases += [("5G NR", f"({k}, {n})", LDPC5G(k=k, n=n, early_stop=False), bits, snrs)
              for (k, n), bits, snrs in CONFIGS_5G]
    for family, name, code, bits, snrs in cases:
        for snr in snrs:
            x, conv, it = words_at(code, bits, snr, args.words, seed=int(100 * snr) + 31 * bits)
            point = {"family": family, "code": name, "modulation": f"{2 ** bits}-QAM" if bits > 2 else "QPSK",
                     "snr_db": snr, **summary(x, conv, it, thresholds)}
            points.append(point)
            print(json.dumps({k: v for k, v in point.items() if k != "thresholds"}), flush=True)
    worst = {family: {str(t): max(p["thresholds"][str(t)]["lost_iterations_per_word"] for p in points
                                  if p["family"] == family) for t in thresholds} for family in ("802.11n", "5G NR")}
    results = {"codes": "802.11n LDPC (n = 1944) and 5G NR LDPC, boxplus-phi, at most 20 BP iterations",
               "channel": "AWGN", "words_per_point": args.words,
               "chosen_threshold": {"802.11n": HOPELESS_THRESHOLD_80211N, "5G NR": HOPELESS_THRESHOLD_5G},
               "worst_lost_iterations_per_word": worst, "points": points,
               "wall_s": time.perf_counter() - t0, "tensorflow": tf.__version__, "sionna": sionna.__version__,
               **machine_facts()}
    write_results(args.out, results)
    print(json.dumps({k: v for k, v in results.items() if k != "points"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
