"""The image-codec interface of linksim and rate control to a bit budget.

An :class:`ImageCodec` turns one ``np.uint8`` image ``[H, W, C]`` (``C`` = 1 grey
or 3 RGB) into a payload of bytes at a given quality parameter, and back.  Every
codec lists the quality parameters it searches, in :attr:`ImageCodec.qualities`,
ordered so that a later one gives a bigger payload in general.

:func:`encode_batch` is the rate control of a separation (SSCC) transmitter: for
each image it picks the best quality whose payload fits a bit budget, by a binary
search over the qualities.

Payloads are remembered in memory per codec object and, when a source cache is
active (:mod:`linksim.codecs.cache`), on disk, so re-runs skip the searches.

Bits are counted on the payload exactly as sent: ``bits == 8 * len(payload)``.
The receiver is assumed to know the codec, its options and the image shape
``(H, W, C)``; every other byte it needs is in the payload (see
``docs/codecs.md`` for which header bytes each codec sends).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from linksim.codecs import cache as source_cache

__all__ = ["EncodedImage", "ImageCodec", "encode_batch", "check_choice", "check_image",
           "rgb_to_grey", "match_channels"]


class _Payloads(dict):
    """One image's remembered ``{quality: payload}``, with what came from and goes to the disk cache."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key             # the image digest
        self.consulted = None      # the SourceCache last read for this image
        self.from_disk: set = set()  # qualities read from disk and not used yet
        self.new: set = set()      # qualities encoded and not yet written to the disk cache


@dataclass(frozen=True)
class EncodedImage:
    """One rate-controlled image.

    Attributes
    ----------
    payload : bytes
        What the codec sends; ``b""`` when not even the lowest quality fits.
    bits : int
        ``8 * len(payload)``, the bits the receiver needs.
    quality : int | float | None
        The quality parameter chosen (one of the codec's ``qualities``), ``None``
        when nothing fits.
    """

    payload: bytes
    bits: int
    quality: Optional[Any]


def check_choice(codec: str, option: str, value, allowed: Sequence) -> None:
    """Raise a ValueError naming ``allowed`` unless ``value`` is one of them.

    Raises
    ------
    ValueError
        ``"<codec>: <option> must be one of a, b, c (got x)"``.
    """
    try:  # True == 1 in Python: a bool only matches a bool
        ok = any(bool(value == a) and isinstance(value, bool) == isinstance(a, bool) for a in allowed)
    except Exception:  # noqa: BLE001 - e.g. an array compared with a string
        ok = False
    if not ok:
        raise ValueError(f"{codec}: {option} must be one of {', '.join(str(a) for a in allowed)} "
                         f"(got {value!r})")


