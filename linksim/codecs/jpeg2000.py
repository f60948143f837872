"""JPEG 2000 (ISO/IEC 15444-1) with Pillow's OpenJPEG: a raw codestream, rate-searched.

The payload is the raw JPEG 2000 codestream (the ``.j2k`` / ``.j2c`` form, from
SOC to EOC), not the JP2 file format, whose boxes (signature, file type, header,
colour specification) would add about 85 bytes the receiver does not need.
Everything in the codestream is sent and counted except OpenJPEG's comment
marker segment (COM, "Created by OpenJPEG version ...", 39 bytes), which the
encoder strips: it is optional and decoders ignore it.

The irreversible 9/7 wavelet is used (the lossy path of JPEG 2000).  OpenJPEG
sets the size of its single quality layer either by a compression ratio
(``quality_mode: rates``) or by a target PSNR (``quality_mode: dB``); rate
control searches a ladder of either.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image

from linksim.codecs.base import ImageCodec, check_choice, check_image
from linksim.registry import CODECS

__all__ = ["JPEG2000Codec", "strip_comments", "main_header"]

_SOC, _SOT, _COM, _EOC = b"\xff\x4f", b"\xff\x90", b"\xff\x64", b"\xff\xd9"

#: compression ratios searched in ``rates`` mode: 96 steps, geometric from 200:1 to 1:1
RATE_LADDER = tuple(float(f"{r:.4g}") for r in np.geomspace(200.0, 1.0, 96))
#: target PSNRs searched in ``dB`` mode: 5 to 80 dB in 0.25 dB steps
DB_LADDER = tuple(float(v) for v in np.arange(5.0, 80.0 + 1e-9, 0.25))


def main_header(data: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
    """Parse the main header of a codestream: its marker segments and where the first tile-part starts.

    Output
    ------
    (segments, offset) : (list of (marker, whole segment bytes), int)
        The segments between SOC and the first SOT, and the offset of that SOT.

    Raises
    ------
    ValueError
        If ``data`` does not start like a JPEG 2000 codestream.
    """
    if data[:2] != _SOC:
        raise ValueError("not a JPEG 2000 codestream (no SOC marker)")
    i, segments = 2, []
    while i + 4 <= len(data):
        marker = data[i:i + 2]
        if marker == _SOT:
            return segments, i
        if marker[0] != 0xFF:
            raise ValueError(f"JPEG 2000 marker expected at byte {i}")
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if length < 2 or i + 2 + length > len(data):
            raise ValueError(f"JPEG 2000 marker segment at byte {i} runs past the end")
        segments.append((marker, data[i:i + 2 + length]))
        i += 2 + length
    raise ValueError("JPEG 2000 codestream without a tile-part")


def strip_comments(data: bytes) -> bytes:
    """The codestream without its main-header COM segments (tile-part lengths are unaffected)."""
    segments, start = main_header(data)
    return _SOC + b"".join(s for m, s in segments if m != _COM) + data[start:]


@CODECS.register("jpeg2000")
class JPEG2000Codec(ImageCodec):
    """JPEG 2000 (Pillow / OpenJPEG), irreversible 9/7 wavelet, one quality layer, raw codestream.

    Parameters
    ----------
    quality_mode : {"rates", "dB"}
        What the quality ladder sets: OpenJPEG's compression ratio
        (:data:`RATE_LADDER`, 200:1 down to 1:1; a smaller ratio is a bigger
        file) or its target PSNR (:data:`DB_LADDER`, 5 to 80 dB).  Default
        ``"dB"``: at 28x28 OpenJPEG's ratio control stops shrinking the file at
        about 134 bytes, its PSNR control at about 113.
    num_resolutions : int or None
        Wavelet resolution levels (1..6; decomposition levels + 1); ``None``
        (default) lets OpenJPEG choose (6, fewer for small images).  Fewer levels
        give a shorter quantisation header.

    Raises
    ------
    ValueError
        For an option value not listed above (the message names the allowed values).

    Notes
    -----
    ``qualities`` is the ladder: ratios in decreasing order (``rates``) or PSNRs
    in increasing order (``dB``), so that later qualities give bigger files.
    The payload is the codestream from SOC to EOC without COM segments.
    """

    name = "jpeg2000"
    QUALITY_MODES = ("rates", "dB")
    NUM_RESOLUTIONS = (None, 1, 2, 3, 4, 5, 6)

    def __init__(self, quality_mode: str = "dB", num_resolutions: int | None = None):
        check_choice("jpeg2000", "quality_mode", quality_mode, self.QUALITY_MODES)
        check_choice("jpeg2000", "num_resolutions", num_resolutions, self.NUM_RESOLUTIONS)
        self.quality_mode = quality_mode
        self.num_resolutions = None if num_resolutions is None else int(num_resolutions)
        self.qualities = RATE_LADDER if quality_mode == "rates" else DB_LADDER

    def get_config(self) -> dict:
        return {"type": self.name, "quality_mode": self.quality_mode,
                "num_resolutions": self.num_resolutions}

    def _codestream(self, image: np.ndarray, quality: float) -> bytes:
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        kwargs = dict(no_jp2=True, irreversible=True, quality_mode=self.quality_mode,
                      quality_layers=[float(quality)])
        if self.num_resolutions is not None:
            kwargs["num_resolutions"] = self.num_resolutions
        buf = io.BytesIO()
        pil.save(buf, "JPEG2000", **kwargs)
        return strip_comments(buf.getvalue())

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        """Encode ``image`` [H, W, C] uint8 at ``quality`` (a ladder value): the codestream."""
        image = check_image(image)
        if isinstance(quality, bool) or quality not in self.qualities:
            raise ValueError(f"jpeg2000: quality must be one of the {self.quality_mode} ladder values "
                             f"{self.qualities[0]} .. {self.qualities[-1]} (got {quality!r})")
        return self._codestream(image, quality)

    def expected_main_header(self, shape) -> bytes:
        """The main header (SOC .. first SOT, no COM) every codestream of this shape has.

        OpenJPEG's main header depends on the image size, the components and the
        coding options, not on the quality (one layer, fixed quantisation step
        sizes, truncation does the rate control).
        """
        return _main_header_for(tuple(int(s) for s in shape), self.quality_mode, self.num_resolutions)

    def decode(self, payload: bytes, shape) -> np.ndarray:
        h, w, c = shape
        # sanity check before OpenJPEG sees the bytes: the receiver knows what the main
        # header (size, components, coding style, quantisation) must be
        _, start = main_header(payload)
        if payload[:start] != self.expected_main_header((h, w, c)):
            raise ValueError("JPEG 2000 main header differs from the one this codec writes")
        with Image.open(io.BytesIO(payload), formats=["JPEG2000"]) as im:
            if im.size != (w, h) or im.mode not in ("L", "RGB"):
                raise ValueError(f"decoded JPEG 2000 is {im.size} {im.mode}, expected {(w, h)}")
            im.load()
            out = np.asarray(im, dtype=np.uint8)
        return out[..., None] if out.ndim == 2 else out


@lru_cache(maxsize=256)
def _main_header_for(shape: tuple, quality_mode: str, num_resolutions) -> bytes:
    codec = JPEG2000Codec(quality_mode, num_resolutions)
    h, w, c = shape
    data = codec._codestream(np.zeros((h, w, c), np.uint8), codec.qualities[len(codec.qualities) // 2])
    return data[:main_header(data)[1]]
