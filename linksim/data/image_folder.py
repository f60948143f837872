"""A folder of image files (PNG, JPEG, ... anything Pillow reads), e.g. the Kodak set.

Layouts understood (``path`` is the folder)::

    path/*.png                              unlabelled images, split by test_fraction
    path/<class>/*.png                      labelled by sub-folder name, split by test_fraction
    path/train/..., path/test/...           the given split; each as one of the layouts above

Labels come from class sub-folders (sorted names -> 0, 1, ...); images directly in
a folder are unlabelled (label ``-1``, ``num_classes`` 0). Files and folders whose
names start with ``.`` are skipped; class sub-folders are searched recursively.

Bad files are an error, never skipped: a file named like an image (by its
extension) that is empty, truncated, not an image, or larger than
:data:`MAX_IMAGE_PIXELS` (a decompression bomb) stops the run with a
:class:`~linksim.data.base.DatasetError` naming the file, so the test set is never
silently smaller than asked.  Sizes are checked from the file headers before any
image is decoded.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from linksim.data.base import SPLITS, Dataset, DatasetError, stratified_order
from linksim.registry import DATASETS

__all__ = ["ImageFolder", "IMAGE_EXTENSIONS", "MAX_IMAGE_PIXELS", "read_image"]

#: Largest image read, in pixels (H * W): Pillow's own decompression-bomb limit
#: (89,478,485, about 9459 x 9459); a larger file is an error naming it.
MAX_IMAGE_PIXELS = 89_478_485


def _readable_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN and fmt not in ("EPS", "PDF"))


#: File extensions read as images (those Pillow can open).
IMAGE_EXTENSIONS = _readable_extensions()

_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _is_image(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS


def _unreadable(path, exc: BaseException) -> DatasetError:
    """The error of an image file Pillow cannot read, naming the file and the likely cause."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = None
    if size == 0:
        why = "the file is empty (0 bytes)"
    elif isinstance(exc, UnidentifiedImageError):
        why = "it is not an image file Pillow can read (only its name looks like one)"
    elif isinstance(exc, Image.DecompressionBombError):
        why = f"it is larger than the {MAX_IMAGE_PIXELS:,}-pixel limit (a decompression bomb?)"
    elif "truncat" in str(exc).lower() or isinstance(exc, EOFError):
        why = f"the file is truncated ({exc})"
    else:
        why = f"{type(exc).__name__}: {exc}"
    return DatasetError(f"cannot read image {path}: {why}; remove or replace the file")


def _check_pixels(path, im) -> None:
    if im.width * im.height > MAX_IMAGE_PIXELS:
        raise DatasetError(f"image {path} is {im.width}x{im.height} = {im.width * im.height:,} pixels, more than "
                           f"the limit of {MAX_IMAGE_PIXELS:,} pixels (a decompression bomb?); remove the file or "
                           "use smaller images")


