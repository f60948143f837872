"""PSNR of the analog references ``uncoded`` and ``linear`` on the embedded data, against issue 10's table.

Fits both codes on the 9,000 embedded training images, sends the 500-image test
subset of ``scenarios/awgn_jscc_vs_sscc.yaml`` (seed 1234, k = 486) through
linksim's AWGN channel with the schemes as ``linksim run`` uses them, and records
the mean per-image PSNR at 0, 5, 10, 15 and 20 dB. For comparison it also records
the same codes with a *genie* receiver that knows every image's normalisation gain
(the setting that reproduces issue 10's table: uncoded 14.8 / 23.1 / 32.8 dB,
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


def genie_psnr(scheme, x, snr_db, rng) -> float:
    """The scheme's code with a receiver told every image's gain g: LMMSE of x0 from y / g."""
    code, s2 = scheme.code, 0.5 * 10 ** (-snr_db / 10)
    x0 = x.reshape(len(x), -1).astype(np.float64) - code.mu
    if scheme.label.startswith("Uncoded"):
        t = x0[:, code.pixel_of_slot]
        g = np.sqrt(K / np.sum(t * t, axis=1, keepdims=True))
        y = t + rng.standard_normal(t.shape) * np.sqrt(s2) / g
        ybar = y @ code._combine.numpy().astype(np.float64)
        r = np.maximum(code.copies, 1.0)
        a = code.pixel_var / (code.pixel_var + s2 / (r * g ** 2))
        x_hat = code.mu + np.where(code.copies > 0, a * ybar, 0.0)
    else:
        d = code._design(snr_db)
        t = x0 @ d.encoder
        g = np.sqrt(K / np.sum(t * t, axis=1, keepdims=True))
        y = t + rng.standard_normal(t.shape) * np.sqrt(s2) / g
        lam, p = code.eigenvalues[:d.active], d.powers[:d.active]
        c = y * (np.sqrt(p / lam) * lam / (p + s2 / g ** 2))
        x_hat = code.mu + c @ code.eigenvectors[:, :d.active].T
    return _psnr(x, x_hat)


def main() -> dict:
    ds = get_dataset("embedded")
    x_test = to_float(ds.load("test", 500, seed=1234)[0])
    x_train = to_float(ds.load("train", None, seed=1234)[0])
    results = {"machine": machine_facts(), "dataset": "embedded", "test_images": len(x_test),
               "train_images": len(x_train), "channel_uses": K, "snr_db": list(SNRS),
               "issue_10_table": {"uncoded": {"0": 14.8, "10": 23.1, "20": 32.8},
                                  "linear": {"0": 21, "10": 29, "20": 39}},
               "schemes": {}}
    rng = np.random.default_rng(0)
    for name in ("uncoded", "linear"):
        scheme = SCHEMES.create(name)
        scheme.prepare(SchemeContext(image_shape=x_test.shape[1:], channel_uses=K, train_images=x_train,
                                     channel=AWGNChannel(), seed=1234))
        state = scheme.encode(x_test)
        rows = {}
        for snr in SNRS:
            tf.random.set_seed(int(snr) + 1)
            mse_pred = scheme.code.expected_mse(snr)
            rows[f"{snr:g}"] = {"psnr_db": round(_psnr(x_test, scheme.evaluate(state, snr).images), 2),
                                "genie_gain_psnr_db": round(genie_psnr(scheme, x_test, snr, rng), 2),
                                "predicted_train_mse": mse_pred,
                                "predicted_train_psnr_of_mean_mse_db": round(-10 * np.log10(mse_pred), 2)}
            print(f"{scheme.label:24s} {snr:4.0f} dB  {rows[f'{snr:g}']}")
        results["schemes"][name] = {"label": scheme.label, "points": rows}
    write_results(OUT, results)
    return results


if __name__ == "__main__":
    main()
