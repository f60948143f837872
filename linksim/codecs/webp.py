"""WebP (lossy, VP8 intra) with Pillow's libwebp."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from linksim.codecs.base import ImageCodec, check_choice, check_image
from linksim.registry import CODECS

__all__ = ["WebPCodec", "check_vp8_header"]


def check_vp8_header(data: bytes, h: int, w: int) -> None:
    """Check that ``data`` is a simple lossy WebP file of an h x w picture before libwebp sees it.

    Checks the RIFF / WEBP / ``VP8 `` chunk layout, the VP8 key-frame start code
    and the frame size (so that a damaged header cannot make the decoder allocate
    a huge canvas).

    Raises
    ------
    ValueError
        If any of these differ.
    """
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:16] != b"WEBPVP8 ":
        raise ValueError("not a simple lossy WebP file")
    riff_size = int.from_bytes(data[4:8], "little")
    chunk_size = int.from_bytes(data[16:20], "little")
    if riff_size + 8 != len(data) or chunk_size + 20 > len(data):
        raise ValueError("WebP chunk sizes do not match the file length")
    if data[20] & 1 or data[23:26] != b"\x9d\x01\x2a":  # key frame, VP8 start code
        raise ValueError("not a VP8 key frame")
    fw = int.from_bytes(data[26:28], "little") & 0x3FFF
    fh = int.from_bytes(data[28:30], "little") & 0x3FFF
    if (fw, fh) != (w, h):
        raise ValueError(f"WebP frame is {fw}x{fh}, expected {w}x{h}")


@CODECS.register("webp")
class WebPCodec(ImageCodec):
    """Lossy WebP (Pillow / libwebp), quality 0..100; the whole file is sent.

    The file is a RIFF container (12 bytes), a VP8 chunk header (8 bytes) and the
    VP8 key frame, whose own header takes 10 bytes: about 30 bytes of headers,
    all counted.  WebP codes colour as YCbCr 4:2:0; a grey image is sent as an RGB
    image with R = G = B (neutral chroma costs a few bytes) and decoded back to
    grey with the BT.601 luma.

    Parameters
    ----------
    method : {0, 1, 2, 3, 4, 5, 6}
        libwebp's effort: 0 fast, 6 slowest and smallest (default 6; cwebp's
        default is 4).  At 28x28 even 6 takes well under a millisecond.

    Raises
    ------
    ValueError
        If ``method`` is not an integer 0..6 (the message names the allowed values).
    """

    name = "webp"
    qualities = tuple(range(0, 101))
    METHODS = (0, 1, 2, 3, 4, 5, 6)

    def __init__(self, method: int = 6):
        check_choice("webp", "method", method, self.METHODS)
        self.method = int(method)

    def get_config(self) -> dict:
        return {"type": self.name, "method": self.method}

    def encode(self, image: np.ndarray, quality: int) -> bytes:
        """Encode ``image`` [H, W, C] uint8 at ``quality`` (0..100): the WebP file."""
        image = check_image(image)
        if isinstance(quality, bool) or quality not in self.qualities:
            raise ValueError(f"webp: quality must be an integer in 0..100 (got {quality!r})")
        rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "WEBP", quality=int(quality), method=self.method, lossless=False,
                                  exact=False)
        return buf.getvalue()

    def decode(self, payload: bytes, shape) -> np.ndarray:
        h, w, _ = shape
        check_vp8_header(payload, h, w)
        with Image.open(io.BytesIO(payload), formats=["WEBP"]) as im:
            if im.size != (w, h):
                raise ValueError(f"decoded WebP is {im.size}, expected {(w, h)}")
            im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8)