def check_image(image) -> np.ndarray:
    """Validate one image for encoding.

    Input
    -----
    image : [H, W, C], np.uint8, C in {1, 3}

    Output
    ------
    image : [H, W, C], np.uint8, C-contiguous

    Raises
    ------
    ValueError
        If the image is not ``uint8`` ``[H, W, 1]`` or ``[H, W, 3]`` with H, W >= 1.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be np.uint8 (got dtype {image.dtype})")
    if image.ndim != 3 or image.shape[-1] not in (1, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"an image must be [H, W, C] with C in 1, 3 (got shape {image.shape})")
    return np.ascontiguousarray(image)


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma ``0.299 R + 0.587 G + 0.114 B``, rounded: [H, W, 3] uint8 -> [H, W, 1] uint8."""
    y = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)[..., None]


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grey <-> RGB: [H, W, 1 or 3] -> [H, W, channels] (grey is repeated; RGB -> BT.601 luma)."""
    if image.shape[-1] == channels:
        return image
    if image.shape[-1] == 1 and channels == 3:
        return np.repeat(image, 3, axis=-1)
    if image.shape[-1] == 3 and channels == 1:
        return rgb_to_grey(image)
    raise ValueError(f"cannot convert {image.shape[-1]} channels to {channels}")


class ImageCodec:
    """Base class of the image codecs: encode at a quality, decode, never fail on garbage.

    A subclass sets :attr:`name` (its registry name) and :attr:`qualities`, and
    implements :meth:`encode`, :meth:`decode` and :meth:`get_config`.  It must be
    deterministic: the same image at the same quality always gives the same
    payload (rate control relies on it).

    Attributes
    ----------
    name : str
        The registry name (``jpeg``, ``webp``, ...).
    qualities : tuple
        The quality parameters :func:`encode_batch` searches, ordered so that a
        later one gives a bigger payload in general (not always: rate control
        does not assume it).
    """

    name: str = ""
    qualities: tuple = ()

    #: images whose payloads per quality are remembered (keyed by content, see
    #: :meth:`_memo_for`), so that rate control at several budgets, e.g. one per
    #: SNR point with the ideal code, encodes each image and quality once
    memo_images: int = 4096

    #: part of the source-cache key (:mod:`linksim.codecs.cache`): bump it when the
    #: payloads change for a reason the cache cannot see (its key already covers the
    #: options, the codec's source files and the encoding libraries' versions)
    cache_version: str = "1"

    def encode(self, image: np.ndarray, quality) -> bytes:  # pragma: no cover - interface
        """Encode one image at one quality.

        Parameters
        ----------
        image : [H, W, C], np.uint8, C in {1, 3}
        quality : one of :attr:`qualities`

        Output
        ------
        payload : bytes
        """
        raise NotImplementedError

    def decode(self, payload: bytes, shape) -> np.ndarray:  # pragma: no cover - interface
        """Decode a payload; may raise on a damaged one (use :meth:`safe_decode` on a link).

        Parameters
        ----------
        payload : bytes
        shape : (H, W, C)
            The shape of the image that was sent; the receiver knows it.

        Output
        ------
        image : [H, W, C'], np.uint8
            ``C'`` may differ from ``C`` (a decoder's native grey or RGB);
            :meth:`safe_decode` converts.
        """
        raise NotImplementedError

    def get_config(self) -> dict:  # pragma: no cover - interface
        """``{"type": name, **constructor arguments}``; ``CODECS.create(**cfg)`` rebuilds the codec."""
        raise NotImplementedError

    def smaller_options(self) -> list[str]:
        """Codec options (as a scenario writes them) that would make its smallest payload smaller.

        Named by the warning of a separation scheme whose bit budget no image fits;
        the default names ``headers: abbreviated`` for a codec sending full headers.
        """
        return ["headers: abbreviated"] if getattr(self, "headers", None) == "full" else []

    def smallest_payload_bits(self, image: np.ndarray) -> int:
        """Bits of ``image``'s payload at the lowest quality (the first of :attr:`qualities`)."""
        cache = source_cache.active()
        entry = self._memo_for(image, cache)
        bits = 8 * len(self._payload(image, entry, self.qualities[0], cache))
        self._keep(entry, cache)
        return bits

    def safe_decode(self, payload, shape) -> Optional[np.ndarray]:
        """Decode whatever bytes arrive; never raises.

        Parameters
        ----------
        payload : bytes (or anything: non-bytes input gives None)
        shape : (H, W, C)

        Output
        ------
        image : [H, W, C], np.uint8, or None
            None for an empty payload, any decoder error, or a decoded image whose
            size is not ``H x W``.  Grey / RGB output is converted to ``C``
            channels.
        """
        try:
            h, w, c = (int(s) for s in shape)
            if not isinstance(payload, (bytes, bytearray, memoryview)) or len(payload) == 0:
                return None
            if h < 1 or w < 1 or c not in (1, 3):
                return None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = self.decode(bytes(payload), (h, w, c))
            img = np.asarray(img)
            if img.ndim == 2:
                img = img[..., None]
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[:2] != (h, w) or img.shape[2] not in (1, 3):
                return None
            return np.ascontiguousarray(match_channels(img, c))
        except Exception:  # noqa: BLE001 - a damaged payload may make a decoder raise anything
            return None

    # -- rate control support -------------------------------------------------

    def _memo_for(self, image: np.ndarray, cache=None) -> "_Payloads":
        """The remembered ``{quality: payload}`` of an image (keyed by its dtype, shape and bytes).

        When ``cache`` (a :class:`~linksim.codecs.cache.SourceCache`) is given and has not been
        consulted for this image yet, its payloads on disk are added to the memo.
        """
        memo = self.__dict__.setdefault("_memo", OrderedDict())
        key = source_cache.image_digest(image)
        entry = memo.get(key)
        if entry is None:
            entry = memo[key] = _Payloads(key)
            while len(memo) > self.memo_images:
                memo.popitem(last=False)
        else:
            memo.move_to_end(key)
        if cache is not None and entry.consulted is not cache:
            entry.consulted = cache
            for q, p in cache.load(self, key).items():
                if entry.get(q) is None:
                    entry[q] = p
                    entry.from_disk.add(q)
        return entry

    def _payload(self, image: np.ndarray, entry: "_Payloads", quality, cache=None) -> bytes:
        """The payload of ``image`` at ``quality``: remembered, cached on disk, else encoded."""
        p = entry.get(quality)
        if p is None:
            p = entry[quality] = bytes(self.encode(image, quality))
            entry.new.add(quality)
            if cache is not None:
                cache.count("misses")
        elif quality in entry.from_disk:
            entry.from_disk.discard(quality)  # counted once: an encode the disk cache saved
            if cache is not None:
                cache.count("hits")
        return p

    def _keep(self, entry: "_Payloads", cache=None) -> None:
        """Write the payloads ``entry`` encoded since it was last kept to the disk cache."""
        if cache is not None and entry.new:
            cache.save(self, entry.key, {q: entry[q] for q in entry.new})
        entry.new.clear()

    def __repr__(self) -> str:
        cfg = self.get_config()
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if k != "type")
        return f"{type(self).__name__}({args})"


