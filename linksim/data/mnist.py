"""MNIST and Fashion-MNIST from their IDX files (gzipped or not), or the Keras downloader.

The standard files, in one folder::

    train-images-idx3-ubyte.gz   train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz    t10k-labels-idx1-ubyte.gz

(each also accepted uncompressed, and as ``train-images.idx3-ubyte``). The folder
may also be a parent holding them under ``MNIST/raw`` / ``FashionMNIST/raw``
(torchvision's layout). MNIST is also read from Keras's ``mnist.npz``.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Optional

import numpy as np

from linksim.data.base import DatasetError
from linksim.data.published import PublishedDataset, keras_cache_dir
from linksim.registry import DATASETS

__all__ = ["MNIST", "FashionMNIST", "read_idx", "find_idx_file", "FASHION_MNIST_CLASSES", "MNIST_CLASSES"]

#: Fashion-MNIST class names, by label (Xiao et al. 2017).
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
#: MNIST class names: the digits.
MNIST_CLASSES = tuple(str(d) for d in range(10))

#: IDX file-name prefix of each split.
IDX_PREFIX = {"train": "train", "test": "t10k"}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (gzipped or not; detected from its first bytes).

    Input
    -----
    path : str or path-like

    Output
    ------
    array : np.ndarray
        Shape and dtype from the file's header (uint8 for the MNIST files).

    Raises
    ------
    DatasetError
        If the file is not a well-formed IDX file (the message names the file).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {data[:4].hex()}; expected 0000 08 0N)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DatasetError(f"{path} is not an IDX file (truncated header)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(f"{path}: the header announces {dims} values ({expected} bytes) but the file holds "
                           f"{len(data) - header} bytes of data; the file is truncated or corrupt")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def find_idx_file(folder, prefix: str, kind: str, ndim: int) -> Optional[Path]:
    """The IDX file ``<prefix>-<kind>-idx<ndim>-ubyte[.gz]`` in ``folder`` (or the ``.idx`` spelling), if any.

    Parameters
    ----------
    folder : str or path-like
    prefix : str
        ``"train"`` or ``"t10k"``.
    kind : str
        ``"images"`` or ``"labels"``.
    ndim : int
        3 for images, 1 for labels.
    """
    folder = Path(folder)
    for stem in (f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"):
        for suffix in (".gz", ""):
            p = folder / (stem + suffix)
            if p.is_file():
                return p
    return None


def _idx_names(split: str) -> tuple[str, str]:
    prefix = IDX_PREFIX[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


class _IDXDataset(PublishedDataset):
    """MNIST-format data: 28x28 grey images in IDX files (or Keras's npz)."""

    #: Sub-folders of ``path`` also looked in (torchvision's and common layouts).
    sub_folders: tuple[str, ...] = ()
    #: Where to get the files, for the placement help.
    where_to_get: str = ""

    def native_shape(self) -> tuple[int, int, int]:
        return 28, 28, 1

    def _find_source(self, path: Path) -> Optional[Path]:
        if path.is_file():
            return path if path.suffix == ".npz" else self._find_source(path.parent)
        for sub in ("", *self.sub_folders):
            folder = path / sub if sub else path
            if any(find_idx_file(folder, IDX_PREFIX[s], kind, nd) for s in IDX_PREFIX
                   for kind, nd in (("images", 3), ("labels", 1))):
                return folder
        return None

    def _read_split(self, source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        if source.suffix == ".npz":
            with np.load(source, allow_pickle=False) as f:
                if f"x_{split}" not in f.files or f"y_{split}" not in f.files:
                    raise DatasetError(f"{self.title}: {source} has no x_{split} / y_{split} arrays "
                                       f"(it holds {', '.join(f.files)}); expected Keras's mnist.npz")
                return self._from_keras(f[f"x_{split}"], f[f"y_{split}"])
        prefix = IDX_PREFIX[split]
        img, lab = find_idx_file(source, prefix, "images", 3), find_idx_file(source, prefix, "labels", 1)
        missing = [name for name, p in zip(_idx_names(split), (img, lab)) if p is None]
        if missing:
            raise DatasetError(f"{self.title}: {' and '.join(n + '[.gz]' for n in missing)} missing in {source} "
                               f"(needed for the {split} split). " + self._placement_help(source))
        x, y = read_idx(img), read_idx(lab)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(f"{self.title}: {img.name} holds an array of shape {x.shape} and {lab.name} one of "
                               f"shape {y.shape}; expected [N, 28, 28] images and [N] labels")
        if x.dtype != np.uint8:
            raise DatasetError(f"{self.title}: {img.name} holds {x.dtype} values; expected unsigned bytes")
        return np.ascontiguousarray(x[..., None]), y.astype(np.int64)

    def _placement_help(self, folder) -> str:
        where = "a folder DIR" if folder is None else str(folder)
        files = ", ".join(n + ".gz" for s in ("train", "test") for n in _idx_names(s))
        return (f"Put {files} (gzipped or not) in {where}, and set "
                f"`{self._scenario_snippet(self.name, folder)}` in the scenario. {self.where_to_get}")


@DATASETS.register("mnist")
class MNIST(_IDXDataset):
    """MNIST handwritten digits: 60,000 train / 10,000 test 28x28 grey images, 10 classes.

    LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document
    recognition", Proc. IEEE 1998. Files: the four IDX files (see module
    docstring) or Keras's ``mnist.npz``.

    Parameters
    ----------
    path : None, str or path-like
        Folder with the IDX files (or the ``mnist.npz`` file). None looks in the
        Keras cache (``~/.keras/datasets/mnist.npz``), then downloads through Keras.
    download : bool
        Try the Keras downloader when no files are found (default true).
    image_size, pad_to, channels
        As for every data set.

    Raises
    ------
    DatasetError
        If ``path`` holds no MNIST files, or (at :meth:`load`) nothing is found and
        the download fails; the message says which files to put where.
    """

    name = "mnist"
    title = "MNIST"
    keras_name = "mnist"
    class_names = MNIST_CLASSES
    sub_folders = ("MNIST/raw", "mnist")
    where_to_get = ("The files are at https://storage.googleapis.com/cvdf-datasets/mnist/; Keras's single file "
                    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz may be given as the "
                    "path instead.")
    search_dirs = (str(keras_cache_dir() / "mnist.npz"),)


@DATASETS.register("fashion_mnist")
class FashionMNIST(_IDXDataset):
    """Fashion-MNIST: 60,000 train / 10,000 test 28x28 grey images of clothing, 10 classes (MIT licence).

    Xiao, Rasul, Vollgraf, "Fashion-MNIST: a novel image dataset for benchmarking
    machine learning algorithms", arXiv:1708.07747, 2017.

    Parameters
    ----------
    path : None, str or path-like
        Folder with the four IDX files. None looks in
        ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu package
        ``dataset-fashion-mnist``) and the Keras cache, then downloads through Keras.
    download : bool
        Try the Keras downloader when no files are found (default true).
    image_size, pad_to, channels
        As for every data set.

    Raises
    ------
    DatasetError
        If ``path`` holds no Fashion-MNIST files, or (at :meth:`load`) nothing is
        found and the download fails; the message says which files to put where.
    """

    name = "fashion_mnist"
    title = "Fashion-MNIST"
    keras_name = "fashion_mnist"
    class_names = FASHION_MNIST_CLASSES
    sub_folders = ("FashionMNIST/raw", "fashion-mnist", "fashion_mnist")
    where_to_get = ("The files are at https://github.com/zalandoresearch/fashion-mnist; on Debian/Ubuntu, "
                    "`apt install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist, where "
                    "linksim finds them without a path.")
    search_dirs = ("/usr/share/datasets/fashion-mnist", str(keras_cache_dir() / "fashion-mnist"))