def _open(path):
    """``Image.open`` with Pillow's decompression-bomb warning silenced (linksim checks the size itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except Image.DecompressionBombError:
            # read only the header again, without Pillow's check, to name the size
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = limit
            with im:
                _check_pixels(path, im)
            raise


@contextmanager
def _reading(path):
    """The opened image, its size checked; any failure of Pillow while it is read is a
    :class:`DatasetError` naming the file and the cause (:func:`_unreadable`)."""
    try:
        with _open(path) as im:
            _check_pixels(path, im)
            yield im
    except DatasetError:
        raise
    except Exception as exc:  # Pillow's plugins raise many kinds (OSError, SyntaxError, struct.error, ...)
        raise _unreadable(path, exc) from None


def read_image(path, channels: int) -> np.ndarray:
    """Read one image file as uint8 ``[H, W, channels]`` (alpha dropped, 16-bit scaled to 8).

    Input
    -----
    path : str or path-like
    channels : int
        1 (grey) or 3 (RGB); a grey file read with 3 channels is repeated.

    Output
    ------
    image : [H, W, channels], np.uint8

    Raises
    ------
    DatasetError
        If Pillow cannot read the file (empty, truncated, not an image), or it has more than
        :data:`MAX_IMAGE_PIXELS` pixels (the message names the file).
    """
    with _reading(path) as im:
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
            a = np.asarray(im, dtype=np.float64)
            scale = 257.0 if a.max(initial=0) > 255 else 1.0
            im = Image.fromarray(np.clip(np.rint(a / scale), 0, 255).astype(np.uint8), mode="L")
        out = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    return out[..., None] if channels == 1 else out


def _scan_images(folder: Path) -> tuple[list[Path], dict[str, list[Path]]]:
    """Images directly in ``folder``, and those of each non-hidden sub-folder (recursive)."""
    loose, classes = [], {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = sorted(p for p in entry.rglob("*") if _is_image(p)
                           and not any(part.startswith(".") for part in p.relative_to(entry).parts))
            if files:
                classes[entry.name] = files
        elif _is_image(entry):
            loose.append(entry)
    return loose, classes


@DATASETS.register("image_folder")
class ImageFolder(Dataset):
    """Images from a folder of files (PNG, JPEG, ...), labelled by class sub-folder if there are any.

    Parameters
    ----------
    path : str or path-like
        The folder (``~`` is expanded). See the module docstring for the layouts.
    test_fraction : float
        Without ``train/`` and ``test/`` sub-folders: the share of images put in the
        test split, in ``[0, 1]`` (default 0.2; 1.0 makes every image a test image,
        e.g. for an evaluation-only set such as Kodak). The split is stratified by
        class and seeded by ``split_seed``, independent of :meth:`load`'s seed.
    split_seed : int
        Seed of that split (default 0).
    image_size : None or [H, W]
        Resize every image; needed when the files differ in size.
    pad_to, channels
        As for every data set. Without ``channels``, images are RGB if any file
        is in colour, else grey.

    Raises
    ------
    DatasetError
        If the folder does not exist or holds no images, mixes loose images with
        class sub-folders, the files differ in size and ``image_size`` is not set
        (the message lists the sizes), or an option is invalid.
    """

    name = "image_folder"

    def __init__(self, path, test_fraction: float = 0.2, split_seed: int = 0, image_size=None, pad_to=None,
                 channels=None):
        super().__init__(image_size=image_size, pad_to=pad_to, channels=channels)
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
                or not 0.0 <= test_fraction <= 1.0:
            raise DatasetError(f"test_fraction must be a number in [0, 1] (got {test_fraction!r})")
        if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
            raise DatasetError(f"split_seed must be a non-negative integer (got {split_seed!r})")
        self.path = Path(os.path.expanduser(os.fspath(path)))
        self.test_fraction = float(test_fraction)
        self.split_seed = split_seed
        if not self.path.is_dir():
            raise DatasetError(f"image folder not found: {self.path} (dataset.params.path must be a folder of "
                               "images, or of class sub-folders of images)")
        self._index = self._build_index()
        self.image_shape  # noqa: B018 - checks sizes and pad_to now

    # --------------------------------------------------------------- indexing
    def _scan_split_root(self, folder: Path) -> tuple[list[Path], list]:
        """Files of one folder and their class names (None when unlabelled)."""
        loose, classes = _scan_images(folder)
        if loose and classes:
            raise DatasetError(f"{folder} holds images directly ({loose[0].name}, ...) and in sub-folders "
                               f"({', '.join(sorted(classes))}); put every image in a class sub-folder, or all "
                               "of them directly in the folder")
        if classes:
            pairs = [(p, c) for c, files in classes.items() for p in files]
            return [p for p, _ in pairs], [c for _, c in pairs]
        return loose, [None] * len(loose)

    def _build_index(self) -> dict:
        split_dirs = {s: self.path / s for s in SPLITS if (self.path / s).is_dir()}
        files, names = {}, {}
        if split_dirs:
            others = [e.name for e in self.path.iterdir()
                      if not e.name.startswith(".") and e.name not in SPLITS and (e.is_dir() or _is_image(e))]
            if others:
                warnings.warn(f"{self.path} has train/ or test/ sub-folders, so only those are read; ignoring "
                              f"{', '.join(sorted(others)[:5])}{', ...' if len(others) > 5 else ''}", stacklevel=3)
            for s in SPLITS:
                files[s], names[s] = self._scan_split_root(split_dirs[s]) if s in split_dirs else ([], [])
            labelled = {s: names[s][0] is not None for s in SPLITS if names[s]}
            if len(set(labelled.values())) > 1:
                with_classes = [s for s, v in labelled.items() if v][0]
                raise DatasetError(f"{self.path}: {with_classes}/ has class sub-folders but the other split "
                                   "holds loose images; use the same layout in train/ and test/")
        else:
            all_files, all_names = self._scan_split_root(self.path)
            n = len(all_files)
            n_test = int(round(self.test_fraction * n))
            if n >= 2 and 0.0 < self.test_fraction < 1.0:
                n_test = min(max(n_test, 1), n - 1)
            order = stratified_order(np.asarray(_codes(all_names), np.int64), self.split_seed)
            test = np.zeros(n, bool)
            test[order[:n_test]] = True
            for s, mask in (("train", ~test), ("test", test)):
                files[s] = [f for f, m in zip(all_files, mask) if m]
                names[s] = [c for c, m in zip(all_names, mask) if m]
        if not files["train"] and not files["test"]:
            exts = ", ".join(sorted(e for e in IMAGE_EXTENSIONS if e in (".png", ".jpg", ".jpeg", ".bmp", ".webp",
                                                                          ".tif", ".tiff", ".gif", ".ppm")))
            raise DatasetError(f"no images found in {self.path} (looked for {exts}, ... files, directly or in "
                               "sub-folders)")
        labelled = any(c is not None for s in SPLITS for c in names[s])
        self.class_names = tuple(sorted({c for s in SPLITS for c in names[s]})) if labelled else ()
        code = {c: i for i, c in enumerate(self.class_names)}
        return {s: (files[s], np.array([code.get(c, -1) for c in names[s]], np.int64)) for s in SPLITS}

    @cached_property
    def _file_info(self) -> tuple[Counter, bool, dict]:
        """Counts of the sizes ``(H, W)`` of all files, whether any is in colour, an example file per size."""
        sizes: Counter = Counter()
        example: dict = {}
        colour = False
        for s in SPLITS:
            for p in self._index[s][0]:
                with _reading(p) as im:
                    hw = (im.height, im.width)
                    colour = colour or im.mode not in _GREY_MODES
                sizes[hw] += 1
                example.setdefault(hw, p)
        return sizes, colour, example

    # ------------------------------------------------------------------ hooks
    def native_shape(self) -> tuple[int, int, int]:
        sizes, colour, example = self._file_info
        c = 3 if colour else 1
        if len(sizes) > 1:
            if self.image_size is not None:
                return (*self.image_size, c)
            found = "; ".join(f"{h}x{w} in {n} file(s), e.g. {example[(h, w)].relative_to(self.path)}"
                              for (h, w), n in sizes.most_common())
            raise DatasetError(f"the images in {self.path} differ in size (HxW): {found}. Set "
                               "dataset.params.image_size: [H, W] to resize them all to one size")
        (h, w), = sizes
        return h, w, c

    def _labels(self, split: str) -> np.ndarray:
        return self._index[split][1]

    def _images(self, split: str, index: np.ndarray) -> list[np.ndarray]:
        c = self.native_shape()[2]
        files = self._index[split][0]
        return [read_image(files[i], c) for i in index]

    def files(self, split: str) -> list[Path]:
        """The image files of ``split``, in stored order (:meth:`load` with ``size=None`` follows it)."""
        return list(self._index[self._check_split(split)][0])

    def get_config(self) -> dict:
        return {"path": str(self.path), "test_fraction": self.test_fraction, "split_seed": self.split_seed,
                **super().get_config()}


def _codes(names: list) -> list[int]:
    """Integer codes of class names for stratification (-1 for None), by sorted name."""
    order = {c: i for i, c in enumerate(sorted({c for c in names if c is not None}))}
    return [order.get(c, -1) for c in names]
