"""PSNR of the analog references ``uncoded`` and ``linear`` on the embedded data, against issue 10's table.

Fits both codes on the 9,000 embedded training images, sends the 500-image test
subset of ``scenarios/awgn_jscc_vs_sscc.yaml`` (seed 1234, k = 486) through
linksim's AWGN channel with the schemes as ``linksim run`` uses them, and records
the mean per-image PSNR at 0, 5, 10, 15 and 20 dB. For comparison it also records
the same schemes with ``gain_side_info: true``, a receiver told every image's
normalisation gain (the setting that reproduces issue 10's table: uncoded 14.8 / 23.1 / 32.8 dB,
linear 21 / 29 / 39 dB at 0 / 10 / 20 dB), and the closed-form MSE predictions on
the training images. Writes ``results/analog_references.json``.

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
        scheme, told = SCHEMES.create(name), SCHEMES.create(name, gain_side_info=True)
        for s in (scheme, told):
            s.prepare(SchemeContext(image_shape=x_test.shape[1:], channel_uses=K, train_images=x_train,
                                    channel=AWGNChannel(), seed=1234))
        state = scheme.encode(x_test)
        rows = {}
        for snr in SNRS:
            tf.random.set_seed(int(snr) + 1)
            blind = _psnr(x_test, scheme.evaluate(state, snr).images)
            tf.random.set_seed(int(snr) + 1)
            mse_pred = scheme.code.expected_mse(snr)
            rows[f"{snr:g}"] = {"psnr_db": round(blind, 2),
                                "gain_side_info_psnr_db": round(_psnr(x_test, told.evaluate(state, snr).images), 2),
                                "predicted_train_mse": mse_pred,
                                "predicted_train_psnr_of_mean_mse_db": round(float(-10 * np.log10(mse_pred)), 2)}
            print(f"{scheme.label:24s} {snr:4.0f} dB  {rows[f'{snr:g}']}")
        results["schemes"][name] = {"label": scheme.label, "points": rows}
    write_results(OUT, results)
    return results


if __name__ == "__main__":
    main()
