"""Image transforms shared by every data set: channel conversion, resizing, central padding.

They act on ``np.uint8`` images ``[H, W, C]`` (or batches ``[N, H, W, C]``) and keep
that dtype. They are what the data-set options ``channels``, ``image_size`` and
``pad_to`` do, in that order (:meth:`linksim.data.base.Dataset.load`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PIL import Image

__all__ = ["convert_channels", "resize", "pad_centrally", "transform_images", "LUMA_WEIGHTS"]

#: ITU-R BT.601 luma weights (R, G, B) used for RGB -> grey, as Pillow's ``convert("L")``.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """Grey <-> RGB conversion of uint8 images.

    Grey to RGB repeats the grey value; RGB to grey takes the ITU-R BT.601 luma
    ``0.299 R + 0.587 G + 0.114 B``, rounded.

    Input
    -----
    x : [..., H, W, C], np.uint8
        ``C`` is 1 or 3.
    channels : int
        1 or 3.

    Output
    ------
    y : [..., H, W, channels], np.uint8
    """
    c = x.shape[-1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return np.repeat(x, 3, axis=-1)
    if c == 3 and channels == 1:
        grey = x.astype(np.float32) @ np.asarray(LUMA_WEIGHTS, np.float32)
        return np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None]
    raise ValueError(f"cannot convert images with {c} channels to {channels}; channels must be 1 or 3")


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize one uint8 image to ``size`` with Pillow's Lanczos filter (antialiased).

    Pillow widens the filter by the scale factor when it shrinks an image, so
    downscaling is antialiased. The aspect ratio is not kept.

    Input
    -----
    image : [H, W, C], np.uint8
    size : (int, int)
        Target ``(H, W)``.

    Output
    ------
    resized : [size[0], size[1], C], np.uint8
    """
    h, w, c = image.shape
    if (h, w) == tuple(size):
        return image
    pil = Image.fromarray(image[..., 0] if c == 1 else image, mode="L" if c == 1 else "RGB")
    out = np.asarray(pil.resize((size[1], size[0]), resample=Image.Resampling.LANCZOS))
    return out[..., None] if c == 1 else out


def pad_centrally(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Zero-pad images centrally to ``size`` (the extra pixel of an odd margin goes bottom/right).

    Input
    -----
    x : [N, H, W, C], np.uint8
    size : (int, int)
        Target ``(H', W')`` with ``H' >= H`` and ``W' >= W``.

    Output
    ------
    padded : [N, H', W', C], np.uint8

    Raises
    ------
    ValueError
        If ``size`` is smaller than the images.
    """
    h, w = x.shape[1:3]
    th, tw = size
    if th < h or tw < w:
        raise ValueError(f"pad_to {[th, tw]} is smaller than the images ({h}x{w}); pad_to must be at least "
                         "the image size (use image_size to shrink the images)")
    if (th, tw) == (h, w):
        return x
    top, left = (th - h) // 2, (tw - w) // 2
    return np.pad(x, ((0, 0), (top, th - h - top), (left, tw - w - left), (0, 0)))


def transform_images(images, *, channels: Optional[int] = None, image_size: Optional[tuple[int, int]] = None,
                     pad_to: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Apply ``channels``, then ``image_size``, then ``pad_to`` to a batch of images.

    Parameters
    ----------
    channels : None, 1 or 3
        Output channels; None keeps them.
    image_size : None or (int, int)
        Resize every image to ``(H, W)`` (:func:`resize`); None keeps the size.
    pad_to : None or (int, int)
        Zero-pad centrally to ``(H, W)`` (:func:`pad_centrally`); None: no padding.

    Input
    -----
    images : [N, H, W, C], np.uint8, or a sequence of [H_i, W_i, C_i], np.uint8
        A sequence may mix sizes only if ``image_size`` is given, and channel
        counts only if ``channels`` is given.

    Output
    ------
    x : [N, H', W', C'], np.uint8

    Raises
    ------
    ValueError
        If the images cannot be stacked into one array, or ``pad_to`` is too small.
    """
    if isinstance(images, np.ndarray):
        x = images if channels is None else convert_channels(images, channels)
        if image_size is not None and tuple(x.shape[1:3]) != tuple(image_size):
            x = np.stack([resize(im, image_size) for im in x]) if len(x) else \
                np.zeros((0, *image_size, x.shape[-1]), np.uint8)
    else:
        ims: Sequence[np.ndarray] = list(images)
        if channels is not None:
            ims = [convert_channels(im, channels) for im in ims]
        if image_size is not None:
            ims = [resize(im, image_size) for im in ims]
        shapes = sorted({im.shape for im in ims})
        if len(shapes) > 1:
            raise ValueError(f"images of different shapes {shapes} cannot be stacked; set image_size "
                             "(and channels) to make them equal")
        if not ims:
            raise ValueError("no images to stack; an empty batch needs an array [0, H, W, C]")
        x = np.stack(ims)
    if pad_to is not None:
        x = pad_centrally(x, pad_to)
    return np.ascontiguousarray(x, dtype=np.uint8)
