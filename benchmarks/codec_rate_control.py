"""Wall time of the codecs' rate control: a batch of 250 Fashion-MNIST images to a bit budget.

``encode_batch`` searches each image's quality ladder for the best quality whose file
fits the budget. This times one batch of 250 embedded (Fashion-MNIST) test images,
28x28 grey, at 1442 bits per image (the 802.11n (1944, 1458) codeword's information
bits less the 16-bit frame header), for each codec:

- ``cold``: a new codec object, so nothing is remembered (what a run pays once);
- ``warm``: the same batch again on the same object, answered from its payload memo.

Target (moved here from ``tests/unit/test_codecs.py``, where it was a wall-time
assertion): JPEG (abbreviated headers) and WebP rate-control the batch in under 2 s
cold. JPEG 2000 and BPG are recorded for reference (no target).

Usage::

    python benchmarks/codec_rate_control.py [--images 250] [--budget 1442] [--repeats 3]

Writes ``benchmarks/results/codec_rate_control.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from linksim.codecs import BPGCodec, JPEG2000Codec, JPEGCodec, WebPCodec  # noqa: E402
from linksim.codecs.base import encode_batch  # noqa: E402
from recording import embedded_test_images, machine_facts, write_results  # noqa: E402

#: codec label -> (factory, cold-time target in seconds or None)
CODECS = {
    "jpeg-abbreviated": (lambda: JPEGCodec(headers="abbreviated"), 2.0),
    "webp": (WebPCodec, 2.0),
    "jpeg2000": (JPEG2000Codec, None),
    "bpg-abbreviated": (lambda: BPGCodec(headers="abbreviated"), None),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=250)
    ap.add_argument("--budget", type=int, default=1442, help="bits per image")
    ap.add_argument("--repeats", type=int, default=3, help="cold runs per codec (the median is recorded)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "codec_rate_control.json"))
    args = ap.parse_args(argv)

    images = embedded_test_images(args.images)
    results = {"images": int(len(images)), "image_shape": list(images.shape[1:]), "budget_bits": args.budget,
               "codecs": {}}
    for label, (make, target) in CODECS.items():
        cold, warm, fitted = [], [], 0
        for _ in range(args.repeats):
            codec = make()
            t = time.perf_counter()
            enc = encode_batch(codec, images, args.budget)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            encode_batch(codec, images, args.budget)
            warm.append(time.perf_counter() - t)
            fitted = sum(bool(e.payload) for e in enc)
        entry = {"cold_s": float(np.median(cold)), "warm_s": float(np.median(warm)),
                 "cold_runs_s": [round(c, 4) for c in cold], "images_fitted": int(fitted),
                 "mean_bits": float(np.mean([e.bits for e in enc]))}
        if target is not None:
            entry["target_cold_s"] = target
            entry["meets_target"] = bool(entry["cold_s"] < target)
        results["codecs"][label] = entry
    results.update(**machine_facts())
    write_results(args.out, results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
