"""JPEG (ITU-T T.81 baseline) with Pillow's libjpeg, full files or abbreviated streams.

At 28x28 or 32x32 a JPEG file is mostly header: the JFIF, quantisation-table,
frame, Huffman-table and scan headers take 330 bytes for a grey image and 625 for
an RGB one (more than 3 bits per pixel), before any image data.  With
``headers: abbreviated`` the transmitter sends only what the receiver cannot
know: one quality byte and the entropy-coded scan; the receiver rebuilds the
headers, which depend only on the quality, the image size, the number of
components and the chroma subsampling (the standard Huffman tables of T.81
Annex K are used, not optimised ones), by encoding a dummy image with the same
settings, and splices the scan in.  The rebuilt file is byte-identical to the
full file, so both modes decode to the same pixels.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image

from linksim.codecs.base import ImageCodec, check_choice, check_image
from linksim.registry import CODECS

__all__ = ["JPEGCodec", "split_jpeg"]

_SOI, _EOI, _SOS = b"\xff\xd8", b"\xff\xd9", 0xDA


def split_jpeg(data: bytes) -> tuple[bytes, bytes]:
    """Split a baseline JPEG file into its headers and its entropy-coded scan.

    Walks the marker segments from SOI up to and including the (single) SOS
    segment; the scan is everything after it up to the final EOI marker.

    Parameters
    ----------
    data : bytes
        A JPEG file with one scan (Pillow's baseline output).

    Output
    ------
    (headers, scan) : (bytes, bytes)
        ``data == headers + scan + b"\\xff\\xd9"``.

    Raises
    ------
    ValueError
        If ``data`` is not a single-scan JPEG file.
    """
    if data[:2] != _SOI or data[-2:] != _EOI:
        raise ValueError("not a JPEG file (SOI / EOI missing)")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {i}")
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2:i + 4], "big")
        end = i + 2 + length
        if marker == _SOS:
            scan = data[end:-2]
            if b"\xff\xda" in scan:  # 0xFF in entropy-coded data is always followed by 0x00 or RSTn
                raise ValueError("a JPEG file with several scans (progressive?) cannot be abbreviated")
            return data[:end], scan
        i = end
    raise ValueError("JPEG file without a scan")


@CODECS.register("jpeg")
class JPEGCodec(ImageCodec):
    """JPEG baseline (Pillow / libjpeg), quality 1..95, full files or abbreviated streams.

    Parameters
    ----------
    subsampling : {"4:2:0", "4:2:2", "4:4:4"}
        Chroma subsampling of RGB images (default "4:2:0", libjpeg's default);
        grey images have one component and no subsampling.
    headers : {"full", "abbreviated"}
        ``full`` (default) sends the whole JPEG file.  ``abbreviated`` sends one
        byte (the quality, 1..95) and the entropy-coded scan data, i.e. the file
        without its headers (SOI, APP0, DQT, SOF0, DHT, SOS) and without the EOI
        marker; the receiver rebuilds them (see the module docstring).
    optimize : bool
        Optimised (image-specific) Huffman tables, ``full`` mode only (default
        False: the standard tables).  They shrink a tiny file by about 150 bytes;
        the decoded pixels are the same.

    Raises
    ------
    ValueError
        For an option value not listed above (the message names the allowed
        values), or ``optimize=True`` with ``headers="abbreviated"``.

    Notes
    -----
    ``qualities`` is 1..95 (Pillow advises against more than 95).  The payload
    of ``abbreviated`` mode is ``bytes([quality]) + scan``.
    """

    name = "jpeg"
    qualities = tuple(range(1, 96))
    SUBSAMPLINGS = ("4:2:0", "4:2:2", "4:4:4")
    HEADERS = ("full", "abbreviated")

    def __init__(self, subsampling: str = "4:2:0", headers: str = "full", optimize: bool = False):
        check_choice("jpeg", "subsampling", subsampling, self.SUBSAMPLINGS)
        check_choice("jpeg", "headers", headers, self.HEADERS)
        check_choice("jpeg", "optimize", optimize, (False, True))
        if optimize and headers == "abbreviated":
            raise ValueError("jpeg: optimize must be False with headers: abbreviated (the receiver "
                             "rebuilds the standard Huffman tables); allowed: optimize False with "
                             "abbreviated, True or False with full")
        self.subsampling = subsampling
        self.headers = headers
        self.optimize = bool(optimize)

    def get_config(self) -> dict:
        return {"type": self.name, "subsampling": self.subsampling, "headers": self.headers,
                "optimize": self.optimize}

    def smaller_options(self) -> list[str]:
        """``headers: abbreviated`` (about 600 bytes less), else ``optimize: true`` (about 150)."""
        if self.headers != "full":
            return []
        return ["headers: abbreviated"] + ([] if self.optimize else ["optimize: true"])

    # -- encoder ---------------------------------------------------------------

    def _jpeg_file(self, image: np.ndarray, quality: int) -> bytes:
        """The whole JPEG file of ``image`` [H, W, C] uint8 at ``quality``."""
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=int(quality), subsampling=self.subsampling,
                 optimize=self.optimize, progressive=False)
        return buf.getvalue()

    def encode(self, image: np.ndarray, quality: int) -> bytes:
        """Encode ``image`` [H, W, C] uint8 at ``quality`` (1..95): the JPEG file or abbreviated stream."""
        image = check_image(image)
        if isinstance(quality, bool) or quality not in self.qualities:
            raise ValueError(f"jpeg: quality must be an integer in 1..95 (got {quality!r})")
        data = self._jpeg_file(image, quality)
        if self.headers == "full":
            return data
        headers, scan = split_jpeg(data)
        expected = _headers_for(int(quality), image.shape, self.subsampling)
        if headers != expected:  # the receiver could not rebuild this file
            raise RuntimeError("jpeg: the headers of the encoded file differ from those the receiver "
                               "rebuilds; abbreviated mode cannot be used with this libjpeg")
        return bytes([int(quality)]) + scan

    # -- decoder ---------------------------------------------------------------

    def rebuild_file(self, payload: bytes, shape) -> bytes:
        """The full JPEG file of an abbreviated payload: rebuilt headers + scan + EOI.

        Raises
        ------
        ValueError
            If the quality byte is not in 1..95.
        """
        quality = payload[0]
        if quality not in self.qualities:
            raise ValueError(f"quality byte {quality} outside 1..95")
        h, w, c = shape
        return _headers_for(quality, (h, w, c), self.subsampling) + payload[1:] + _EOI

    def decode(self, payload: bytes, shape) -> np.ndarray:
        h, w, c = shape
        data = payload if self.headers == "full" else self.rebuild_file(payload, shape)
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
            # check the size the (possibly damaged) headers announce before decoding
            if im.size != (w, h) or im.mode not in ("L", "RGB"):
                raise ValueError(f"decoded JPEG is {im.size} {im.mode}, expected {(w, h)}")
            im.load()
            out = np.asarray(im, dtype=np.uint8)
        return out[..., None] if out.ndim == 2 else out


@lru_cache(maxsize=4096)
def _headers_for(quality: int, shape: tuple, subsampling: str) -> bytes:
    """The JPEG headers (SOI .. SOS segment) Pillow writes for a quality, shape and subsampling.

    They do not depend on the pixels: quantisation tables follow from the
    quality, the standard Huffman tables are fixed, the frame header holds the
    size, components and sampling factors.  Computed by encoding a black image.
    """
    h, w, c = (int(s) for s in shape)
    dummy = np.zeros((h, w) if c == 1 else (h, w, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(dummy).save(buf, "JPEG", quality=int(quality), subsampling=subsampling,
                                optimize=False, progressive=False)
    return split_jpeg(buf.getvalue())[0]
