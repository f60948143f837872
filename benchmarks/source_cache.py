"""Wall time of BPG rate control with the source-coding cache on disk, cold and warm.

The BPG + ideal-code separation scheme rate-controls every test image once per SNR
point (its budget is ``floor(k log2(1 + SNR)) - 16`` bits).  This times
``encode_batch`` of embedded (Fashion-MNIST, 28x28 grey) test images at the budgets
of three SNR points, with ``k = 486`` channel uses per image (bandwidth ratio 0.62):

- ``no_cache``: a new codec object, no disk cache (what a run paid before the cache);
- ``cold``: a new codec object and an empty cache folder (the first run: encodes
  and writes every payload);
- ``warm``: a new codec object (an empty in-memory memo: a new process) and the
  filled folder (a re-run or a resumed run: reads every payload);
- ``new_snr``: as ``warm``, at the budget of an SNR point not run before (a changed
  SNR grid: encodes only the qualities no earlier search visited).

Each uses one codec object for all its budgets (as a run does for its SNR points)
and records the seconds, the codec's encode calls and the payloads read from disk
(the cache's hits).  The cache folder is a temporary one.

Usage::

    python benchmarks/source_cache.py [--images 200] [--codec bpg-abbreviated] [--repeats 1]

Writes ``benchmarks/results/source_cache.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from linksim.codecs import BPGCodec, JPEGCodec, WebPCodec  # noqa: E402
from linksim.codecs import cache as source_cache  # noqa: E402
from linksim.codecs.base import encode_batch  # noqa: E402
from recording import embedded_test_images, machine_facts, write_results  # noqa: E402

CODECS = {
    "bpg-abbreviated": lambda: BPGCodec(headers="abbreviated"),
    "bpg-full": BPGCodec,
    "webp": WebPCodec,
    "jpeg-abbreviated": lambda: JPEGCodec(headers="abbreviated"),
}
#: channel uses per 28x28 image (bandwidth ratio 486 / 784)
CHANNEL_USES = 486
FRAME_HEADER_BITS = 16


def ideal_budget(snr_db: float) -> int:
    """The codec's bits per image with the ideal code at ``snr_db``."""
    return max(0, int(math.floor(CHANNEL_USES * math.log2(1 + 10 ** (snr_db / 10)))) - FRAME_HEADER_BITS)


def _timed(make, images, budgets, folder):
    """Seconds, results and counts of rate control at ``budgets`` on one new codec object (as a run's)."""
    codec = make()
    encode, calls = codec.encode, []

    def counted(image, quality):
        calls.append(quality)
        return encode(image, quality)

    codec.encode = counted
    with source_cache.activated(folder) as cache:
        t = time.perf_counter()
        encoded = [encode_batch(codec, images, b, cache=cache if cache else False) for b in budgets]
        seconds = time.perf_counter() - t
        stats = {"encodes": len(calls), "payloads_from_disk": cache.hits if cache else 0}
    return seconds, encoded, stats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--codec", default="bpg-abbreviated", choices=sorted(CODECS))
    ap.add_argument("--snr-db", type=float, nargs="+", default=[0.0, 10.0, 20.0])
    ap.add_argument("--new-snr-db", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each case (the median is recorded)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "source_cache.json"))
    args = ap.parse_args(argv)

    make = CODECS[args.codec]
    images = embedded_test_images(args.images)
    budgets = [ideal_budget(s) for s in args.snr_db]
    cases = {"no_cache": [], "cold": [], "warm": [], "new_snr": []}
    stats, sizes = {}, []
    for _ in range(args.repeats):
        folder = Path(tempfile.mkdtemp(prefix="linksim-source-cache-bench-"))
        try:
            s, plain, stats["no_cache"] = _timed(make, images, budgets, None)
            cases["no_cache"].append(s)
            s, cold, stats["cold"] = _timed(make, images, budgets, folder)
            cases["cold"].append(s)
            s, warm, stats["warm"] = _timed(make, images, budgets, folder)
            cases["warm"].append(s)
            if not plain == cold == warm:
                raise SystemExit("cached rate control differs from encoding: a bug")
            s, _, stats["new_snr"] = _timed(make, images, [ideal_budget(args.new_snr_db)], folder)
            cases["new_snr"].append(s)
            sizes.append(sum(p.stat().st_size for p in folder.rglob("*.lsc")))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    results = {"codec": args.codec, "images": int(len(images)), "image_shape": list(images.shape[1:]),
               "channel_uses": CHANNEL_USES, "snr_db": args.snr_db, "budgets_bits": budgets,
               "new_snr_db": args.new_snr_db, "new_budget_bits": ideal_budget(args.new_snr_db),
               "cache_bytes": int(np.median(sizes)), "cases": {}}
    for name, runs in cases.items():
        st = stats[name]
        results["cases"][name] = {"seconds": round(float(np.median(runs)), 4), "runs_s": [round(r, 4) for r in runs],
                                  **st}
    results["speedup_warm"] = round(results["cases"]["no_cache"]["seconds"]
                                    / max(results["cases"]["warm"]["seconds"], 1e-9), 1)
    results["machine"] = machine_facts()
    results["load_average"] = os.getloadavg()
    write_results(args.out, results)
    print(f"{args.codec}, {len(images)} images, budgets {budgets} bits (SNR {args.snr_db} dB):")
    for name, r in results["cases"].items():
        print(f"  {name:9s} {r['seconds']:8.3f} s   encodes {r['encodes']}   from disk {r['payloads_from_disk']}")
    print(f"  warm is {results['speedup_warm']}x faster than no cache; cache {results['cache_bytes']} bytes")


if __name__ == "__main__":
    main()
