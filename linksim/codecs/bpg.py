"""BPG: HEVC intra coding of one picture in BPG's small container.

BPG (Fabrice Bellard, https://bellard.org/bpg/) codes a picture as one HEVC intra
frame (x265 by default) and replaces the HEVC stream's video and sequence
parameter sets (VPS, SPS: about 60 bytes) by a header of a few bytes.  No
``bpgenc`` exists here, so this module does what it does with the x265 encoder
and FFmpeg HEVC decoder that PyAV bundles:

1. the image is converted to full-range BT.601 YCbCr (JPEG's; BPG's default
   colour space) and its chroma subsampled (4:2:0 by default, as ``bpgenc``),
   or kept as one plane (grey, HEVC 4:0:0);
2. the planes are padded to a multiple of 8 by repeating the last row and column,
   as ``bpgenc`` does (the header carries the true size), and to at least 16x16,
   the smallest picture x265 codes (32x32 with the ``placebo`` preset);
3. x265 codes them as one intra picture with ``bpgenc``'s settings (preset
   ``veryslow``, tune ``ssim``, constant QP, no info SEI), made deterministic
   (one thread, no wavefront or frame threads);
4. the HEVC stream (VPS, SPS, PPS, slice) is repackaged:

   - ``headers: full`` (default) writes a BPG file exactly as the BPG
     specification (0.9.x) lays it out: magic ``42 50 47 fb``, pixel format /
     bit depth byte, colour space / flags byte, ue7 width, ue7 height, ue7
     picture data length, ue7 hevc header length, the compact SPS fields
     (``log2_min_luma_coding_block_size_minus3`` ... ``sps_extension_flag``),
     then the HEVC data: the PPS and slice NAL units without the first start
     code.  Its size is what ``bpgenc`` writes for this HEVC stream;
   - ``headers: abbreviated`` sends only the slice NAL unit(s) (without the
     first start code).  The receiver knows the size, the chroma format and the
     encoder settings, hence every parameter set.

The receiver regenerates the parameter sets the payload leaves out (VPS and SPS,
plus the PPS when abbreviated) by coding a dummy picture of the same size and
format with the same settings: x265's parameter sets do not depend on the
picture, nor on the QP (the slice header carries it).  The encoder checks, at
every call, that the parameter sets it produced are byte-identical to those the
receiver regenerates, and refuses to send otherwise.  The reassembled Annex-B
stream is decoded by FFmpeg's HEVC decoder.
"""

from __future__ import annotations

import fractions
import threading
from functools import lru_cache

import numpy as np

from linksim.codecs.base import ImageCodec, check_choice, check_image
from linksim.registry import CODECS

__all__ = ["BPGCodec", "split_annexb", "put_ue7", "get_ue7", "bpg_sps_header", "HEVCStream"]

BPG_MAGIC = b"\x42\x50\x47\xfb"
#: BPG pixel_format codes
_PIXEL_FORMAT = {"4:0:0": 0, "4:2:0": 1, "4:2:2": 2, "4:4:4": 3}
#: chroma (vertical, horizontal) subsampling factors
_CHROMA_FACTORS = {"4:2:0": (2, 2), "4:2:2": (1, 2), "4:4:4": (1, 1)}
#: FFmpeg pixel formats of the planes given to x265
_PIX_FMT = {"4:0:0": "gray", "4:2:0": "yuv420p", "4:2:2": "yuv422p", "4:4:4": "yuv444p"}
#: BPG pads pictures to a multiple of its coding block size
_CB_SIZE = 8
#: HEVC NAL unit types
_VPS, _SPS, _PPS = 32, 33, 34
_VCL_TYPES = set(range(0, 32))
_IDR_TYPES = (19, 20)
#: x265 presets
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
           "veryslow", "placebo")
_START4, _START3 = b"\x00\x00\x00\x01", b"\x00\x00\x01"


# -- BPG's byte and bit codes --------------------------------------------------

def put_ue7(value: int) -> bytes:
    """BPG's ue7(32) code: 7 bits per byte, most significant first, high bit set on all but the last."""
    if value < 0 or value >= 1 << 32:
        raise ValueError(f"ue7 value out of range: {value}")
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(groups))


