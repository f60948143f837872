"""Image source codecs with rate control to a bit budget.

- ``jpeg``: JPEG baseline, full files or abbreviated streams (:mod:`linksim.codecs.jpeg`);
- ``webp``: lossy WebP (:mod:`linksim.codecs.webp`);
- ``jpeg2000``: JPEG 2000 raw codestream (:mod:`linksim.codecs.jpeg2000`);
- ``bpg``: BPG, i.e. HEVC intra coding in BPG's small container (:mod:`linksim.codecs.bpg`).

:func:`encode_batch` picks, per image, the best quality that fits a bit budget.
``docs/codecs.md`` says exactly which bytes each codec sends and counts.
"""

from linksim.codecs.base import EncodedImage, ImageCodec, encode_batch
from linksim.codecs.bpg import BPGCodec
from linksim.codecs.jpeg import JPEGCodec
from linksim.codecs.jpeg2000 import JPEG2000Codec
from linksim.codecs.webp import WebPCodec

__all__ = ["ImageCodec", "EncodedImage", "encode_batch", "JPEGCodec", "WebPCodec", "JPEG2000Codec",
           "BPGCodec"]
