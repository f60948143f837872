"""Published data sets read from their standard files, or fetched by the Keras downloader.

A :class:`PublishedDataset` (CIFAR-10, MNIST, Fashion-MNIST) finds its files in
this order:

1. ``path`` (the scenario's ``dataset.params.path``), when given: the files must
   be there, or a :class:`~linksim.data.base.DatasetError` says which are missing;
2. otherwise the class's :attr:`~PublishedDataset.search_dirs` (e.g. Debian's
   ``/usr/share/datasets/fashion-mnist`` and the Keras cache ``~/.keras/datasets``);
3. otherwise, if ``download`` is true, the Keras downloader
   (``keras.datasets.<name>.load_data()``, which needs the network the first time
   and caches under ``~/.keras/datasets``), through :func:`keras_load_data`;
4. otherwise a :class:`~linksim.data.base.DatasetError` that says exactly which
   files to place where and how to set ``dataset.params.path``.

Tests replace :func:`keras_load_data` (``monkeypatch``) so they never touch the network.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Optional

import numpy as np

from linksim.data.base import ArrayDataset, DatasetError

__all__ = ["PublishedDataset", "keras_load_data", "keras_cache_dir", "DOWNLOAD_TIMEOUT_S"]

#: Seconds a stalled network read may take before the download is given up.
DOWNLOAD_TIMEOUT_S = 60.0


def keras_cache_dir() -> Path:
    """Where the Keras downloader caches data sets: ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``)."""
    return Path(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras"))) / "datasets"


def keras_load_data(keras_name: str):
    """``keras.datasets.<keras_name>.load_data()``: download (or read Keras's cache of) a data set.

    Parameters
    ----------
    keras_name : str
        ``"cifar10"``, ``"mnist"`` or ``"fashion_mnist"``.

    Output
    ------
    arrays : ((x_train, y_train), (x_test, y_test))
        As Keras returns them (uint8 images, labels possibly ``[N, 1]``).

    Raises
    ------
    Exception
        Whatever the downloader raises when it cannot fetch the files (no network,
        timeout after :data:`DOWNLOAD_TIMEOUT_S` s without data, bad checksum).
    """
    import keras

    loader = getattr(keras.datasets, keras_name).load_data
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return loader()
    finally:
        socket.setdefaulttimeout(old)


def _show(path: Path) -> str:
    """``path`` with the home directory written as ``~``."""
    home = str(Path.home())
    s = str(path)
    return "~" + s[len(home):] if home != "/" and s.startswith(home + os.sep) else s


class PublishedDataset(ArrayDataset):
    """A published data set: its standard files from a folder, or the Keras downloader.

    Subclasses set :attr:`title`, :attr:`keras_name`, :attr:`search_dirs` and
    implement :meth:`_find_source`, :meth:`_read_split` and :meth:`_placement_help`.

    Parameters
    ----------
    path : None, str or path-like
        Folder (or file) holding the standard files; ``~`` is expanded. None looks
        in :attr:`search_dirs`, then asks the Keras downloader.
    download : bool
        Whether to try the Keras downloader when no files are found (default true).
    image_size, pad_to, channels
        As for every data set (:class:`~linksim.data.base.Dataset`).

    Raises
    ------
    DatasetError
        If ``path`` is given but does not exist or holds none of the files.
    """

    #: Human-readable name, for messages.
    title: str = ""
    #: ``keras.datasets.<keras_name>``.
    keras_name: str = ""
    #: Folders looked in, in order, when no ``path`` is given (``~`` is expanded).
    search_dirs: tuple[str, ...] = ()

    def __init__(self, path=None, download: bool = True, image_size=None, pad_to=None, channels=None):
        super().__init__(image_size=image_size, pad_to=pad_to, channels=channels)
        if not isinstance(download, bool):
            raise DatasetError(f"download must be true or false (got {download!r})")
        self.download = download
        self.path = None if path is None else Path(os.path.expanduser(os.fspath(path)))
        self._source: Optional[Path] = None
        self._downloaded: Optional[dict] = None
        self._cache: dict = {}
        if self.path is not None:
            if not self.path.exists():
                raise DatasetError(f"{self.title}: dataset.params.path does not exist: {self.path}. "
                                   + self._placement_help(self.path))
            self._source = self._find_source(self.path)
            if self._source is None:
                raise DatasetError(f"{self.title}: no {self.title} files in {self.path}. "
                                   + self._placement_help(self.path))
        self.image_shape  # noqa: B018 - checks pad_to against the (known) native size now

    # ----------------------------------------------------------------- hooks
    def _find_source(self, path: Path) -> Optional[Path]:
        """The folder or file under ``path`` that holds the standard files, or None."""
        raise NotImplementedError

    def _read_split(self, source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x [N, H, W, C] uint8, y [N] int64)`` of ``split`` from the files at ``source``.

        Raises :class:`DatasetError` naming a missing or malformed file."""
        raise NotImplementedError

    def _placement_help(self, folder) -> str:
        """Which files to put in ``folder`` (a path or ``"DIR"``), and how to set ``dataset.params.path``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ data
    @property
    def source(self) -> Optional[str]:
        """Where the data come from: the folder or file read, ``"keras"``, or None before the first load."""
        if self._source is not None:
            return str(self._source)
        return "keras" if self._downloaded is not None else None

    def _arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in self._cache:
            if self._source is None and self._downloaded is None:
                self._locate()
            if self._source is not None:
                x, y = self._read_split(self._source, split)
            else:
                x, y = self._downloaded[split]
            x.setflags(write=False)
            y.setflags(write=False)
            self._cache[split] = (x, y)
        return self._cache[split]

    def _locate(self) -> None:
        """Find the files in :attr:`search_dirs`, else download; else raise the placement help."""
        looked = []
        for d in self.search_dirs:
            folder = Path(os.path.expanduser(d))
            looked.append(_show(folder))
            if folder.exists():
                found = self._find_source(folder)
                if found is not None:
                    self._source = found
                    return
        if self.download:
            try:
                (x_tr, y_tr), (x_te, y_te) = keras_load_data(self.keras_name)
            except Exception as exc:  # noqa: BLE001 - any failure of the downloader is reported below
                why = (f"the Keras downloader (keras.datasets.{self.keras_name}.load_data) failed: "
                       f"{type(exc).__name__}: {exc}")
            else:
                self._downloaded = {"train": self._from_keras(x_tr, y_tr), "test": self._from_keras(x_te, y_te)}
                return
        else:
            why = "downloading is off (download: false)"
        raise DatasetError(f"{self.title} not found: no dataset.params.path given; looked in "
                           f"{', '.join(looked) or 'no default folders'}; {why}. "
                           + self._placement_help(None))

    @staticmethod
    def _from_keras(x, y) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, np.uint8)
        if x.ndim == 3:
            x = x[..., None]
        return np.ascontiguousarray(x), np.asarray(y, np.int64).reshape(-1)

    def get_config(self) -> dict:
        return {"path": None if self.path is None else str(self.path), "download": self.download,
                **super().get_config()}

    @staticmethod
    def _scenario_snippet(name: str, folder) -> str:
        where = "DIR" if folder is None else str(folder)
        return f"dataset: {{name: {name}, params: {{path: {where}}}}}"