def get_ue7(data: bytes, pos: int) -> tuple[int, int]:
    """Read a ue7(32) at ``pos``: (value, next position).

    Raises
    ------
    ValueError
        On a non-shortest code, more than 5 bytes, or the end of the data.
    """
    value = 0
    for k in range(5):
        if pos >= len(data):
            raise ValueError("ue7 runs past the end of the data")
        b = data[pos]
        pos += 1
        if k == 0 and b == 0x80:
            raise ValueError("ue7 code is not the shortest")
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            if value >= 1 << 32:
                raise ValueError("ue7 value exceeds 32 bits")
            return value, pos
    raise ValueError("ue7 code longer than 5 bytes")


class _BitReader:
    """MSB-first bit reader over an RBSP (emulation prevention bytes removed)."""

    def __init__(self, data: bytes):
        self.bits = np.unpackbits(np.frombuffer(data, np.uint8))
        self.pos = 0

    def u(self, n: int) -> int:
        if self.pos + n > len(self.bits):
            raise ValueError("bitstream ends early")
        v = 0
        for b in self.bits[self.pos:self.pos + n]:
            v = (v << 1) | int(b)
        self.pos += n
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)


class _BitWriter:
    def __init__(self):
        self.bits: list[int] = []

    def u(self, n: int, v: int) -> None:
        self.bits.extend((v >> (n - 1 - k)) & 1 for k in range(n))

    def ue(self, v: int) -> None:
        n = (v + 1).bit_length()
        self.u(n - 1, 0)
        self.u(n, v + 1)

    def to_bytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)  # trailing_bits: zeros to the byte boundary
        return np.packbits(np.array(bits, np.uint8)).tobytes() if bits else b""


