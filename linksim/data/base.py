"""The data-set interface of linksim: splits, seeded subsets, image options, TF pipelines.

Every data set returns ``np.uint8`` images ``[N, H, W, C]`` and ``np.int64`` labels
``[N]`` (``-1`` where a data set has no labels), split into ``"train"`` and
``"test"``. :meth:`Dataset.load` picks a deterministic, seeded subset, stratified by
class where labels exist, and applies the options every data set takes:

``channels``
    1 (grey) or 3 (RGB); converts (BT.601 luma for RGB -> grey).
``image_size``
    ``[H, W]``; resizes with an antialiasing (Lanczos) filter.
``pad_to``
    ``[H, W]``; zero-pads centrally, after resizing (e.g. 28x28 -> 32x32, so that
    a stride-4 encoder fits).

:func:`to_float` maps images to ``float32`` in ``[0, 1]``; :func:`as_tf_dataset`
turns arrays into a batched, prefetching ``tf.data.Dataset``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from linksim.data.transforms import transform_images

__all__ = ["DatasetError", "Dataset", "ArrayDataset", "SPLITS", "to_float", "as_tf_dataset",
           "select_subset", "stratified_order"]

#: The splits every data set has.
SPLITS = ("train", "test")

#: The scenario field that sets the size of each split, for error messages.
_SIZE_FIELD = {"train": "dataset.train_size", "test": "dataset.test_size"}


class DatasetError(ValueError):
    """A data set cannot be provided as asked.

    The message says what is wrong and how to fix it: which file is missing and
    where to put it, which option value is invalid and what is allowed, or how
    many images a split holds when more were asked for.
    """


def to_float(x) -> np.ndarray:
    """Images as ``float32`` in ``[0, 1]``.

    Input
    -----
    x : [..., H, W, C], np.uint8 (or a float array already in [0, 1])

    Output
    ------
    x : [..., H, W, C], np.float32
        ``x / 255`` for ``uint8`` input; float input is only cast.

    Raises
    ------
    TypeError
        If ``x`` is neither ``uint8`` nor floating point.
    """
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=True)
    raise TypeError(f"to_float expects uint8 images (or floats in [0, 1]), got dtype {x.dtype}")


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    return int(seed)


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded order of all items in which every prefix is as class-balanced as possible.

    Each class ``c`` of ``n_c`` items is shuffled; its item of rank ``r`` gets the key
    ``(r + u_c) / n_c`` with a random offset ``u_c`` in ``[0, 1)``; items are sorted by
    key. Any prefix of length ``n`` then holds ``n * n_c / N`` items of class ``c``,
    give or take one, and the first ``n`` items are a subset of the first ``n + 1``.
    With a single class (e.g. unlabelled data, label ``-1``) this is a seeded shuffle.

    Input
    -----
    labels : [N], int
    seed : int
        Non-negative seed of ``numpy.random.default_rng``.

    Output
    ------
    order : [N], np.int64
        A permutation of ``range(N)``.
    """
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(_check_seed(seed))
    keys = np.empty(len(labels), np.float64)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        keys[members] = (np.arange(len(members)) + rng.random()) / len(members)
    return np.lexsort((rng.random(len(labels)), keys)).astype(np.int64)


