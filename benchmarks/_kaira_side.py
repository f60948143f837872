"""The PyTorch side of ``deepjscc_vs_kaira.py``: kaira 0.2.1's classic DeepJSCC, timed in eager mode.

Run by ``deepjscc_vs_kaira.py`` with the Python of a separate virtual environment
(``torch`` and ``pykaira==0.2.1`` installed with ``--no-deps``), never imported by
linksim. kaira's package ``__init__`` files import torchvision, compressai and
torchaudio eagerly, so this loads just the module files the classic DeepJSCC
needs (``kaira/models/image/bourtsoulatze2019_deepjscc.py``,
``kaira/models/deepjscc.py``, ``kaira/constraints/power.py``,
``kaira/channels/analog.py`` and the base and registry modules they import) under
empty stand-in parent packages.

The network: ``DeepJSCCModel(Bourtsoulatze2019DeepJSCCEncoder(16),
AveragePowerConstraint(1.0), AWGNChannel(snr_db=10), Bourtsoulatze2019DeepJSCCDecoder(16))``:
32x32x3 images, a 16 x 8 x 8 real latent = 512 complex channel uses (k/n = 1/6),
kaira's own power constraint and AWGN channel.

Usage (one measurement, a JSON line on stdout)::

    /work/kaira_venv/bin/python benchmarks/_kaira_side.py --what train|eval|latency [--threads 2] ...
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path


def _load_kaira():
    """kaira's DeepJSCC classes, loaded file by file without the package ``__init__`` files."""
    spec = importlib.util.find_spec("kaira")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("kaira (pykaira==0.2.1) is not installed in this environment")
    root = Path(list(spec.submodule_search_locations)[0])
    for name in ("kaira", "kaira.models", "kaira.models.image", "kaira.models.generic", "kaira.constraints",
                 "kaira.channels", "kaira.utils"):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
        sys.modules[name] = pkg

    def load(name):
        path = root.joinpath(*name.split(".")[1:]).with_suffix(".py")
        s = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(s)
        sys.modules[name] = mod
        s.loader.exec_module(mod)
        return mod

    snr = load("kaira.utils.snr")
    sys.modules["kaira.utils"].snr_to_noise_power = snr.snr_to_noise_power
    for name in ("kaira.models.base", "kaira.models.registry", "kaira.models.generic.sequential",
                 "kaira.constraints.base", "kaira.constraints.registry", "kaira.channels.base",
                 "kaira.channels.registry"):
        load(name)
    sys.modules["kaira.constraints"].BaseConstraint = sys.modules["kaira.constraints.base"].BaseConstraint
    sys.modules["kaira.channels"].BaseChannel = sys.modules["kaira.channels.base"].BaseChannel
    power = load("kaira.constraints.power")
    analog = load("kaira.channels.analog")
    bourts = load("kaira.models.image.bourtsoulatze2019_deepjscc")
    deepjscc = load("kaira.models.deepjscc")
    return types.SimpleNamespace(Encoder=bourts.Bourtsoulatze2019DeepJSCCEncoder,
                                 Decoder=bourts.Bourtsoulatze2019DeepJSCCDecoder,
                                 AveragePowerConstraint=power.AveragePowerConstraint,
                                 AWGNChannel=analog.AWGNChannel, DeepJSCCModel=deepjscc.DeepJSCCModel)


def build(kaira, latent_filters: int = 16, snr_db: float = 10.0):
    return kaira.DeepJSCCModel(encoder=kaira.Encoder(latent_filters), constraint=kaira.AveragePowerConstraint(1.0),
                               channel=kaira.AWGNChannel(snr_db=snr_db), decoder=kaira.Decoder(latent_filters))


def measure_train(torch, model, args) -> dict:
    """Epochs of ``--train-batches`` Adam/MSE steps at batch ``--batch`` plus a validation pass (as linksim's)."""
    g = torch.Generator().manual_seed(0)
    n_train = args.train_batches * args.batch
    x_tr = torch.rand(n_train, 3, 32, 32, generator=g)
    x_val = torch.rand(args.val_images, 3, 32, 32, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.MSELoss()
    epoch_seconds, losses = [], []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n_train, generator=g)
        for b in range(args.train_batches):
            x = x_tr[order[b * args.batch:(b + 1) * args.batch]]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), x)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = sum(float(loss_fn(model(x_val[i:i + 256]), x_val[i:i + 256])) * len(x_val[i:i + 256])
                      for i in range(0, len(x_val), 256)) / len(x_val)
        epoch_seconds.append(time.perf_counter() - t0)
        losses.append(val)
    timed = epoch_seconds[1:]
    return {"train_images_per_s": n_train * len(timed) / sum(timed), "epoch_seconds": epoch_seconds,
            "val_loss": losses}


def measure_eval(torch, np, model, args) -> dict:
    """Images/s of encoder + power constraint + AWGN + decoder over NumPy batches, inference mode."""
    rng = np.random.default_rng(0)
    model.eval()
    out = {}
    for batch in args.eval_batches:
        xs = [rng.random((batch, 3, 32, 32), dtype=np.float32) for _ in range(max(1, args.eval_images // batch))]

        def one_pass():
            with torch.inference_mode():
                for x in xs:
                    model(torch.from_numpy(x)).numpy()

        one_pass()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            one_pass()
            times.append(time.perf_counter() - t)
        out[str(batch)] = batch * len(xs) / float(np.median(times))
    return {"eval_images_per_s": out}


def measure_latency(torch, np, model, args) -> dict:
    """Median seconds of one image, NumPy in and out."""
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    model.eval()
    times = []
    with torch.inference_mode():
        for i in range(args.latency_calls + 20):
            t = time.perf_counter()
            model(torch.from_numpy(x)).numpy()
            if i >= 20:
                times.append(time.perf_counter() - t)
    return {"latency_s": float(np.median(times))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", choices=("train", "eval", "latency"), required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--train-batches", type=int, default=50)
    ap.add_argument("--val-images", type=int, default=360)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--eval-batches", type=int, nargs="+", default=[64, 250])
    ap.add_argument("--eval-images", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--latency-calls", type=int, default=300)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    kaira = _load_kaira()
    model = build(kaira)
    if args.what == "train":
        res = measure_train(torch, model, args)
    elif args.what == "eval":
        res = measure_eval(torch, np, model, args)
    else:
        res = measure_latency(torch, np, model, args)
    res.update(framework="kaira", kaira_version="0.2.1", torch=torch.__version__, threads=args.threads,
               params=sum(p.numel() for p in model.parameters()))
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
