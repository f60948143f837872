#!/usr/bin/env python3
"""Build linksim's embedded data set: a class-balanced subset of Fashion-MNIST.

Reads the official Fashion-MNIST IDX files (Zalando Research, MIT licence), picks
900 training images per class from the official training file and 100 test images
per class from the official test file, and writes

- ``linksim/data/embedded/fashion_mnist_small.npz`` (``np.savez_compressed``), and
- ``linksim/data/embedded/README.md`` (source, licence, selection rule, counts, sha256).

Selection rule (deterministic): for each split, ``rng = numpy.random.default_rng(SEED)``;
for each class ``c = 0..9`` in turn, ``rng.permutation(indices of class c)[:k]``; the
chosen indices are sorted, so the images keep the order of the official file.

The zip members get a fixed timestamp, so the same inputs (and zlib) give the same
bytes, and the same sha256.

Usage::

    python scripts/make_embedded_dataset.py                 # build from /usr/share/datasets/fashion-mnist
    python scripts/make_embedded_dataset.py --source DIR    # IDX files (.gz or plain) in DIR
    python scripts/make_embedded_dataset.py --check         # rebuild in memory, compare with the shipped file
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from linksim.data.mnist import FASHION_MNIST_CLASSES, find_idx_file, read_idx  # noqa: E402

SEED = 0
PER_CLASS = {"train": 900, "test": 100}
IDX_PREFIX = {"train": "train", "test": "t10k"}
DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
OUT_DIR = REPO / "linksim" / "data" / "embedded"
NPZ_NAME = "fashion_mnist_small.npz"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def select(labels: np.ndarray, per_class: int, seed: int = SEED) -> np.ndarray:
    """Sorted indices of ``per_class`` items of each class (0..9), chosen with ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise SystemExit(f"class {c} has only {len(members)} images, {per_class} are needed")
        chosen.append(rng.permutation(members)[:per_class])
    return np.sort(np.concatenate(chosen))


def build(source: Path) -> tuple[dict, dict]:
    """The arrays of the npz, and the names of the source files used."""
    arrays, used = {}, {}
    for split, prefix in IDX_PREFIX.items():
        img_path = find_idx_file(source, prefix, "images", 3)
        lab_path = find_idx_file(source, prefix, "labels", 1)
        if img_path is None or lab_path is None:
            raise SystemExit(f"Fashion-MNIST {split} files not found in {source}: need {prefix}-images-idx3-ubyte"
                             f"[.gz] and {prefix}-labels-idx1-ubyte[.gz] (Debian: apt install dataset-fashion-mnist)")
        x, y = read_idx(img_path), read_idx(lab_path)
        index = select(y, PER_CLASS[split])
        arrays[f"x_{split}"] = np.ascontiguousarray(x[index][..., None], np.uint8)
        arrays[f"y_{split}"] = y[index].astype(np.uint8)
        arrays[f"index_{split}"] = index.astype(np.int32)
        used[split] = (img_path.name, lab_path.name)
    arrays["class_names"] = np.array(FASHION_MNIST_CLASSES)
    return arrays, used


def to_npz_bytes(arrays: dict) -> bytes:
    """``np.savez_compressed`` output with fixed zip timestamps (reproducible bytes)."""
    raw = io.BytesIO()
    np.savez_compressed(raw, **arrays)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw.getvalue())) as zin, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            zout.writestr(fixed, zin.read(info.filename))
    return out.getvalue()


