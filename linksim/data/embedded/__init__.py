"""The embedded data set: 10,000 labelled Fashion-MNIST images shipped with linksim.

``fashion_mnist_small.npz`` (next to this file) holds 9,000 training images (900
per class) from the official Fashion-MNIST training file and 1,000 test images (100
per class) from the official test file: 28x28 grey, uint8, MIT licence (Zalando
Research). ``README.md`` here gives the provenance, the selection rule and the
file's sha256; ``scripts/make_embedded_dataset.py`` rebuilds it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from linksim.data.base import ArrayDataset, DatasetError
from linksim.data.mnist import FASHION_MNIST_CLASSES
from linksim.registry import DATASETS

__all__ = ["EmbeddedFashionMNIST", "EMBEDDED_FILE"]

#: The shipped file.
EMBEDDED_FILE = Path(__file__).resolve().with_name("fashion_mnist_small.npz")


@lru_cache(maxsize=2)
def _read(path: str) -> dict:
    """The arrays of the embedded file, read once per process (read-only)."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"the embedded data set file is missing: {p}. Reinstall linksim, or rebuild the file "
                           "with `python scripts/make_embedded_dataset.py` (it reads the Fashion-MNIST IDX files "
                           "from /usr/share/datasets/fashion-mnist, Debian package dataset-fashion-mnist, or "
                           "--source DIR)")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"the embedded data set file {p} cannot be read ({exc}); reinstall linksim, or "
                           "rebuild it with `python scripts/make_embedded_dataset.py`") from None
    out = {}
    for split in ("train", "test"):
        x = np.ascontiguousarray(arrays[f"x_{split}"], np.uint8)
        y = arrays[f"y_{split}"].astype(np.int64)
        x.setflags(write=False)
        y.setflags(write=False)
        out[split] = (x, y)
    return out


@DATASETS.register("embedded")
@DATASETS.register("fashion_mnist_small")
class EmbeddedFashionMNIST(ArrayDataset):
    """Fashion-MNIST subset shipped with linksim: 9,000 train / 1,000 test 28x28 grey images, 10 balanced classes.

    Needs no files and no network. Taken from the official Fashion-MNIST files
    (Xiao, Rasul, Vollgraf, arXiv:1708.07747, 2017; MIT licence, Zalando Research);
    see ``linksim/data/embedded/README.md`` for the selection rule and checksum.

    Parameters
    ----------
    image_size, pad_to, channels
        As for every data set (:class:`~linksim.data.base.Dataset`); e.g.
        ``pad_to: [32, 32]`` for an encoder that downsamples by 4.

    Raises
    ------
    DatasetError
        If an option is invalid, or (at :meth:`load`) the shipped file is missing.
    """

    name = "embedded"
    class_names = FASHION_MNIST_CLASSES

    def __init__(self, image_size=None, pad_to=None, channels=None):
        super().__init__(image_size=image_size, pad_to=pad_to, channels=channels)
        self.image_shape  # noqa: B018 - checks pad_to against 28x28 now

    def native_shape(self) -> tuple[int, int, int]:
        return 28, 28, 1

    def _arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return _read(str(EMBEDDED_FILE))[split]
