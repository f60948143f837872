"""Separate source-channel coding (SSCC): image codec + channel code + QAM.

The separation baselines of the SD-JSCC paper (Sun et al., section IV-A): JPEG,
WebP or BPG source coding, the IEEE 802.11n LDPC code (1944, 1458) of rate 3/4,
and 16-QAM, over the same number of channel uses as the JSCC schemes.

Bit budget
----------
With ``k`` channel uses per image, ``m`` bits per QAM symbol and a code of
``n_c`` coded and ``k_c`` information bits per codeword, an image gets
``C = floor(k * m / n_c)`` codewords and ``C * k_c`` information bits.  Of these,
:data:`FRAME_HEADER_BITS` carry the payload length (so the receiver knows where
the payload ends) and the rest is the codec's budget; rate control picks the best
quality whose file fits.  Unused information bits are filled with a known
pseudo-random sequence (the receiver knows it; it keeps the QAM symbols
uniformly distributed).  ``k - C * n_c / m`` channel uses are left idle when the
code does not tile the channel uses exactly; the results table reports both.

With the ideal (capacity-achieving) code the image gets
``floor(k * log2(1 + SNR))`` error-free bits at each SNR point: the upper bound
any practical separation scheme can reach.

Receiver
--------
A block whose decoded word fails the parity check marks the image as failed
(``on_block_error: fallback``, the default) and the receiver shows the fallback
image (the training-set mean image by default).  With ``decode_anyway`` the
receiver tries to decode the damaged bitstream and falls back only if the codec
fails.  A codec that cannot decode (corrupt or empty payload) always gives the
fallback.  Failures are counted in ``decode_failures``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from linksim.codecs.base import EncodedImage, encode_batch
from linksim.phy.link import DigitalLink
from linksim.registry import CHANNEL_CODES, CODECS, MODULATIONS, SCHEMES
from linksim.schemes.base import BatchResult, Scheme, SchemeContext, fallback_image

__all__ = ["FRAME_HEADER_BITS", "SeparationTransmitter", "SeparationReceiver", "SeparationScheme",
           "frame_payloads", "deframe_bits"]

#: bits of the length field that precedes every payload (payload length in bytes)
FRAME_HEADER_BITS = 16


def _pn_bits(num: int, seed: int = 0x5EED) -> np.ndarray:
    """The known pseudo-random fill sequence, [num] uint8 0/1."""
    return np.random.default_rng(seed).integers(0, 2, size=num, dtype=np.uint8)


def frame_payloads(payloads: list[bytes], num_info_bits: int) -> np.ndarray:
    """Payload bytes -> information bits of fixed length per image.

    Each frame is a 16-bit big-endian payload length in bytes, the payload, and
    the known pseudo-random fill up to ``num_info_bits``.

    Input
    -----
    payloads : list of bytes, one per image
    num_info_bits : int

    Output
    ------
    [batch, num_info_bits], np.uint8 in {0, 1}

    Raises
    ------
    ValueError
        If a payload does not fit (rate control is broken).
    """
    out = np.tile(_pn_bits(num_info_bits), (len(payloads), 1))
    for i, p in enumerate(payloads):
        frame = len(p).to_bytes(2, "big") + p
        bits = np.unpackbits(np.frombuffer(frame, np.uint8))
        if len(bits) > num_info_bits:
            raise ValueError(f"payload of {len(p)} bytes exceeds the {num_info_bits}-bit budget")
        out[i, : len(bits)] = bits
    return out


def deframe_bits(bits: np.ndarray) -> bytes | None:
    """Information bits of one image -> payload bytes (None if the length field is impossible)."""
    bits = np.asarray(bits, np.uint8).ravel()
    length = int.from_bytes(np.packbits(bits[:FRAME_HEADER_BITS]).tobytes(), "big")
    end = FRAME_HEADER_BITS + 8 * length
    if end > len(bits):
        return None
    return np.packbits(bits[FRAME_HEADER_BITS:end]).tobytes()


def _specs_of(layer) -> dict:
    """The scenario specs of a transmitter's or receiver's codec, code and modulation."""
    return {"codec": layer.codec.get_config(), "channel_code": layer.code.get_config(),
            "modulation": layer.modulation.get_config()}


def _build(reg, spec):
    """A codec / code / modulation from its scenario spec (``{"type": name, **options}``)."""
    if isinstance(spec, dict):
        params = {k: v for k, v in spec.items() if k != "type"}
        return reg.create(spec["type"], **params)
    if isinstance(spec, str):
        return reg.create(spec)
    return spec  # already an object


@keras.saving.register_keras_serializable(package="linksim")
class SeparationTransmitter(keras.layers.Layer):
    """Image codec with rate control, then channel encoder and QAM mapper.

    Parameters
    ----------
    codec : dict | str | ImageCodec
        The image codec (``{"type": "jpeg", ...}``).
    channel_code : dict | str | ChannelCode
        The channel code (``{"type": "ldpc_80211n"}``).
    modulation : dict | str | Modulation
        The QAM (``{"type": "qam", "num_bits_per_symbol": 4}``).
    channel_uses : int
        Complex channel uses per image (k).

    Input
    -----
    images : [batch, H, W, C], float32 in [0, 1]

    Output
    ------
    dict with
        ``symbols`` : [batch, S], complex64, unit average energy (S <= channel_uses);
        ``info_bits`` : [batch, num_codewords, k_c], float32;
        ``source_bits`` : [batch], int64, payload plus framing bits;
        ``quality`` : list of the codec parameter chosen per image (None: nothing fitted).

    Raises
    ------
    ValueError
        If ``channel_uses`` cannot carry a single codeword.
    """

    def __init__(self, codec, channel_code, modulation, channel_uses: int, **kwargs):
        super().__init__(**kwargs)
        self.codec = _build(CODECS, codec)
        self.code = _build(CHANNEL_CODES, channel_code)
        self.modulation = _build(MODULATIONS, modulation)
        if not isinstance(channel_uses, (int, np.integer)) or channel_uses < 1:
            raise ValueError(f"channel_uses must be a positive integer (got {channel_uses!r})")
        self.channel_uses = int(channel_uses)
        m = self.modulation.num_bits_per_symbol
        if self.code.is_ideal:
            self.num_codewords = 0
            self.num_info_bits = None
        else:
            self.num_codewords = (self.channel_uses * m) // self.code.n
            if self.num_codewords < 1:
                need = -(-self.code.n // m)
                raise ValueError(
                    f"{self.channel_uses} channel uses per image cannot carry one codeword of "
                    f"{self.code.n} bits with {m} bits per symbol (needs at least {need} channel "
                    f"uses); raise rate.channel_uses / rate.bandwidth_ratio or use a shorter code")
            self.num_info_bits = self.num_codewords * self.code.k
            self.used_channel_uses = -(-self.num_codewords * self.code.n // m)
            if self.used_channel_uses < self.channel_uses:
                warnings.warn(
                    f"{self.channel_uses - self.used_channel_uses} of {self.channel_uses} channel uses per "
                    f"image stay idle: {self.num_codewords} codeword(s) of {self.code.n} bits fill "
                    f"{self.used_channel_uses}", stacklevel=2)
        self._link = None if self.code.is_ideal else DigitalLink(self.code, self.modulation)

    def source_budget_bits(self, snr_db: float | None = None) -> int:
        """Bits available to the codec per image (after the framing header)."""
        if self.code.is_ideal:
            if snr_db is None:
                raise ValueError("the ideal code's budget depends on snr_db")
            total = self.code.ideal_info_bits(self.channel_uses, snr_db)
        else:
            total = self.num_info_bits
        return max(0, total - FRAME_HEADER_BITS)

    def source_encode(self, images, snr_db: float | None = None) -> list[EncodedImage]:
        """Rate-controlled codec step only: [batch, H, W, C] float32 -> one EncodedImage per image."""
        u8 = np.clip(np.rint(np.asarray(images, np.float32) * 255.0), 0, 255).astype(np.uint8)
        return encode_batch(self.codec, u8, self.source_budget_bits(snr_db))

    def call(self, images, snr_db=None):
        encoded = self.source_encode(images, snr_db)
        source_bits = np.array([e.bits + FRAME_HEADER_BITS if e.payload else 0 for e in encoded], np.int64)
        out = {"source_bits": source_bits, "quality": [e.quality for e in encoded], "encoded": encoded}
        if self.code.is_ideal:
            return out
        bits = frame_payloads([e.payload for e in encoded], self.num_info_bits)
        info = tf.constant(bits.reshape(len(encoded), self.num_codewords, self.code.k), tf.float32)
        out["info_bits"] = info
        out["symbols"] = self._link.transmit(info)
        return out

    def get_config(self):
        cfg = super().get_config()
        cfg.update(_specs_of(self))
        cfg["channel_uses"] = self.channel_uses
        return cfg


@keras.saving.register_keras_serializable(package="linksim")
class SeparationReceiver(keras.layers.Layer):
    """QAM demapper and channel decoder, then the image decoder with fallback.

    Parameters
    ----------
    codec, channel_code, modulation : as :class:`SeparationTransmitter`
    image_shape : tuple[int, int, int]
        (H, W, C) of the images.
    fallback : np.ndarray
        [H, W, C] float32, the image shown when decoding fails.
    on_block_error : {"fallback", "decode_anyway"}
        What a failed parity check does to the image (see the module docstring).

    Input
    -----
    y : [batch, S], complex64, received symbols
    no : float or tf.float32, noise variance per complex symbol

    Output
    ------
    dict with ``images`` [batch, H, W, C] float32, ``bits`` [batch, C, k_c] float32,
    ``block_ok`` [batch, C] bool, ``failed`` [batch] bool.
    """

    def __init__(self, codec, channel_code, modulation, image_shape, fallback=None,
                 on_block_error: str = "fallback", **kwargs):
        super().__init__(**kwargs)
        self.codec = _build(CODECS, codec)
        self.code = _build(CHANNEL_CODES, channel_code)
        self.modulation = _build(MODULATIONS, modulation)
        if on_block_error not in ("fallback", "decode_anyway"):
            raise ValueError(f"on_block_error must be 'fallback' or 'decode_anyway' (got {on_block_error!r})")
        self.on_block_error = on_block_error
        self.image_shape = tuple(int(s) for s in image_shape)
        self.fallback = (np.full(self.image_shape, 0.5, np.float32) if fallback is None
                         else np.asarray(fallback, np.float32).reshape(self.image_shape))
        self._link = None if self.code.is_ideal else DigitalLink(self.code, self.modulation)

    def num_codewords(self, y) -> int:
        """Codewords carried by received symbols ``y`` [batch, S] (S = ceil(C n / m))."""
        return (int(y.shape[-1]) * self.modulation.num_bits_per_symbol) // self.code.n

    def reconstruct(self, bits: np.ndarray, block_ok: np.ndarray):
        """Decoded information bits -> images; returns (images, failed)."""
        b = bits.shape[0]
        images = np.empty((b,) + self.image_shape, np.float32)
        failed = np.zeros(b, bool)
        for i in range(b):
            img = None
            if self.on_block_error == "decode_anyway" or bool(np.all(block_ok[i])):
                payload = deframe_bits(bits[i].reshape(-1))
                img = self.decode_payload(payload)
            if img is None:
                failed[i] = True
                images[i] = self.fallback
            else:
                images[i] = img
        return images, failed

    def decode_payload(self, payload: bytes | None):
        """Codec decode that never raises: float32 image or None."""
        if not payload:
            return None
        u8 = self.codec.safe_decode(payload, self.image_shape)
        if u8 is None:
            return None
        return np.asarray(u8, np.float32).reshape(self.image_shape) / 255.0

    def call(self, y, no):
        out = self._link.detect(y, no, self.num_codewords(y))
        bits = out["bits"].numpy().astype(np.uint8)
        ok = out["block_ok"].numpy()
        images, failed = self.reconstruct(bits, ok)
        return {"images": images, "bits": out["bits"], "block_ok": out["block_ok"], "failed": failed}

    def get_config(self):
        cfg = super().get_config()
        cfg.update(_specs_of(self))
        cfg.update(image_shape=list(self.image_shape), fallback=self.fallback.tolist(),
                   on_block_error=self.on_block_error)
        return cfg


def _pass_through(y, no):
    """The ideal code's regeneration: a relay that always decodes forwards the symbols unchanged."""
    return y