def readme(arrays: dict, used: dict, sha256: str, nbytes: int) -> str:
    counts = {s: np.bincount(arrays[f"y_{s}"], minlength=10) for s in ("train", "test")}
    rows = "\n".join(f"| {c} | {name} | {counts['train'][c]} | {counts['test'][c]} |"
                     for c, name in enumerate(FASHION_MNIST_CLASSES))
    return f"""# The embedded data set: `fashion_mnist_small.npz`

linksim's default data set (`dataset: {{name: embedded}}`, alias `fashion_mnist_small`):
a class-balanced subset of **Fashion-MNIST**, shipped inside the package so that
every scenario and test runs without downloads.

## Source and licence

- Fashion-MNIST, by Zalando Research: Han Xiao, Kashif Rasul, Roland Vollgraf,
  *Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
  Algorithms*, arXiv:1708.07747 (2017). <https://github.com/zalandoresearch/fashion-mnist>
- Built from the official IDX files as packaged by Debian (`dataset-fashion-mnist`,
  `/usr/share/datasets/fashion-mnist/`): {used['train'][0]}, {used['train'][1]}
  (training) and {used['test'][0]}, {used['test'][1]} (test).
- Licence: **MIT** (<https://github.com/zalandoresearch/fashion-mnist/blob/master/LICENSE>);
  the subset keeps it. Its notice, which must accompany copies of the data:

> The MIT License (MIT). Copyright (c) 2017 Zalando SE, https://tech.zalando.com
>
> Permission is hereby granted, free of charge, to any person obtaining a copy of
> this software and associated documentation files (the "Software"), to deal in
> the Software without restriction, including without limitation the rights to
> use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of
> the Software, and to permit persons to whom the Software is furnished to do so,
> subject to the following conditions:
>
> The above copyright notice and this permission notice shall be included in all
> copies or substantial portions of the Software.
>
> THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
> IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS
> FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
> COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
> IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
> CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

## Selection rule

`scripts/make_embedded_dataset.py` builds the file deterministically. For each split,
`rng = numpy.random.default_rng({SEED})`; for each class `c = 0..9` in turn it keeps
`rng.permutation(<indices of class c in the official file>)[:k]`, with k = {PER_CLASS['train']}
for the training split (from the official training file) and k = {PER_CLASS['test']} for the
test split (from the official test file). The kept indices are sorted, so images keep
the order of the official files; `index_train` / `index_test` record them (0-based
positions in the official files). Training and test images come from different official files, so they never overlap.

Rebuild and compare: `python scripts/make_embedded_dataset.py --check`.

## Contents

| key | shape | dtype | meaning |
|---|---|---|---|
| `x_train` | {list(arrays['x_train'].shape)} | uint8 | training images, 28x28 grey, 0 = background |
| `y_train` | {list(arrays['y_train'].shape)} | uint8 | training labels 0..9 |
| `index_train` | {list(arrays['index_train'].shape)} | int32 | positions in `{used['train'][0]}` |
| `x_test` | {list(arrays['x_test'].shape)} | uint8 | test images |
| `y_test` | {list(arrays['y_test'].shape)} | uint8 | test labels 0..9 |
| `index_test` | {list(arrays['index_test'].shape)} | int32 | positions in `{used['test'][0]}` |
| `class_names` | [10] | str | class names, by label |

Counts per class:

| label | class | train | test |
|---|---|---|---|
{rows}
| | **total** | **{counts['train'].sum()}** | **{counts['test'].sum()}** |

## File

- Written with `numpy.savez_compressed` (zip members given a fixed timestamp, so the
  bytes are reproducible with the same zlib); {nbytes:,} bytes.
- sha256: `{sha256}`
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help=f"folder with the Fashion-MNIST IDX files (default {DEFAULT_SOURCE})")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help=f"where to write (default {OUT_DIR})")
    parser.add_argument("--check", action="store_true",
                        help="rebuild in memory and compare the arrays with the file in --out-dir; write nothing")
    args = parser.parse_args(argv)

    arrays, used = build(args.source)
    npz = args.out_dir / NPZ_NAME
    if args.check:
        if not npz.is_file():
            print(f"missing: {npz}", file=sys.stderr)
            return 1
        with np.load(npz, allow_pickle=False) as f:
            same = set(f.files) == set(arrays) and all(np.array_equal(f[k], v) for k, v in arrays.items())
        print(f"{npz}: {'matches' if same else 'DIFFERS from'} a rebuild from {args.source}")
        return 0 if same else 1
    data = to_npz_bytes(arrays)
    sha = hashlib.sha256(data).hexdigest()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    npz.write_bytes(data)
    (args.out_dir / "README.md").write_text(readme(arrays, used, sha, len(data)))
    print(f"wrote {npz} ({len(data):,} bytes, sha256 {sha}) and {args.out_dir / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
