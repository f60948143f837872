"""What the coding-rate reduction does to the features of the shipped MCR² models (``docs/mcr2.md``).

For the four ungated models of ``scenarios/mcr2_beta.yaml`` (β = 0, 1e-4, 1e-3, 1e-2;
k = 128, shipped weights) and, as the simplest reference, the linear analog code
(PCA + power allocation, ``linksim.schemes.analog.LinearCode``) at the same k:

1. ΔR (ε² = 0.5) of the sent and of the received features of the test images, on
   batches of 64 as in training (mean over the batches), at 0, 10 and 20 dB: does a
   larger β give larger ΔR, and how much of it survives the noise?
2. The accuracy of the nearest-subspace classifier on the received features against
   its subspace dimension r in {1, 2, 4, 8, 16, 32} at 0, 10 and 20 dB (the scenarios
   use r = 8): is r = 8 a fair choice for every model, the linear code included?

500 test images (seed 1234, the scenarios' test set), the classifier fitted on the sent
features of 5,000 training images (a fixed random subset drawn with seed 0; the scheme
draws its own with its ``train_seed``), AWGN noise seeded per SNR.
Writes ``benchmarks/results/mcr2_feature_space.json``; the tables are in docs/mcr2.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BETAS = (0.0, 1e-4, 1e-3, 1e-2)
SNRS = (0.0, 10.0, 20.0)
RS = (1, 2, 4, 8, 16, 32)
K = 128


def _delta_r(slots, labels, batch=64):
    from linksim.schemes.mcr2 import rate_reduction

    vals = [float(rate_reduction(slots[i:i + batch].astype(np.float32), labels[i:i + batch], 10))
            for i in range(0, len(slots) - batch + 1, batch)]
    return float(np.mean(vals))


def _awgn(x, snr_db, seed):
    rng = np.random.default_rng(seed)
    no = 10 ** (-snr_db / 10)
    return x + np.sqrt(no / 2) * (rng.normal(size=x.shape) + 1j * rng.normal(size=x.shape))


def _slots(x):
    return np.concatenate([x.real, x.imag], axis=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "mcr2_feature_space.json"))
    args = ap.parse_args(argv)

    import tensorflow as tf

    from linksim.channels import AWGNChannel
    from linksim.data import get_dataset
    from linksim.data.base import to_float
    from linksim.schemes.analog import LinearCode
    from linksim.schemes.base import SchemeContext
    from linksim.schemes.mcr2 import MCR2JSCCScheme, NearestSubspaceClassifier
    from linksim.store import default_store

    ds = get_dataset("embedded")
    x_tr, y_tr = ds.load("train", None, seed=1234)
    x_te, y_te = ds.load("test", 500, seed=1234)
    x_tr, x_te = to_float(x_tr), to_float(x_te)
    fit_idx = np.sort(np.random.default_rng(0).choice(len(x_tr), 5000, replace=False))
    ctx = SchemeContext(image_shape=(28, 28, 1), channel_uses=K, train_images=x_tr, channel=AWGNChannel(), seed=1234,
                        dataset_spec={"name": "embedded", "params": {}, "train_size": None}, store=default_store(),
                        progress=False, train_missing=False, extra={"train_labels": y_tr, "num_classes": 10})

    def encoders():
        for beta in BETAS:
            s = MCR2JSCCScheme(beta=beta)
            s.prepare(ctx)
            yield f"mcr2 beta={beta:g}", lambda x, snr, s=s: s.model.encoder(tf.constant(x)).numpy()
        code = LinearCode().fit(x_tr, channel_uses=K)
        yield "linear (PCA + LMMSE)", lambda x, snr, code=code: np.asarray(code.encode(x, snr_db=snr))

    out = {"test_images": len(x_te), "fit_images": len(fit_idx), "k": K, "eps2": 0.5, "models": {}}
    for name, enc in encoders():
        rec = {"delta_r_sent": {}, "delta_r_received": {}, "nsc_accuracy": {}}
        for snr in SNRS:
            sent = enc(x_te, snr)
            rx = _awgn(sent, snr, seed=int(snr))
            rec["delta_r_sent"][f"{snr:g}"] = _delta_r(_slots(sent), y_te)
            rec["delta_r_received"][f"{snr:g}"] = _delta_r(_slots(rx), y_te)
            fit = _slots(enc(x_tr[fit_idx], snr))
            rec["nsc_accuracy"][f"{snr:g}"] = {
                str(r): float(np.mean(NearestSubspaceClassifier(r).fit(fit, y_tr[fit_idx]).predict(_slots(rx)) == y_te))
                for r in RS}
        out["models"][name] = rec
        print(name, json.dumps(rec), flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
