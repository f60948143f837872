"""Throughput of the separation chain: linksim's DigitalLink against a plain Sionna chain.

Both chains run the same blocks on the same batch: 802.11n LDPC (1944, 1458) encoding
(Sionna ``LinearEncoder``), 16-QAM mapping, AWGN, APP demapping and 20 iterations of
BP decoding (``LDPCBPDecoder``, boxplus-phi), compiled with ``tf.function(jit_compile=True)``.
linksim's chain adds what a receiver needs and the plain chain lacks: extracting the
information bits and the per-block parity check.

Target (issue 2): linksim reaches at least 0.9 of the plain chain's throughput.

Usage::

    python benchmarks/sscc_throughput.py [--batch 100] [--repeats 10] [--snr-db 11]

Writes ``benchmarks/results/sscc_throughput.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sionna.phy.channel import AWGN  # noqa: E402
from sionna.phy.fec.ldpc import LDPCBPDecoder  # noqa: E402
from sionna.phy.fec.linear import LinearEncoder  # noqa: E402
from sionna.phy.mapping import Demapper, Mapper  # noqa: E402

from linksim.phy.codes import LDPC80211n  # noqa: E402
from linksim.phy.link import DigitalLink  # noqa: E402
from linksim.phy.modulation import QAM  # noqa: E402
from recording import machine_facts, write_results  # noqa: E402


def plain_chain(pcm, num_iter=20):
    enc = LinearEncoder(pcm, is_pcm=True)
    mapper, demapper = Mapper("qam", 4), Demapper("app", "qam", 4)
    awgn = AWGN()
    dec = LDPCBPDecoder(pcm, num_iter=num_iter, hard_out=True)

    @tf.function(jit_compile=True)
    def run(u, no):
        c = enc(u)
        y = awgn(mapper(c), no)
        return dec(demapper(y, no))

    return run


def timeit(fn, repeats):
    fn()  # compile
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        _ = [o.numpy() for o in (out if isinstance(out, (list, tuple)) else [out])]
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=100, help="codewords per call")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--snr-db", type=float, default=11.0, help="Es/N0 in dB")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sscc_throughput.json"))
    args = ap.parse_args(argv)

    code = LDPC80211n()
    u = tf.constant(np.random.default_rng(0).integers(0, 2, (args.batch, 1, code.k)), tf.float32)
    no = tf.constant(10 ** (-args.snr_db / 10), tf.float32)
    link = DigitalLink(code, QAM(4), jit_compile=True)
    plain = plain_chain(code.pcm)
    u2 = tf.reshape(u, [args.batch, code.k])

    results = {}
    # interleave the two measurements to share the machine's state fairly
    t_link, t_plain = [], []
    for _ in range(3):
        t_link.append(timeit(lambda: list(link.run(u, args.snr_db).values()), args.repeats))
        t_plain.append(timeit(lambda: plain(u2, no), args.repeats))
    bits = args.batch * code.k
    results["linksim_mbit_s"] = bits / min(t_link) / 1e6
    results["plain_sionna_mbit_s"] = bits / min(t_plain) / 1e6
    results["ratio"] = results["linksim_mbit_s"] / results["plain_sionna_mbit_s"]
    results["target_ratio"] = 0.9
    results["meets_target"] = bool(results["ratio"] >= 0.9)
    results.update(batch_codewords=args.batch, snr_db=args.snr_db, code="802.11n LDPC (1944, 1458), 20 BP it.",
                   modulation="16-QAM", tensorflow=tf.__version__, **machine_facts())
    write_results(args.out, results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
