"""Block-fading BLER of the separation codes against the outage prediction from their AWGN curves.

With one Rayleigh coefficient per codeword (``coherence: image``, one codeword per image)
a code fails when the instantaneous SNR ``|h|^2 Es/N0`` is too low for it, so its BLER
over block fading is its AWGN BLER averaged over the exponential SNR:

    BLER_fading(g) = integral_0^inf BLER_AWGN(x g) exp(-x) dx

(and, with a step at the threshold g_th where the AWGN BLER is 1/2, the outage
probability 1 - exp(-g_th / g)).  This script measures the AWGN BLER curve of the two
codes the fading scenarios use (802.11n LDPC (1944, 1458) and 5G LDPC (1944, 972), both
with 16-QAM) on a 0.25 dB grid, and compares the prediction with the simulated BLER over
Rayleigh block fading with perfect CSI and without CSI (the blind receiver of
``linksim.phy.link``), in one run.

Usage::

    python benchmarks/fading_outage.py [--codewords 1000]

Writes ``benchmarks/results/fading_outage.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from recording import machine_facts, write_results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codewords", type=int, default=1000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "fading_outage.json"))
    args = ap.parse_args(argv)

    import sionna.phy
    import tensorflow as tf

    from linksim.channels import AWGNChannel, RayleighFadingChannel
    from linksim.phy.codes import LDPC5G, LDPC80211n
    from linksim.phy.link import DigitalLink
    from linksim.phy.modulation import QAM

    sionna.phy.config.seed = 1
    t0 = time.perf_counter()
    codes = {"LDPC 3/4 (802.11n 1944, 1458) + 16-QAM": LDPC80211n(rate="3/4"),
             "LDPC 1/2 (5G 1944, 972) + 16-QAM": LDPC5G(972, 1944)}
    results = {**machine_facts(), "codewords": args.codewords, "codes": {}}
    grid = np.arange(0.0, 14.01, 0.25)
    for name, code in codes.items():
        bits = tf.cast(tf.random.uniform([args.codewords, 1, code.k], 0, 2, tf.int32), tf.float32)
        awgn = DigitalLink(code, QAM(4), channel=AWGNChannel())
        curve = np.array([1.0 - np.mean(awgn.run(bits, float(s))["block_ok"].numpy()) for s in grid])
        x = np.linspace(1e-7, 40.0, 400001)
        rows = []
        for g in (10.0, 15.0, 20.0, 25.0, 30.0):
            snr = 10.0 * np.log10(x * 10 ** (g / 10))
            predicted = float(np.trapezoid(np.interp(snr, grid, curve, left=1.0, right=0.0) * np.exp(-x), x))
            row = {"snr_db": g, "predicted_bler": round(predicted, 4)}
            for csi in ("perfect", "none"):
                link = DigitalLink(code, QAM(4), channel=RayleighFadingChannel(coherence="image", csi=csi))
                bler = 1.0 - float(np.mean(link.run(bits, g)["block_ok"].numpy()))
                sd = float(np.sqrt(max(predicted * (1 - predicted), 1e-12) / args.codewords))
                row[f"bler_csi_{csi}"] = round(bler, 4)
                row[f"sigmas_csi_{csi}"] = round((bler - predicted) / sd, 2)
            rows.append(row)
            print(name, row, flush=True)
        half = int(np.argmax(curve < 0.5))
        threshold = grid[half - 1] + (curve[half - 1] - 0.5) / (curve[half - 1] - curve[half]) * 0.25
        results["codes"][name] = {"awgn_threshold_db": round(float(threshold), 2), "points": rows}
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