@dataclass
class _SourceState:
    images: np.ndarray
    tx: dict | None  # transmitter output (practical codes)


@SCHEMES.register("separation")
class SeparationScheme(Scheme):
    """Separate source-channel coding: image codec + channel code + QAM (SSCC baseline).

    Parameters
    ----------
    codec : dict
        ``{"type": "jpeg" | "webp" | "bpg" | "jpeg2000", ...codec options}``.
    channel_code : dict
        ``{"type": "ldpc_80211n" | "ldpc5g" | "ideal", ...}``; default the 802.11n
        (1944, 1458) code.
    modulation : dict
        ``{"type": "qam", "num_bits_per_symbol": 4}`` (default 16-QAM).
    fallback : {"mean", "gray", "black"}
        Image shown on a decoding failure (default the training-set mean image).
    on_block_error : {"fallback", "decode_anyway"}
    label : str
        Name in tables and legends.
    """

    digital = True

    def __init__(self, codec, channel_code=None, modulation=None, fallback: str = "mean",
                 on_block_error: str = "fallback", label: str | None = None):
        super().__init__(label)
        self.codec_spec = codec
        self.code_spec = channel_code or {"type": "ldpc_80211n", "n": 1944, "rate": "3/4"}
        self.mod_spec = modulation or {"type": "qam", "num_bits_per_symbol": 4}
        if fallback not in ("mean", "gray", "black"):
            raise ValueError(f"fallback must be one of mean, gray, black (got {fallback!r})")
        if on_block_error not in ("fallback", "decode_anyway"):
            raise ValueError(f"on_block_error must be 'fallback' or 'decode_anyway' (got {on_block_error!r})")
        self.fallback_kind = fallback
        self.on_block_error = on_block_error
        # build the parts now, so a bad option fails at validation time
        self.codec = _build(CODECS, codec)
        self.code = _build(CHANNEL_CODES, self.code_spec)
        self.modulation = _build(MODULATIONS, self.mod_spec)

    def prepare(self, context: SchemeContext) -> None:
        self.context = context
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.tx = SeparationTransmitter(self.codec, self.code, self.modulation, context.channel_uses)
        self.idle_warning = str(caught[0].message) if caught else None
        fb = fallback_image(self.fallback_kind, context.train_images, context.image_shape)
        self.rx = SeparationReceiver(self.codec, self.code, self.modulation, context.image_shape,
                                     fallback=fb, on_block_error=self.on_block_error)
        self._link = None
        if self.code.is_ideal:
            # the ideal code sends no symbols: its DF relays "decode" perfectly (pass-through), and
            # the chain's per-segment noise variances come from a call (see _ideal_snr_db)
            self.channel = context.channel.bind(regenerate=_pass_through)
        else:
            self._link = DigitalLink(self.code, self.tx.modulation, channel=context.channel)
            self.channel = self._link.channel

    def describe(self) -> dict:
        d = super().describe()
        d.update(codec=self.codec_spec, channel_code=self.code_spec, modulation=self.mod_spec,
                 fallback=self.fallback_kind, on_block_error=self.on_block_error)
        if not self.code.is_ideal:
            d.update(codewords_per_image=self.tx.num_codewords, info_bits_per_image=self.tx.num_info_bits,
                     used_channel_uses=self.tx.used_channel_uses)
        return d

    def encode(self, images: np.ndarray) -> _SourceState:
        if self.code.is_ideal:
            return _SourceState(np.asarray(images, np.float32), None)
        return _SourceState(np.asarray(images, np.float32), self.tx(images))

    def check_source_coding(self, states: list) -> str | None:
        """Warn when no image of ``states`` (every batch :meth:`encode` made) fits the bit budget.

        Every image would then be received as the fallback image at every SNR point.  The
        warning names the smallest payload the codec reached (its lowest quality), the budget,
        the codec options that would shrink it and the rate that would fit it.  Returns the
        warning text, or None (some image fits, or the ideal code, whose budget depends on SNR).
        """
        encoded = [e for st in states if st.tx is not None for e in st.tx["encoded"]]
        if not encoded or any(e.payload for e in encoded):
            return None
        u8 = [np.clip(np.rint(np.asarray(st.images, np.float32) * 255.0), 0, 255).astype(np.uint8)
              for st in states]
        smallest = min(self.codec.smallest_payload_bits(img) for batch in u8 for img in batch)
        budget = self.tx.source_budget_bits()
        m = self.tx.modulation.num_bits_per_symbol
        codewords = -(-(smallest + FRAME_HEADER_BITS) // self.code.k)
        k_needed = -(-codewords * self.code.n // m)
        n_src = int(np.prod(states[0].images.shape[1:]))
        opts = self.codec.smaller_options()
        help_ = (f"set codec option {' or '.join(opts)}, or " if opts else "") + \
            (f"raise the rate to at least {k_needed} channel uses per image (rate.channel_uses: {k_needed}, "
             f"bandwidth_ratio {k_needed / n_src:.4g})")
        msg = (f"{self.label}: no image fits the bit budget of {budget} bits per image; the smallest payload "
               f"the codec reached (its lowest quality) is {smallest} bits, so every image is received as the "
               f"fallback image at every SNR. To fit, {help_}")
        warnings.warn(msg, stacklevel=2)
        return msg

    def evaluate(self, state: _SourceState, snr_db: float) -> BatchResult:
        b = len(state.images)
        if self.code.is_ideal:
            return self._evaluate_ideal(state, snr_db)
        tx = state.tx
        out = self._link.receive(tx["symbols"], snr_db, self.tx.num_codewords)
        bits_hat = out["bits"].numpy().astype(np.uint8)
        ok = out["block_ok"].numpy()
        truth = tx["info_bits"].numpy().astype(np.uint8)
        errors = bits_hat != truth
        images, failed = self.rx.reconstruct(bits_hat, ok)
        counts = {
            "images": b,
            "source_bits": int(tx["source_bits"].sum()),
            "channel_uses": b * self.tx.channel_uses,
            "used_channel_uses": b * self.tx.used_channel_uses,
            "bit_errors": int(errors.sum()),
            "bits": int(errors.size),
            "block_errors": int(errors.any(axis=-1).sum()),
            "blocks": int(ok.size),
            "detected_block_failures": int((~ok).sum()),
            "decode_failures": int(failed.sum()),
        }
        return BatchResult(images, counts)

    def _ideal_snr_db(self, snr_db) -> float:
        """The SNR whose capacity the ideal code achieves end to end.

        One hop: the SNR the channel's call reports (``snr_db`` itself for AWGN). A
        relay chain: the destination-equivalent SNR of each segment between
        decode-and-forward relays (AF/QF noise accumulates within a segment,
        ``state["segment_no"]``), and the worst segment limits the chain (each DF
        relay must decode, the cut-set bound of a line network).
        """
        out = self.channel(tf.zeros([1, 1], tf.complex64), snr_db)
        segments = out["state"].get("segment_no")
        if not segments:
            return float(out["snr_db"])
        worst = max(float(no) for no in segments)
        return float(-10.0 * np.log10(worst))

    def _evaluate_ideal(self, state: _SourceState, snr_db) -> BatchResult:
        snr_db = self._ideal_snr_db(snr_db)
        encoded = self.tx.source_encode(state.images, snr_db)
        b = len(state.images)
        images = np.empty_like(state.images)
        failures = 0
        source_bits = 0
        for i, e in enumerate(encoded):
            img = self.rx.decode_payload(e.payload)  # error-free delivery
            if img is None:
                failures += 1
                img = self.rx.fallback
            else:
                source_bits += e.bits + FRAME_HEADER_BITS
            images[i] = img
        counts = {"images": b, "source_bits": source_bits, "channel_uses": b * self.tx.channel_uses,
                  "used_channel_uses": b * self.tx.channel_uses, "bit_errors": 0,
                  "bits": b * self.tx.source_budget_bits(snr_db), "block_errors": 0, "blocks": b,
                  "detected_block_failures": 0, "decode_failures": failures}
        return BatchResult(images, counts)


SCHEMES.register("sscc")(SeparationScheme)
