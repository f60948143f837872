"""Data sets: the embedded default, image folders, CIFAR-10, MNIST and Fashion-MNIST.

Every data set gives uint8 images ``[N, H, W, C]`` and int64 labels ``[N]`` in a
``"train"`` and a ``"test"`` split (:class:`~linksim.data.base.Dataset`), and takes
the options ``image_size``, ``pad_to`` and ``channels``. A scenario names one in
``dataset.name`` and passes its options in ``dataset.params``::

    from linksim.data import get_dataset
    ds = get_dataset("embedded", pad_to=[32, 32])
    x, y = ds.load("test", 100, seed=0)

=======================  =================================================================
``embedded``             10,000 Fashion-MNIST images shipped with linksim (the default);
                         alias ``fashion_mnist_small``
``image_folder``         a folder of PNG/JPEG/... files, labels from class sub-folders
``cifar10``              CIFAR-10 python batches, or the Keras downloader
``mnist``                MNIST IDX files (or ``mnist.npz``), or the Keras downloader
``fashion_mnist``        Fashion-MNIST IDX files (Debian's copy by default), or the Keras downloader
=======================  =================================================================

See ``docs/datasets.md``.
"""

from __future__ import annotations

import inspect

from linksim.data.base import ArrayDataset, Dataset, DatasetError, as_tf_dataset, to_float
from linksim.data.cifar10 import CIFAR10
from linksim.data.embedded import EmbeddedFashionMNIST
from linksim.data.image_folder import ImageFolder
from linksim.data.mnist import MNIST, FashionMNIST
from linksim.registry import DATASETS

__all__ = ["get_dataset", "Dataset", "ArrayDataset", "DatasetError", "to_float", "as_tf_dataset",
           "EmbeddedFashionMNIST", "ImageFolder", "CIFAR10", "MNIST", "FashionMNIST"]


def get_dataset(name: str, **params) -> Dataset:
    """The data set registered under ``name``, built with the options ``params``.

    Parameters
    ----------
    name : str
        A registered name (``linksim list`` shows them): ``embedded``,
        ``fashion_mnist_small``, ``image_folder``, ``cifar10``, ``mnist``,
        ``fashion_mnist``, or one registered with ``DATASETS.register``.
    **params
        The data set's options (a scenario's ``dataset.params``).

    Output
    ------
    dataset : Dataset

    Raises
    ------
    UnknownNameError
        If no data set is registered under ``name``; the message lists the valid names.
    TypeError
        If ``params`` holds an option the data set does not take, or lacks a
        required one; the message lists its options.
    DatasetError
        If an option value is invalid, or a given ``path`` holds no data.
    """
    cls = DATASETS.get(name)
    try:
        DATASETS.check_options(name, params)
    except ValueError as exc:
        raise TypeError(str(exc)) from None
    sig = inspect.signature(cls)
    options = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    missing = [p.name for p in options if p.default is p.empty and p.name not in params]
    if missing:
        raise TypeError(f"dataset '{name}' needs the option(s) {', '.join(missing)} in dataset.params "
                        f"(its options: {', '.join(p.name for p in options)})")
    return cls(**params)