def _rbsp(nal: bytes) -> bytes:
    """NAL unit payload without emulation prevention bytes (00 00 03 -> 00 00)."""
    out = bytearray()
    zeros = 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def bpg_sps_header(sps_nal: bytes) -> bytes:
    """BPG's compact hevc_header fields, from an HEVC SPS NAL unit (as ``bpgenc`` builds them).

    Parses the SPS up to ``sps_extension`` and writes, with Exp-Golomb codes and
    flags, ``log2_min_luma_coding_block_size_minus3``,
    ``log2_diff_max_min_luma_coding_block_size``,
    ``log2_min_transform_block_size_minus2``,
    ``log2_diff_max_min_transform_block_size``,
    ``max_transform_hierarchy_depth_intra``, ``sample_adaptive_offset_enabled_flag``,
    ``pcm_enabled_flag`` (+ PCM fields), ``strong_intra_smoothing_enabled_flag``,
    ``sps_extension_present_flag`` (+ range-extension flags), zero-padded to a
    byte (BPG specification 3.1, ``hevc_header``; without its length prefix).

    The VUI (display metadata such as the video signal type, which FFmpeg's x265
    wrapper always writes and ``bpgenc``'s x265 does not) is skipped: BPG does not
    carry it and it does not change the decoded samples.

    Raises
    ------
    ValueError
        If the SPS uses a feature BPG excludes (scaling lists, reference picture
        sets, long-term pictures, HRD parameters, sub-layers).
    """
    r = _BitReader(_rbsp(sps_nal[2:]))  # skip the 2-byte NAL unit header
    if r.u(4) != 0:
        raise ValueError("BPG needs sps_video_parameter_set_id 0")
    if r.u(3) != 0:
        raise ValueError("BPG needs one sub-layer")
    r.u(1)                       # temporal_id_nesting_flag
    r.u(2 + 1 + 5 + 32 + 4 + 43 + 1 + 8)  # profile_tier_level(1, 0)
    if r.ue() != 0:
        raise ValueError("BPG needs sps_seq_parameter_set_id 0")
    if r.ue() == 3:              # chroma_format_idc
        r.u(1)                   # separate_colour_plane_flag
    r.ue(), r.ue()               # pic_width / pic_height_in_luma_samples
    if r.u(1):                   # conformance_window_flag
        for _ in range(4):
            r.ue()
    r.ue(), r.ue()               # bit_depth_luma / chroma_minus8
    if r.ue() + 4 != 8:
        raise ValueError("BPG needs log2_max_pic_order_cnt_lsb 8")
    r.u(1)                       # sps_sub_layer_ordering_info_present_flag
    r.ue(), r.ue(), r.ue()
    fields = [r.ue() for _ in range(4)]  # min cb, diff cb, min tb, diff tb
    r.ue()                       # max_transform_hierarchy_depth_inter
    depth_intra = r.ue()
    if r.u(1):
        raise ValueError("BPG needs scaling_list_enabled_flag 0")
    r.u(1)                       # amp_enabled_flag
    sao = r.u(1)
    pcm = r.u(1)
    pcm_fields = None
    if pcm:
        pcm_fields = (r.u(4), r.u(4), r.ue(), r.ue(), r.u(1))
    if r.ue() != 0:
        raise ValueError("BPG needs num_short_term_ref_pic_sets 0")
    if r.u(1):
        raise ValueError("BPG needs long_term_ref_pics_present_flag 0")
    r.u(1)                       # sps_temporal_mvp_enabled_flag
    strong = r.u(1)
    if r.u(1):                   # vui_parameters_present_flag
        if r.u(1):               # aspect_ratio_info_present_flag
            if r.u(8) == 255:
                r.u(32)
        if r.u(1):               # overscan_info_present_flag
            r.u(1)
        if r.u(1):               # video_signal_type_present_flag (FFmpeg's x265 wrapper sets it)
            r.u(4)               # video_format, video_full_range_flag
            if r.u(1):           # colour_description_present_flag
                r.u(24)
        if r.u(1):               # chroma_loc_info_present_flag
            r.ue(), r.ue()
        r.u(3)                   # neutral_chroma, field_seq, frame_field_info
        if r.u(1):               # default_display_window_flag
            for _ in range(4):
                r.ue()
        if r.u(1):               # vui_timing_info_present_flag
            r.u(64)
            if r.u(1):
                r.ue()
            if r.u(1):
                raise ValueError("BPG needs vui_hrd_parameters_present_flag 0")
        if r.u(1):               # bitstream_restriction_flag
            r.u(3)
            for _ in range(5):
                r.ue()
    ext = r.u(1)
    range_ext, range_flags = 0, 0
    if ext:
        range_ext = r.u(1)
        if r.u(7) != 0:
            raise ValueError("BPG needs sps_extension_7bits 0")
        if range_ext:
            range_flags = r.u(9)
    w = _BitWriter()
    for v in fields:
        w.ue(v)
    w.ue(depth_intra)
    w.u(1, sao)
    w.u(1, pcm)
    if pcm:
        w.u(4, pcm_fields[0])
        w.u(4, pcm_fields[1])
        w.ue(pcm_fields[2])
        w.ue(pcm_fields[3])
        w.u(1, pcm_fields[4])
    w.u(1, strong)
    w.u(1, ext)
    if ext:
        w.u(1, range_ext)
        w.u(7, 0)
        if range_ext:
            w.u(9, range_flags)
    return w.to_bytes()


# -- Annex-B streams -------------------------------------------------------------

class HEVCStream:
    """An Annex-B HEVC stream of one picture, split into its NAL units.

    Attributes
    ----------
    data : bytes
        The stream as the encoder wrote it.
    nals : list of (start, end, type)
        For each NAL unit, the offset of its start code, the offset after its
        last byte, and its ``nal_unit_type``.
    """

    def __init__(self, data: bytes):
        self.data = data
        self.nals = split_annexb(data)

    def offset_of(self, nal_type_set) -> int:
        """Offset of the start code of the first NAL unit whose type is in ``nal_type_set``."""
        for start, _, t in self.nals:
            if t in nal_type_set:
                return start
        raise ValueError(f"no NAL unit of type {sorted(nal_type_set)}")

    def nal(self, nal_type: int) -> bytes:
        """The bytes (header + payload, no start code) of the first NAL unit of a type."""
        for start, end, t in self.nals:
            if t == nal_type:
                return self.data[start + _start_code_len(self.data, start):end]
        raise ValueError(f"no NAL unit of type {nal_type}")


