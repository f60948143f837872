"""Which size to upsample 28x28 and 32x32 images to before LPIPS-AlexNet (docs/lpips.md).

AlexNet's first convolution has stride 4 and two 3x3/2 max-pools follow, so at 28-32 px
its deep layers collapse: at 28 px relu3-relu5 are empty (the official package fails),
at 32 px they are 1x1 (their 3x3 convolutions see mostly zero padding).  For each
candidate size (native, 48, 64, 96, 128, 224; bilinear) this records:

- the spatial size of the five tapped layers (analytic);
- each layer's share of the distance (mean over the images, noise sigma 0.1);
- monotonicity in the noise level: Gaussian noise sigma in SIGMAS (clipped to [0, 1]),
  seed 0, N images; the fraction of images whose distance rises at every step of sigma,
  the mean Spearman rank correlation of distance and sigma, and the mean distance per sigma;
- the same for a Gaussian blur of increasing width (a JSCC-like distortion);
- agreement with the 224-px metric (AlexNet's training size): the Spearman rank
  correlation, over every (image, distortion) pair, of the distances at this size and at 224;
- with ``--fp16 FILE`` (an alexnet.npz written by ``python -m linksim.lpips_weights --dtype
  float16``), the largest |d_float16 - d_float32| over every pair measured against the
  shipped float32 weights: the cost of shipping float16 instead.

Images: 28x28 grey = the embedded data set's first N test images; 32x32 RGB = N crops
of matplotlib's sample photograph ``grace_hopper.jpg`` downsampled by 4 (no CIFAR-10 here).

Usage::

    python benchmarks/lpips_upsampling.py [--n 64] [--fp16 /path/float16/alexnet.npz]

Writes ``benchmarks/results/lpips_upsampling.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recording import machine_facts, write_results  # noqa: E402

SIGMAS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3]
BLURS = [0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
SIZES = [None, 48, 64, 96, 128, 224]


def grey28(n):
    with np.load(REPO / "linksim/data/embedded/fashion_mnist_small.npz") as z:
        x = z["x_test"][:n]
    x = x.astype(np.float32)
    if x.max() > 1.5:
        x = x / 255.0
    return x.reshape(n, 28, 28, 1)


def rgb32(n, seed=0):
    import matplotlib
    from PIL import Image

    img = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    img = img.resize((img.width // 4, img.height // 4), Image.BILINEAR)
    a = np.asarray(img, np.float32) / 255.0
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, a.shape[0] - 32, n)
    xs = rng.integers(0, a.shape[1] - 32, n)
    return np.stack([a[y:y + 32, x:x + 32] for y, x in zip(ys, xs)])


def noisy(x, sigma, seed):
    rng = np.random.default_rng(seed)
    return np.clip(x + sigma * rng.standard_normal(x.shape).astype(np.float32), 0, 1)


def blurred(x, width):
    import tensorflow as tf

    r = int(np.ceil(3 * width))
    t = np.arange(-r, r + 1, dtype=np.float32)
    g = np.exp(-t ** 2 / (2 * width ** 2))
    g /= g.sum()
    c = x.shape[-1]
    k = np.einsum("i,j->ij", g, g)[:, :, None, None] * np.ones((1, 1, c, 1), np.float32)
    xp = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
    return tf.nn.depthwise_conv2d(xp, k, [1, 1, 1, 1], "VALID").numpy()


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def monotonicity(d):
    """d: [levels, images] -> fraction strictly rising at every step, mean Spearman rho, mean per level."""
    rising = np.all(np.diff(d, axis=0) > 0, axis=0)
    levels = np.arange(d.shape[0])
    rho = [spearman(levels, d[:, i]) for i in range(d.shape[1])]
    return {"fraction_rising_every_step": float(rising.mean()), "mean_spearman": float(np.mean(rho)),
            "mean_distance": [float(v) for v in d.mean(axis=1)]}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--fp16", type=Path, default=None)
    args = ap.parse_args(argv)
    from linksim.lpips import LPIPS, tap_sizes

    sets = {"grey28": grey28(args.n), "rgb32": rgb32(args.n)}
    res = {"machine": machine_facts(), "n_images": args.n, "noise_sigmas": SIGMAS, "blur_sigmas_px": BLURS,
           "seed": 0, "sets": {}}
    worst16 = 0.0
    for name, x in sets.items():
        side = x.shape[1]
        noisy_sets = [noisy(x, s, seed=i) for i, s in enumerate(SIGMAS)]
        blur_sets = [blurred(x, w) for w in BLURS]
        out = {}
        all_d = {}
        for size in SIZES:
            eff = side if size is None or size <= side else size
            taps = tap_sizes("alexnet", eff)
            entry = {"input_side": eff, "tap_sizes": taps,
                     "layers_at_least_1px": sum(t >= 1 for t in taps),
                     "layers_at_least_3px": sum(t >= 3 for t in taps)}
            if min(taps) < 1:
                entry["note"] = "relu3-relu5 are empty: LPIPS-AlexNet cannot run at this size"
                out[str(size or "native")] = entry
                continue
            layer = LPIPS("alexnet", upsample_to=size)
            t0 = time.perf_counter()
            dn = np.stack([layer.layer_distances(x, y).numpy() for y in noisy_sets])  # [levels, n, 5]
            db = np.stack([layer.layer_distances(x, y).numpy() for y in blur_sets])
            entry["seconds"] = round(time.perf_counter() - t0, 2)
            share = dn[SIGMAS.index(0.1)]
            entry["layer_share_at_sigma_0.1"] = [float(v) for v in (share / share.sum(1, keepdims=True)).mean(0)]
            entry["noise"] = monotonicity(dn.sum(-1))
            entry["blur"] = monotonicity(db.sum(-1))
            if args.fp16 is not None:
                half = LPIPS("alexnet", upsample_to=size, weights_path=str(args.fp16))
                d16 = np.stack([half(x, y).numpy() for y in noisy_sets + blur_sets])
                d32 = np.concatenate([dn.sum(-1), db.sum(-1)])
                entry["max_abs_diff_float16_vs_float32"] = float(np.abs(d16 - d32).max())
                worst16 = max(worst16, entry["max_abs_diff_float16_vs_float32"])
            all_d[size] = np.concatenate([dn.sum(-1), db.sum(-1)]).reshape(-1)
            out[str(size or "native")] = entry
            print(name, size, taps, entry["noise"]["fraction_rising_every_step"],
                  entry["blur"]["fraction_rising_every_step"], entry.get("max_abs_diff_float16_vs_float32"), flush=True)
        for size, d in all_d.items():
            out[str(size or "native")]["spearman_vs_224"] = spearman(d, all_d[224])
        res["sets"][name] = out
    if args.fp16 is not None:
        res["max_abs_diff_float16_vs_float32"] = worst16
    write_results(REPO / "benchmarks/results/lpips_upsampling.json", res)


if __name__ == "__main__":
    main()
