"""PSNR of the analog references ``uncoded`` and ``linear`` on the embedded data, against issue 10's table.

Fits both codes on the 9,000 embedded training images, sends the 500-image test
subset of ``scenarios/awgn_jscc_vs_sscc.yaml`` (seed 1234, k = 486) through
linksim's AWGN channel with the schemes as ``linksim run`` uses them, and records
the mean per-image PSNR at 0, 5, 10, 15 and 20 dB for the three receivers of the
``gain`` option: ``header`` (the default: the per-image gain sent in band),
``genie`` (the receiver told every image's gain, the setting of issue 10's table:
uncoded 14.8 / 23.1 / 32.8 dB, linear 21 / 29 / 39 dB at 0 / 10 / 20 dB) and
``unknown``, with the closed-form MSE predictions on the training images (with the
gain known, and without). Writes ``results/analog_references.json``.

    .venv/bin/python benchmarks/analog_references.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from recording import machine_facts, write_results

from linksim.channels import AWGNChannel
from linksim.data import get_dataset
from linksim.data.base import to_float
from linksim.metrics import psnr
from linksim.registry import SCHEMES
from linksim.schemes import SchemeContext

SNRS = (0.0, 5.0, 10.0, 15.0, 20.0)
K = 486
OUT = Path(__file__).parent / "results" / "analog_references.json"


def _psnr(x, x_hat) -> float:
    return float(psnr(x, np.clip(x_hat, 0, 1).reshape(x.shape).astype(np.float32)).mean())


def main() -> dict:
    ds = get_dataset("embedded")
    x_test = to_float(ds.load("test", 500, seed=1234)[0])
    x_train = to_float(ds.load("train", None, seed=1234)[0])
    results = {"machine": machine_facts(), "dataset": "embedded", "test_images": len(x_test),
               "train_images": len(x_train), "channel_uses": K, "snr_db": list(SNRS),
               "issue_10_table": {"uncoded": {"0": 14.8, "10": 23.1, "20": 32.8},
                                  "linear": {"0": 21, "10": 29, "20": 39}},
               "schemes": {}}
    for name in ("uncoded", "linear"):
        schemes = {g: SCHEMES.create(name, gain=g) for g in ("header", "genie", "unknown")}
        for s in schemes.values():
            s.prepare(SchemeContext(image_shape=x_test.shape[1:], channel_uses=K, train_images=x_train,
                                    channel=AWGNChannel(), seed=1234))
        state = schemes["header"].encode(x_test)
        rows = {}
        for snr in SNRS:
            row = {}
            for g, s in schemes.items():
                tf.random.set_seed(int(snr) + 1)
                row[f"{g}_psnr_db"] = round(_psnr(x_test, s.evaluate(state, snr).images), 2)
            for g in ("genie", "unknown"):
                mse = schemes[g].code.expected_mse(snr)
                row[f"predicted_train_psnr_of_mean_mse_{g}_db"] = round(float(-10 * np.log10(mse)), 2)
            rows[f"{snr:g}"] = row
            print(f"{name:8s} {snr:4.0f} dB  {row}")
        results["schemes"][name] = {"label": schemes["header"].label, "points": rows}
    write_results(OUT, results)
    return results


if __name__ == "__main__":
    main()