def _start_code_len(data: bytes, pos: int) -> int:
    return 4 if data[pos:pos + 4] == _START4 else 3


def split_annexb(data: bytes) -> list[tuple[int, int, int]]:
    """NAL units of an Annex-B byte stream: [(start-code offset, end offset, nal_unit_type)].

    Raises
    ------
    ValueError
        If the stream does not start with a start code.
    """
    starts = []
    i = data.find(_START3)
    if i < 0 or (i > 0 and data[:i] != b"\x00" * i):
        raise ValueError("not an Annex-B stream")
    while i >= 0:
        s = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append((s, i + 3))
        i = data.find(_START3, i + 3)
    out = []
    for k, (s, p) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(data)
        if p >= end:
            raise ValueError("empty NAL unit")
        out.append((s, end, (data[p] >> 1) & 0x3F))
    return out


# -- colour and chroma -----------------------------------------------------------

def _rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Full-range BT.601 (JPEG) YCbCr, float: [H, W, 3] uint8 -> [H, W, 3] float32."""
    m = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                 np.float32)
    return rgb.astype(np.float32) @ m.T + np.array([0.0, 128.0, 128.0], np.float32)


def _ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_rgb_to_ycbcr`: [H, W, 3] float -> [H, W, 3] uint8 (rounded, clipped)."""
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 128.0, ycc[..., 2] - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _pad_to(plane: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pad a plane to h x w by repeating its last row and column."""
    return np.pad(plane, ((0, h - plane.shape[0]), (0, w - plane.shape[1])), mode="edge")


def _downsample(plane: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Chroma decimation by averaging fy x fx blocks (JPEG's centred chroma siting)."""
    if fy == fx == 1:
        return plane
    h, w = plane.shape
    p = _pad_to(plane, -(-h // fy) * fy, -(-w // fx) * fx)
    return p.reshape(p.shape[0] // fy, fy, p.shape[1] // fx, fx).mean(axis=(1, 3))


def _upsample_axis(c: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Double a centred-sited chroma plane along ``axis`` with the triangle filter (3/4, 1/4), cut to n."""
    c = np.moveaxis(c, axis, 0)
    prev = np.concatenate([c[:1], c[:-1]], axis=0)
    nxt = np.concatenate([c[1:], c[-1:]], axis=0)
    out = np.empty((2 * c.shape[0],) + c.shape[1:], np.float32)
    out[0::2] = 0.75 * c + 0.25 * prev
    out[1::2] = 0.75 * c + 0.25 * nxt
    return np.moveaxis(out[:n], 0, axis)


def _upsample(plane: np.ndarray, fy: int, fx: int, h: int, w: int) -> np.ndarray:
    out = plane.astype(np.float32)
    if fy == 2:
        out = _upsample_axis(out, 0, h)
    if fx == 2:
        out = _upsample_axis(out, 1, w)
    return out[:h, :w]


# -- x265 and FFmpeg through PyAV --------------------------------------------------

_AV_LOCK = threading.Lock()


def _av():
    import av  # PyAV, imported on first use: it bundles libx265 and FFmpeg's HEVC decoder

    return av


def _x265_encode(planes: list[np.ndarray], fmt: str, qp: int, preset: str) -> bytes:
    """Code padded planes (uint8) as one HEVC intra picture with x265: the Annex-B stream."""
    av = _av()
    h, w = planes[0].shape
    ctx = av.CodecContext.create("libx265", "w")
    ctx.width, ctx.height = w, h
    ctx.pix_fmt = _PIX_FMT[fmt]
    ctx.time_base = fractions.Fraction(1, 25)
    ctx.framerate = fractions.Fraction(25, 1)
    ctx.thread_count = 1
    params = ":".join([
        f"qp={int(qp)}", "keyint=1", "min-keyint=1", "bframes=0", "info=0", "hash=0", "aud=0",
        "repeat-headers=0", "log-level=none", "pools=none", "frame-threads=1", "wpp=0",
        "lookahead-slices=0", "slices=1",
    ])
    ctx.options = {"preset": preset, "tune": "ssim", "x265-params": params}
    frame = av.VideoFrame(w, h, _PIX_FMT[fmt])
    for plane, arr in zip(frame.planes, planes):
        line = plane.line_size
        buf = np.zeros((arr.shape[0], line), np.uint8)
        buf[:, :arr.shape[1]] = arr
        plane.update(buf.tobytes())
    frame.pts = 0
    packets = ctx.encode(frame) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def _hevc_decode(stream: bytes) -> "object":
    """Decode an Annex-B stream of one picture with FFmpeg's HEVC decoder: the frame (or raise)."""
    av = _av()
    ctx = av.CodecContext.create("hevc", "r")
    ctx.thread_count = 1
    frames = list(ctx.decode(av.Packet(stream))) + list(ctx.decode(None))
    if len(frames) != 1:
        raise ValueError(f"HEVC stream decoded to {len(frames)} pictures, expected 1")
    return frames[0]


def _plane_array(plane, rows: int, cols: int) -> np.ndarray:
    buf = np.frombuffer(plane, np.uint8)
    line = plane.line_size
    if buf.size < rows * line or cols > line:
        raise ValueError("decoded plane smaller than announced")
    return buf[:rows * line].reshape(rows, line)[:, :cols]


@lru_cache(maxsize=512)
def _parameter_sets(h: int, w: int, fmt: str, preset: str) -> tuple[bytes, bytes]:
    """The parameter sets x265 writes for a padded h x w picture: (VPS+SPS part, PPS part).

    Both are raw Annex-B bytes with their start codes: the first is everything
    before the PPS's start code, the second the PPS NAL unit with its start code.
    Found by coding a mid-grey dummy picture; they do not depend on the pixels or
    the QP.
    """
    planes = _planes_shape(h, w, fmt)
    stream = HEVCStream(_x265_encode([np.full(s, 128, np.uint8) for s in planes], fmt, 26, preset))
    pps = stream.offset_of({_PPS})
    vcl = stream.offset_of(_VCL_TYPES)
    return stream.data[:pps], stream.data[pps:vcl]


def _planes_shape(h: int, w: int, fmt: str) -> list[tuple[int, int]]:
    if fmt == "4:0:0":
        return [(h, w)]
    fy, fx = _CHROMA_FACTORS[fmt]
    return [(h, w), (h // fy, w // fx), (h // fy, w // fx)]


@CODECS.register("bpg")
class BPGCodec(ImageCodec):
    """BPG: one HEVC intra picture (x265) in BPG's container, or its slice data alone.

    Parameters
    ----------
    subsampling : {"4:2:0", "4:2:2", "4:4:4"}
        Chroma format of RGB images (default "4:2:0", ``bpgenc``'s default).
        Grey images are coded as HEVC 4:0:0 (monochrome) whatever this says.
    headers : {"full", "abbreviated"}
        ``full`` (default): a BPG file (magic, format bytes, ue7 sizes, compact SPS
        header, PPS and slice NAL units), byte for byte what the BPG specification
        lays out for this HEVC stream.  ``abbreviated``: the slice NAL unit(s)
        only; the receiver regenerates VPS, SPS and PPS.
    preset : str
        x265 preset, one of ``ultrafast`` ... ``placebo`` (default ``veryslow``,
        what ``bpgenc``'s default compression level 8 selects).

    Raises
    ------
    ValueError
        For an option value not listed above (the message names the allowed values).

    Notes
    -----
    ``qualities`` are HEVC QPs from 51 down to 0, so that later qualities give
    bigger payloads; :attr:`EncodedImage.quality` is the QP (lower is better).
    The QP is x265's constant QP; ``bpgenc -q q`` asks x265 for QP ``q + 1`` at 8
    bits in some libbpg versions.  Bit depth is 8 (``bpgenc -b 8``).
    """

    name = "bpg"
    qualities = tuple(range(51, -1, -1))
    SUBSAMPLINGS = ("4:2:0", "4:2:2", "4:4:4")
    HEADERS = ("full", "abbreviated")

    def __init__(self, subsampling: str = "4:2:0", headers: str = "full", preset: str = "veryslow"):
        check_choice("bpg", "subsampling", subsampling, self.SUBSAMPLINGS)
        check_choice("bpg", "headers", headers, self.HEADERS)
        check_choice("bpg", "preset", preset, PRESETS)
        self.subsampling, self.headers, self.preset = subsampling, headers, preset

    def get_config(self) -> dict:
        return {"type": self.name, "subsampling": self.subsampling, "headers": self.headers,
                "preset": self.preset}

    # -- geometry ----------------------------------------------------------------

    def chroma_format(self, channels: int) -> str:
        """HEVC chroma format used for images with ``channels`` channels."""
        return "4:0:0" if channels == 1 else self.subsampling

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """Picture size given to the encoder: h, w rounded up to a multiple of 8, and to x265's minimum.

        x265 refuses pictures smaller than 16 luma samples in either direction
        (32 with the ``placebo`` preset).
        """
        least = 32 if self.preset == "placebo" else 16
        return (max(least, -(-h // _CB_SIZE) * _CB_SIZE), max(least, -(-w // _CB_SIZE) * _CB_SIZE))

    def _planes(self, image: np.ndarray) -> list[np.ndarray]:
        h, w, c = image.shape
        ph, pw = self.padded_size(h, w)
        if c == 1:
            return [_pad_to(image[..., 0], ph, pw)]
        fy, fx = _CHROMA_FACTORS[self.subsampling]
        ycc = _rgb_to_ycbcr(image)
        out = [np.clip(np.rint(ycc[..., 0]), 0, 255).astype(np.uint8)]
        for k in (1, 2):
            sub = _downsample(ycc[..., k], fy, fx)
            out.append(np.clip(np.rint(sub), 0, 255).astype(np.uint8))
        return [_pad_to(p, s[0], s[1]) for p, s in zip(out, _planes_shape(ph, pw, self.subsampling))]

    def parameter_sets(self, shape) -> tuple[bytes, bytes]:
        """(VPS+SPS bytes, PPS bytes) the receiver regenerates for images of ``shape`` (H, W, C)."""
        h, w, c = (int(s) for s in shape)
        ph, pw = self.padded_size(h, w)
        with _AV_LOCK:
            return _parameter_sets(ph, pw, self.chroma_format(c), self.preset)

    def hevc_stream(self, image: np.ndarray, qp: int) -> HEVCStream:
        """The HEVC Annex-B stream x265 writes for ``image`` [H, W, C] uint8 at ``qp``."""
        image = check_image(image)
        with _AV_LOCK:
            data = _x265_encode(self._planes(image), self.chroma_format(image.shape[-1]), qp, self.preset)
        return HEVCStream(data)

    # -- encoder -----------------------------------------------------------------

    def encode(self, image: np.ndarray, quality: int) -> bytes:
        """Encode ``image`` [H, W, C] uint8 at HEVC QP ``quality`` (0..51): the BPG file or slice data.

        Raises
        ------
        ValueError
            If ``quality`` is not an integer QP in 0..51.
        RuntimeError
            If the parameter sets x265 wrote differ from those the receiver
            regenerates (the payload could not be decoded).
        """
        image = check_image(image)
        if isinstance(quality, bool) or quality not in self.qualities:
            raise ValueError(f"bpg: quality must be an HEVC QP, an integer in 0..51 (got {quality!r})")
        stream = self.hevc_stream(image, int(quality))
        vps_sps, pps = self.parameter_sets(image.shape)
        pps_at = stream.offset_of({_PPS})
        vcl_at = stream.offset_of(_VCL_TYPES)
        if stream.data[:pps_at] != vps_sps or stream.data[pps_at:vcl_at] != pps:
            raise RuntimeError("bpg: x265 wrote parameter sets that differ from those the receiver "
                               "regenerates; the payload would not be decodable")
        if any(t not in _VCL_TYPES for s, e, t in stream.nals if s >= vcl_at):
            raise RuntimeError("bpg: unexpected non-VCL NAL units after the slice data")
        if self.headers == "abbreviated":
            return stream.data[vcl_at + _start_code_len(stream.data, vcl_at):]
        return self._bpg_file(image.shape, stream)

    def _bpg_file(self, shape, stream: HEVCStream) -> bytes:
        h, w, c = shape
        fmt = self.chroma_format(c)
        msps = _msps_of(stream.data[:stream.offset_of({_PPS})])
        pps_at = stream.offset_of({_PPS})
        hevc_data = stream.data[pps_at + _start_code_len(stream.data, pps_at):]
        header_and_data = put_ue7(len(msps)) + msps + hevc_data
        head = (BPG_MAGIC + bytes([(_PIXEL_FORMAT[fmt] << 5) | (0 << 4) | (8 - 8), (0 << 4) | 0])
                + put_ue7(w) + put_ue7(h) + put_ue7(len(header_and_data)))
        return head + header_and_data

    # -- decoder -----------------------------------------------------------------

    def annexb(self, payload: bytes, shape) -> bytes:
        """The standard HEVC stream a payload stands for (regenerated parameter sets + payload data).

        Raises
        ------
        ValueError
            If the payload's BPG header (``full``) or first NAL unit header does
            not match what this codec sends for images of ``shape``.
        """
        h, w, c = shape
        vps_sps, pps = self.parameter_sets(shape)
        if self.headers == "abbreviated":
            _check_slice_header(payload)
            return vps_sps + pps + _START4 + payload
        fmt = self.chroma_format(c)
        if payload[:4] != BPG_MAGIC:
            raise ValueError("not a BPG file")
        if payload[4] != (_PIXEL_FORMAT[fmt] << 5) or payload[5] != 0:
            raise ValueError("BPG pixel format, bit depth, colour space or flags differ from the codec's")
        pw, pos = get_ue7(payload, 6)
        ph, pos = get_ue7(payload, pos)
        length, pos = get_ue7(payload, pos)
        if (pw, ph) != (w, h) or length != len(payload) - pos:
            raise ValueError("BPG picture size or data length does not match")
        mlen, pos = get_ue7(payload, pos)
        msps = payload[pos:pos + mlen]
        if msps != _msps_of(vps_sps):
            raise ValueError("BPG hevc header differs from the receiver's SPS")
        hevc_data = payload[pos + mlen:]
        if len(hevc_data) < 3 or (hevc_data[0] >> 1) & 0x3F != _PPS:
            raise ValueError("BPG hevc data does not start with a PPS")
        return vps_sps + _START4 + hevc_data

    def decode(self, payload: bytes, shape) -> np.ndarray:
        h, w, c = shape
        stream = self.annexb(payload, shape)
        fmt = self.chroma_format(c)
        ph, pw = self.padded_size(h, w)
        with _AV_LOCK:
            frame = _hevc_decode(stream)
            if (frame.height, frame.width) != (ph, pw):
                raise ValueError(f"decoded picture is {frame.width}x{frame.height}, expected {pw}x{ph}")
            shapes = _planes_shape(ph, pw, fmt)
            if len(frame.planes) < len(shapes):
                raise ValueError(f"decoded picture has {len(frame.planes)} planes, expected {len(shapes)}")
            planes = [_plane_array(p, s[0], s[1]).copy() for p, s in zip(frame.planes, shapes)]
        if fmt == "4:0:0":
            return planes[0][:h, :w, None].copy()
        fy, fx = _CHROMA_FACTORS[fmt]
        ycc = np.stack([planes[0][:h, :w].astype(np.float32)]
                       + [_upsample(p, fy, fx, ph, pw)[:h, :w] for p in planes[1:]], axis=-1)
        return _ycbcr_to_rgb(ycc)


@lru_cache(maxsize=512)
def _msps_of(vps_sps: bytes) -> bytes:
    """BPG's compact SPS header for the parameter sets ``vps_sps`` (cached: few distinct ones)."""
    return bpg_sps_header(HEVCStream(vps_sps).nal(_SPS))


def _check_slice_header(payload: bytes) -> None:
    """Reject a payload whose first two bytes are not an IDR slice's NAL unit header (layer 0, tid 1)."""
    if len(payload) < 3:
        raise ValueError("payload too short for a slice")
    if payload[0] & 0x80 or (payload[0] >> 1) & 0x3F not in _IDR_TYPES or payload[0] & 1 or payload[1] != 1:
        raise ValueError("payload does not start with an IDR slice NAL unit header")
