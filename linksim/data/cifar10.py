"""CIFAR-10 from its standard python batches, or the Keras downloader.

The standard layout (``cifar-10-python.tar.gz`` from
https://www.cs.toronto.edu/~kriz/cifar.html, unpacked)::

    cifar-10-batches-py/
        data_batch_1 ... data_batch_5    training batches, 10,000 images each
        test_batch                       10,000 test images
        batches.meta                     class names (optional here)

Each batch is a pickled dict with ``b"data"`` (``[N, 3072] uint8``: 1024 red, 1024
green, then 1024 blue values of a 32x32 image, row-major) and ``b"labels"``. The
batches are read with an unpickler that admits only numpy arrays and plain
containers, so a tampered file cannot run code. The ``.tar.gz`` itself is read
as well, without unpacking.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Optional

import numpy as np

from linksim.data.base import DatasetError
from linksim.data.published import PublishedDataset, keras_cache_dir
from linksim.registry import DATASETS

__all__ = ["CIFAR10", "CIFAR10_CLASSES", "read_cifar_batch"]

#: CIFAR-10 class names, by label.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

BATCH_FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
SPLIT_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
META_FILE = "batches.meta"

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # pickle protocol 5
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),  # bytes under protocol 2
}


class _BatchUnpickler(pickle.Unpickler):
    """Admits numpy arrays and builtin containers only."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        if module.startswith("numpy.core"):  # numpy >= 2 renamed numpy.core to numpy._core
            module = "numpy._core" + module[len("numpy.core"):]
        return super().find_class(module, name)


def read_cifar_batch(data: bytes, where: str = "batch") -> dict:
    """Unpickle one CIFAR python batch (a dict with bytes keys) safely.

    Input
    -----
    data : bytes
        The file's contents.
    where : str
        The file's name, for messages.

    Output
    ------
    batch : dict
        Keys decoded to ``str`` (``"data"``, ``"labels"``, ...).

    Raises
    ------
    DatasetError
        If ``data`` is not such a pickled dict.
    """
    try:
        obj = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DatasetError(f"{where} is not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{where} is not a CIFAR-10 python batch (it holds a {type(obj).__name__}, not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


@DATASETS.register("cifar10")
class CIFAR10(PublishedDataset):
    """CIFAR-10: 50,000 train / 10,000 test 32x32 RGB images, 10 classes.

    Krizhevsky, "Learning multiple layers of features from tiny images", tech.
    report, University of Toronto, 2009.

    Parameters
    ----------
    path : None, str or path-like
        The ``cifar-10-batches-py`` folder, its parent, or ``cifar-10-python.tar.gz``
        (or a folder holding it). None looks in the Keras cache
        (``~/.keras/datasets``), then downloads through Keras (about 170 MB).
    download : bool
        Try the Keras downloader when no files are found (default true).
    image_size, pad_to, channels
        As for every data set.

    Raises
    ------
    DatasetError
        If ``path`` holds no CIFAR-10 batches, or (at :meth:`load`) nothing is found
        and the download fails; the message says which files to put where.
    """

    name = "cifar10"
    title = "CIFAR-10"
    keras_name = "cifar10"
    class_names = CIFAR10_CLASSES
    search_dirs = (str(keras_cache_dir() / "cifar-10-batches-py-target"), str(keras_cache_dir()))

    def native_shape(self) -> tuple[int, int, int]:
        return 32, 32, 3

    def _find_source(self, path: Path) -> Optional[Path]:
        if path.is_file():
            return path if tarfile.is_tarfile(path) else None
        for folder in (path, path / BATCH_FOLDER):
            if any((folder / f).is_file() for files in SPLIT_FILES.values() for f in files):
                return folder
        if (path / ARCHIVE).is_file():
            return path / ARCHIVE
        return None

    def _read_files(self, source: Path, names: tuple[str, ...]) -> dict:
        """``{name: bytes}`` of the named batch files (None where missing) from a folder or the archive."""
        if source.is_dir():
            return {n: (source / n).read_bytes() if (source / n).is_file() else None for n in names}
        out = dict.fromkeys(names)
        with tarfile.open(source) as tar:
            for member in tar.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if base in out and member.isfile():
                    out[base] = tar.extractfile(member).read()
        return out

    def _read_split(self, source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        files = self._read_files(source, SPLIT_FILES[split] + (META_FILE,))
        missing = [n for n in SPLIT_FILES[split] if files[n] is None]
        if missing:
            raise DatasetError(f"CIFAR-10: {', '.join(missing)} missing in {source} (needed for the {split} split). "
                               + self._placement_help(source if source.is_dir() else source.parent))
        xs, ys = [], []
        for n in SPLIT_FILES[split]:
            batch = read_cifar_batch(files[n], f"{source}/{n}")
            data = np.asarray(batch.get("data"))
            labels = np.asarray(batch.get("labels", batch.get("fine_labels", [])), np.int64).reshape(-1)
            if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                raise DatasetError(f"CIFAR-10: {source}/{n} holds data of shape {data.shape} and {len(labels)} "
                                   "labels; expected [N, 3072] uint8 and N labels")
            xs.append(data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(labels)
        if files[META_FILE] is not None:
            names = read_cifar_batch(files[META_FILE], f"{source}/{META_FILE}").get("label_names")
            if names is not None and len(names) == 10:
                names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
                if names != CIFAR10_CLASSES:
                    raise DatasetError(f"CIFAR-10: {source}/{META_FILE} names the classes {list(names)}; "
                                       f"expected {list(CIFAR10_CLASSES)} (is this CIFAR-100?)")
        y = np.concatenate(ys)
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DatasetError(f"CIFAR-10: labels in {source} range over [{y.min()}, {y.max()}]; expected 0..9")
        return np.ascontiguousarray(np.concatenate(xs)), y

    def _placement_help(self, folder) -> str:
        where = "DIR" if folder is None else str(folder)
        return (f"Download {ARCHIVE} from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it so that "
                f"{where}/{BATCH_FOLDER}/ holds data_batch_1, data_batch_2, data_batch_3, data_batch_4, "
                f"data_batch_5 and test_batch (batches.meta optional); or put the archive itself in {where}. "
                f"Then set `{self._scenario_snippet(self.name, folder)}` in the scenario.")