def _fit_one(codec: ImageCodec, image: np.ndarray, budget_bits: int, cache=None) -> EncodedImage:
    """Best quality whose payload fits ``budget_bits`` for one image (see :func:`encode_batch`)."""
    entry = codec._memo_for(image, cache)
    try:
        return _search(codec, image, budget_bits, entry, cache)
    finally:
        codec._keep(entry, cache)


def _search(codec: ImageCodec, image: np.ndarray, budget_bits: int, entry: "_Payloads", cache) -> EncodedImage:
    qualities = codec.qualities

    def payload(i: int) -> bytes:
        return codec._payload(image, entry, qualities[i], cache)

    def fits(i: int) -> bool:
        return 8 * len(payload(i)) <= budget_bits

    if not qualities or not fits(0):
        return EncodedImage(b"", 0, None)
    n = len(qualities)
    # invariant: fits(lo); hi is the first index not yet known to fit
    lo, hi = 0, n - 1
    if fits(hi):
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    # file size is not always monotone in quality: lo fits by construction, but
    # check again and scan downwards should a codec ever misbehave
    i = lo
    while i >= 0 and not fits(i):
        i -= 1
    if i < 0:  # pragma: no cover - fits(0) was checked above
        return EncodedImage(b"", 0, None)
    p = payload(i)
    return EncodedImage(p, 8 * len(p), qualities[i])


def encode_batch(codec: ImageCodec, images, budget_bits: int, cache=None) -> list[EncodedImage]:
    """Rate control: encode each image at the best quality that fits a bit budget.

    For each image, a binary search over ``codec.qualities`` finds the highest
    quality whose payload fits (``8 * len(payload) <= budget_bits``), assuming
    the payload grows with the quality.  Where it does not (a codec's size is not
    always monotone), the search may settle below the best fitting quality but
    never above the budget: it only ever keeps a quality whose payload it has
    measured to fit.  If even the lowest quality does not fit, the image gets
    ``EncodedImage(b"", 0, None)``.

    Payloads are remembered per image content and quality (encoders are
    deterministic), so a second call at another budget re-encodes little.  With a
    source cache (:mod:`linksim.codecs.cache`) they are also kept on disk, so a
    later process (a re-run, a resumed run, another SNR grid) encodes nothing it
    has encoded before; results are identical with or without it.

    Parameters
    ----------
    codec : ImageCodec
    images : [B, H, W, C], np.uint8, C in {1, 3}
    budget_bits : int
        Bits available per image (>= 0).
    cache : SourceCache | False | None
        The disk cache of payloads: None (default) uses the active one
        (:func:`linksim.codecs.cache.active`; none unless a run activated one or
        ``$LINKSIM_SOURCE_CACHE`` names a folder), False uses none.

    Output
    ------
    encoded : list of B :class:`EncodedImage`
        ``encoded[i].bits <= budget_bits`` always.

    Raises
    ------
    ValueError
        If ``images`` is not ``uint8 [B, H, W, C]`` with C in {1, 3}, or
        ``budget_bits`` is negative or not an integer.
    """
    if isinstance(budget_bits, bool) or not isinstance(budget_bits, (int, np.integer)):
        raise ValueError(f"budget_bits must be a non-negative integer (got {budget_bits!r})")
    if budget_bits < 0:
        raise ValueError(f"budget_bits must be a non-negative integer (got {budget_bits!r})")
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C] (got shape {images.shape})")
    if cache is None:
        cache = source_cache.active()
    cache = cache or None  # False: no disk cache
    return [_fit_one(codec, check_image(img), int(budget_bits), cache) for img in images]