def select_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a seeded, class-stratified subset of ``size`` items, in their original order.

    The first ``size`` items of :func:`stratified_order`, sorted. The same
    ``(labels, size, seed)`` always give the same subset, and a smaller ``size``
    gives a subset of a larger one.

    Input
    -----
    labels : [N], int
    size : int
        ``0 <= size <= N``.
    seed : int

    Output
    ------
    index : [size], np.int64
        Increasing indices into ``labels``.
    """
    n = len(labels)
    if not 0 <= size <= n:
        raise ValueError(f"size must be between 0 and {n} (got {size})")
    if size == n:
        return np.arange(n, dtype=np.int64)
    return np.sort(stratified_order(labels, seed)[:size])


def _check_size_option(name: str, value) -> Optional[tuple[int, int]]:
    if value is None:
        return None
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value))
    if not ok:
        raise DatasetError(f"{name} must be [H, W], two positive integers in pixels (got {value!r})")
    return int(value[0]), int(value[1])


def _check_channels_option(value) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or value not in (1, 3):
        raise DatasetError(f"channels must be 1 (grey) or 3 (RGB) (got {value!r})")
    return int(value)


class Dataset:
    """Base class of the data sets: labelled (or unlabelled) uint8 images in two splits.

    Subclasses register themselves (``@DATASETS.register("name")``), set
    :attr:`name` and :attr:`class_names`, and implement :meth:`native_shape`,
    :meth:`_labels` and :meth:`_images`.

    Parameters
    ----------
    image_size : None or [H, W]
        Resize every image to ``H x W`` pixels (Lanczos, antialiased; the aspect
        ratio is not kept). None keeps the native size.
    pad_to : None or [H, W]
        Zero-pad every image centrally to ``H x W`` after resizing. Must be at least
        the image size.
    channels : None, 1 or 3
        Convert to grey (1, BT.601 luma) or RGB (3, grey repeated). None keeps the
        native channels.

    Raises
    ------
    DatasetError
        If an option value is invalid (the message gives the allowed values).
    """

    #: The registry name.
    name: str = "dataset"
    #: Class names, indexed by label; empty for unlabelled data.
    class_names: tuple[str, ...] = ()

    def __init__(self, image_size=None, pad_to=None, channels=None):
        self.image_size = _check_size_option("image_size", image_size)
        self.pad_to = _check_size_option("pad_to", pad_to)
        self.channels = _check_channels_option(channels)
        if self.pad_to is not None and self.image_size is not None:
            self._check_pad_to(self.image_size)

    # ----------------------------------------------------------------- hooks
    def native_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the stored images, before the options apply."""
        raise NotImplementedError

    def _labels(self, split: str) -> np.ndarray:
        """All labels of ``split``: ``[N], np.int64`` (``-1`` for unlabelled images)."""
        raise NotImplementedError

    def _images(self, split: str, index: np.ndarray):
        """The stored images ``index`` of ``split``: ``[n, H, W, C] uint8``, or a list of ``[H_i, W_i, C_i]``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- public
    @property
    def num_classes(self) -> int:
        """Number of classes; 0 for unlabelled data."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the images :meth:`load` returns (the options applied).

        Raises
        ------
        DatasetError
            If ``pad_to`` is smaller than the images.
        """
        h, w, c = self.native_shape()
        if self.image_size is not None:
            h, w = self.image_size
        if self.channels is not None:
            c = self.channels
        if self.pad_to is not None:
            self._check_pad_to((h, w))
            h, w = self.pad_to
        return int(h), int(w), int(c)

    def count(self, split: str) -> int:
        """Number of images in ``split``."""
        return int(len(self._labels(self._check_split(split))))

    def load(self, split: str, size: Optional[int] = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of a split, or a seeded, class-stratified subset of it.

        Parameters
        ----------
        split : "train" or "test"
        size : None or int
            Number of images; None (default) returns the whole split in stored
            order. A smaller number picks a deterministic subset
            (:func:`select_subset`: the same seed gives the same images, with
            every class in proportion where labels exist).
        seed : int
            Non-negative seed of the subset.

        Output
        ------
        x : [size, H, W, C], np.uint8
            ``(H, W, C)`` is :attr:`image_shape`.
        y : [size], np.int64
            Labels in ``range(num_classes)``, or ``-1`` for unlabelled images.

        Raises
        ------
        ValueError
            If ``split`` is not "train" or "test", or ``size`` / ``seed`` is negative.
        DatasetError
            If ``size`` exceeds the images in the split, or the data cannot be read
            (the message says which file is missing and where to put it).
        """
        split = self._check_split(split)
        seed = _check_seed(seed)
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0):
            raise ValueError(f"size must be None (the whole split) or a non-negative integer (got {size!r})")
        labels = np.asarray(self._labels(split), np.int64)
        n = len(labels)
        if size is not None and size > n:
            raise DatasetError(f"asked for {size} {split} images, but data set '{self.name}' has only {n} "
                               f"{split} images; lower {_SIZE_FIELD[split]} to at most {n}")
        index = np.arange(n, dtype=np.int64) if size is None else select_subset(labels, int(size), seed)
        shape = self.image_shape
        if len(index) == 0:
            return np.zeros((0, *shape), np.uint8), np.zeros((0,), np.int64)
        try:
            x = transform_images(self._images(split, index), channels=self.channels,
                                 image_size=self.image_size, pad_to=self.pad_to)
        except ValueError as exc:
            if isinstance(exc, DatasetError):
                raise
            raise DatasetError(f"data set '{self.name}': {exc}") from None
        return x, labels[index].copy()

    def get_config(self) -> dict:
        """The constructor arguments: ``get_dataset(ds.name, **ds.get_config())`` rebuilds ``ds``."""
        return {"image_size": list(self.image_size) if self.image_size else None,
                "pad_to": list(self.pad_to) if self.pad_to else None,
                "channels": self.channels}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if v is not None)
        return f"{type(self).__name__}({opts})"

    # -------------------------------------------------------------- helpers
    @staticmethod
    def _check_split(split) -> str:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))} (got {split!r})")
        return split

    def _check_pad_to(self, size: Sequence[int]) -> None:
        if self.pad_to is not None and (self.pad_to[0] < size[0] or self.pad_to[1] < size[1]):
            raise DatasetError(f"pad_to {list(self.pad_to)} is smaller than the images ({size[0]}x{size[1]}); "
                               "pad_to must be at least the image size (use image_size to shrink the images)")


class ArrayDataset(Dataset):
    """A :class:`Dataset` whose splits are held in memory as arrays.

    Subclasses implement :meth:`_arrays` (and may cache what it returns).
    """

    def _arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x [N, H, W, C] uint8, y [N] int64)`` of ``split``."""
        raise NotImplementedError

    def _labels(self, split: str) -> np.ndarray:
        return self._arrays(split)[1]

    def _images(self, split: str, index: np.ndarray) -> np.ndarray:
        return self._arrays(split)[0][index]


def as_tf_dataset(x, y=None, *, batch_size: int = 64, shuffle: bool = False, seed: Optional[int] = None,
                  drop_remainder: bool = False):
    """A batched, prefetching ``tf.data.Dataset`` of float32 images in [0, 1] (with labels).

    The images stay ``uint8`` in the pipeline and are scaled batch by batch.

    Parameters
    ----------
    batch_size : int
        Images per batch (positive).
    shuffle : bool
        Shuffle the whole set, anew each epoch (``reshuffle_each_iteration``).
    seed : None or int
        Seed of the shuffle; None is not reproducible.
    drop_remainder : bool
        Drop a last, smaller batch.

    Input
    -----
    x : [N, H, W, C], np.uint8 (or float in [0, 1])
    y : None or [N], int
        Labels; when given, the elements are ``(images, labels)`` pairs.

    Output
    ------
    dataset : tf.data.Dataset
        Elements ``[batch, H, W, C], tf.float32`` in [0, 1], or pairs
        ``([batch, H, W, C], tf.float32; [batch], tf.int64)``.

    Raises
    ------
    ValueError
        If ``x`` is not a batch of images, ``y`` does not match it, float images
        leave [0, 1], or ``batch_size`` is not positive.
    """
    import tensorflow as tf

    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be images [N, H, W, C] (got shape {x.shape})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (got {batch_size!r})")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"x must be uint8 or float images in [0, 1] (got dtype {x.dtype})")
        if x.size and (np.nanmin(x) < 0.0 or np.nanmax(x) > 1.0):
            raise ValueError(f"float images must lie in [0, 1] (got [{np.nanmin(x):g}, {np.nanmax(x):g}])")
        x = x.astype(np.float32, copy=False)
    scale = x.dtype == np.uint8
    if y is not None:
        y = np.asarray(y, np.int64).reshape(-1)
        if len(y) != len(x):
            raise ValueError(f"y has {len(y)} labels for {len(x)} images")
        ds = tf.data.Dataset.from_tensor_slices((x, y))
    else:
        ds = tf.data.Dataset.from_tensor_slices(x)
    if shuffle:
        ds = ds.shuffle(max(1, len(x)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)

    def to_unit(images):
        images = tf.cast(images, tf.float32)
        return images / 255.0 if scale else images

    if y is not None:
        ds = ds.map(lambda a, b: (to_unit(a), b), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(to_unit, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
