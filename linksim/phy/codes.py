"""Channel codes: the IEEE 802.11n LDPC codes, 5G NR LDPC, no code (uncoded), and an ideal code.

Every practical code offers the same three steps, built from Sionna blocks:

- ``encode(u)``: information bits ``[..., k]`` -> codeword bits ``[..., n]``;
- ``decode(llr)``: channel LLRs ``[..., n]`` (Sionna's logit convention,
  ``log p(b=1) / p(b=0)``) -> ``(u_hat [..., k], block_ok [...])``, where
  ``block_ok`` is the code's own failure detection: the parity check of the
  decoded word (802.11n) or the code-block CRC (5G NR, as in TS 38.212);
- the sizes ``n`` (coded bits per codeword) and ``k`` (information bits per
  codeword the source may fill).

The LDPC codes decode with early stopping by default (``early_stop=True``,
:mod:`linksim.phy.bp_early_stop`): BP runs in short chunks, and after each chunk the
words whose hard decisions satisfy every parity check leave the batch.  Called eagerly
(the way :class:`~linksim.phy.link.DigitalLink` calls it) ``decode`` runs that driver,
whose chunks are XLA-compiled; traced inside a ``tf.function`` it falls back to Sionna's
fixed-iteration decoder.  The two take the same decisions for every word that never
passes its checks, and for every word on which fixed-iteration decoding ends at a
codeword; early stopping keeps the codeword a word reached, which plain BP very rarely
leaves again (then its block fails).  Words far below the waterfall (too little information
in their channel LLRs) skip the chunks: one fixed-iteration call.  ``early_stop=False`` always
decodes with a fixed ``num_iter`` iterations.

The ideal code is not a code: it stands for a capacity-achieving channel code of
infinite length, which delivers ``floor(k_cu * log2(1 + SNR))`` bits error-free
over ``k_cu`` channel uses.  Papers draw it as the upper bound of any separation
scheme.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import tensorflow as tf
from sionna.phy.fec.crc import CRCDecoder, CRCEncoder
from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder, LDPCBPDecoder
from sionna.phy.fec.linear import LinearEncoder
from sionna.phy.fec.utils import make_systematic

from linksim.phy.bp_early_stop import DEFAULT_HOPELESS_THRESHOLD, shared_decoder
from linksim.phy.ieee80211n import BASE_MATRICES_1944, Z_1944, lift
from linksim.registry import CHANNEL_CODES

__all__ = ["ChannelCode", "LDPC80211n", "LDPC5G", "Uncoded", "IdealCode", "CN_UPDATES"]

#: the 802.11n codes' hopeless-word threshold (:class:`~linksim.phy.bp_early_stop.EarlyStopBPDecoder`): chosen
#: for cost, not certainty (a hopeless word gets plain decoding's decisions either way, so the threshold only
#: moves time).  Measured on 2,000 words per SNR over each code's waterfall (rates 1/2 and 2/3 on QPSK, 1/2 and
#: 3/4 on 16-QAM, 3/4 on QPSK, 5/6 on 64-QAM; benchmarks/ldpc_hopeless_threshold.py): of the words missing more
#: than half of the redundancy, at most 6 per SNR converged within 20 iterations (after 17.5-20), costing at
#: most 0.008 iterations per word; 0.45 would cost up to 0.97 per word mid-waterfall, and the earlier 0.55 left
#: 86 % of the 3/4 code's words at 9 dB Es/N0 on 16-QAM (BLER 1) in chunks.
HOPELESS_THRESHOLD_80211N = 0.5
#: the 5G NR codes' hopeless-word threshold, on the word the decoder iterates on (see LDPC5G).  Measured by
#: cost (benchmarks/ldpc_hopeless_threshold.py, 2,000 words per SNR, the (k, n) of the shipped scenarios on
#: 16-QAM): 0.65 would cost nothing for n >= 392 but 0.65 iterations per word for (147, 196), whose
#: filler and punctured bits make its estimate read high; 0.75 costs at most 0.27 there (9 dB, BLER 0.94).
#: 0.65 did not make scenarios/multihop_rayleigh.yaml's (972, 1944) code faster either (docs/scaling.md)
HOPELESS_THRESHOLD_5G = DEFAULT_HOPELESS_THRESHOLD

_SYSTEMATIC: dict = {}


def _systematic(rate: str) -> tuple:
    """``(encoder, info_positions)`` of the 802.11n (1944) code of ``rate``, one pair per process.

    Sionna's ``LinearEncoder`` and :func:`_info_positions` each bring the parity-check matrix to
    systematic form by Gaussian elimination (about 0.1 s each, with the encoder's check), and a
    channel sweep builds a code object per scheme and chain.
    """
    if rate not in _SYSTEMATIC:
        pcm = lift(BASE_MATRICES_1944[rate], Z_1944)
        _SYSTEMATIC[rate] = (LinearEncoder(pcm, is_pcm=True), _info_positions(pcm))
    return _SYSTEMATIC[rate]


#: check-node update rules of Sionna's BP decoders
CN_UPDATES = ("boxplus-phi", "boxplus", "minsum", "offset-minsum")


def _check_common(num_iter, cn_update, early_stop=True):
    if not isinstance(num_iter, (int, np.integer)) or num_iter < 1:
        raise ValueError(f"num_iter must be a positive integer (got {num_iter!r})")
    if cn_update not in CN_UPDATES:
        raise ValueError(f"cn_update must be one of {', '.join(CN_UPDATES)} (got {cn_update!r})")
    if not isinstance(early_stop, (bool, np.bool_)):
        raise ValueError(f"early_stop must be true or false (got {early_stop!r})")


class ChannelCode:
    """Base class of the channel codes (see the module docstring)."""

    #: True only for :class:`IdealCode`
    is_ideal = False
    #: ``decode(llr, retire=fn)`` stops the words ``fn`` retires
    #: (:class:`~linksim.phy.bp_early_stop.EarlyStopBPDecoder`); only where a block's ``ok`` is the decoder's
    #: own parity check, so that a word's passing is known when it converges (not the 5G NR code: its CRC decides)
    retires_words = False
    n: int
    k: int

    @property
    def rate(self) -> float:
        """Information bits per coded bit the source sees (k / n)."""
        return self.k / self.n

    def encode(self, u: tf.Tensor) -> tf.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, llr: tf.Tensor):  # pragma: no cover - interface
        raise NotImplementedError

    def get_config(self) -> dict:  # pragma: no cover - interface
        raise NotImplementedError


@CHANNEL_CODES.register("ldpc_80211n")
class LDPC80211n(ChannelCode):
    """IEEE 802.11n LDPC code, n = 1944 (Z = 81), BP decoding with parity check.

    The parity-check matrix is lifted from the standard's base matrix
    (:mod:`linksim.phy.ieee80211n`); encoding uses Sionna's
    ``LinearEncoder(pcm, is_pcm=True)`` and decoding ``LDPCBPDecoder``.  A block
    is flagged as failed when the decoded hard word has a non-zero syndrome.

    Parameters
    ----------
    n : int
        Codeword length; 1944 (the only length implemented).
    rate : {"1/2", "2/3", "3/4", "5/6"}
        Code rate; the SD-JSCC paper uses "3/4" (k = 1458), the default.
    num_iter : int
        BP iterations (default 20).
    cn_update : str
        Check-node rule, one of :data:`CN_UPDATES` (default ``boxplus-phi``).
    early_stop : bool
        Stop iterating on a word once its hard decisions satisfy every parity check
        (default True; :mod:`linksim.phy.bp_early_stop`).  False: always ``num_iter``
        iterations.

    Raises
    ------
    ValueError
        For an unsupported ``n``, ``rate`` or decoder option.
    """

    def __init__(self, n: int = 1944, rate: str = "3/4", num_iter: int = 20,
                 cn_update: str = "boxplus-phi", early_stop: bool = True):
        if n != 1944:
            raise ValueError(f"ldpc_80211n: n must be 1944 (got {n!r})")
        rate = str(rate)
        if rate not in BASE_MATRICES_1944:
            raise ValueError(f"ldpc_80211n: rate must be one of {', '.join(BASE_MATRICES_1944)} (got {rate!r})")
        try:
            _check_common(num_iter, cn_update, early_stop)
        except ValueError as exc:
            raise ValueError(f"ldpc_80211n: {exc}") from None
        self.early_stop = bool(early_stop)
        self.n, self.rate_str, self.num_iter, self.cn_update = 1944, rate, int(num_iter), cn_update
        self.pcm = lift(BASE_MATRICES_1944[rate], Z_1944)
        self.k = self.n - self.pcm.shape[0]
        assert Fraction(self.k, self.n) == Fraction(rate)
        self._encoder, self.info_positions = _systematic(rate)
        self._decoder = LDPCBPDecoder(self.pcm, num_iter=self.num_iter, cn_update=cn_update,
                                      hard_out=True)
        self._pcm_t = tf.constant(self.pcm.T, tf.float32)

    def encode(self, u):
        return self._encoder(u)

    def syndrome_ok(self, c):
        """True per word where ``c`` [..., n] (0/1, float) satisfies H c = 0."""
        s = tf.math.floormod(tf.tensordot(tf.cast(c, tf.float32), self._pcm_t, axes=1), 2.0)
        return tf.reduce_all(tf.equal(s, 0.0), axis=-1)

    retires_words = True

    def decode(self, llr, retire=None):
        """Hard information bits and the parity check per block; ``retire`` (early stopping, eager): see
        :attr:`ChannelCode.retires_words`."""
        if self.early_stop and tf.executing_eagerly():
            out = shared_decoder(self.pcm, self.num_iter, self.cn_update,
                                 hopeless_threshold=HOPELESS_THRESHOLD_80211N)(llr, retire=retire)
            c_hat, ok = out["c_hat"], out["ok"]
        else:
            c_hat = self._decoder(llr)
            ok = self.syndrome_ok(c_hat)
        return tf.gather(c_hat, self.info_positions, axis=-1), ok

    def get_config(self) -> dict:
        return {"type": "ldpc_80211n", "n": self.n, "rate": self.rate_str, "num_iter": self.num_iter,
                "cn_update": self.cn_update, "early_stop": self.early_stop}


def _info_positions(pcm: np.ndarray) -> np.ndarray:
    """Codeword positions of the information bits of ``LinearEncoder(pcm, is_pcm=True)``.

    Sionna builds ``G = [I | M]`` from a column-permuted systematic form of the
    parity-check matrix and then undoes the column swaps; tracking the same swaps
    on the index vector tells where each information bit lands.
    """
    k = pcm.shape[1] - pcm.shape[0]
    _, swaps = make_systematic(pcm, is_pcm=True)
    pos = np.arange(pcm.shape[1])
    for a, b in swaps[::-1]:
        pos[[a, b]] = pos[[b, a]]
    where = np.empty(k, np.int64)
    for col, src in enumerate(pos):
        if src < k:
            where[src] = col
    return where


@CHANNEL_CODES.register("ldpc5g")
class LDPC5G(ChannelCode):
    """5G NR LDPC code (TS 38.212) of any (k, n), with a CRC per code block.

    Sionna's ``LDPC5GEncoder`` / ``LDPC5GDecoder`` do the lifting, rate matching
    and BP decoding.  Like 5G's code-block CRC, ``crc`` bits of every block are a
    CRC of the rest (Sionna's ``CRCEncoder``), so a failed block is detected; the
    source fills ``k - crc_length`` bits per codeword.

    Parameters
    ----------
    k, n : int
        Information bits (including the CRC) and coded bits per codeword.
    crc : {"CRC24B", "CRC24A", "CRC16", "CRC11", "CRC6", None}
        Per-block CRC (default CRC24B, the code-block CRC of 5G NR); None: no
        detection (every block reported as decoded).
    num_iter : int
    cn_update : str
    early_stop : bool
        Stop iterating on a word once the decoder's internal (mother-code) word satisfies
        every parity check of the lifted, pruned base graph (default True;
        :mod:`linksim.phy.bp_early_stop`).  This is the parity check of the word Sionna's
        ``LDPC5GDecoder`` iterates on, not the CRC: the CRC still decides ``block_ok``.
    """

    CRCS = ("CRC24A", "CRC24B", "CRC24C", "CRC16", "CRC11", "CRC6")

    def __init__(self, k: int = 1458, n: int = 1944, crc: str | None = "CRC24B", num_iter: int = 20,
                 cn_update: str = "boxplus-phi", early_stop: bool = True):
        try:
            _check_common(num_iter, cn_update, early_stop)
        except ValueError as exc:
            raise ValueError(f"ldpc5g: {exc}") from None
        self.early_stop = bool(early_stop)
        if crc is not None and crc not in self.CRCS:
            raise ValueError(f"ldpc5g: crc must be one of {', '.join(self.CRCS)} or null (got {crc!r})")
        try:
            self._encoder = LDPC5GEncoder(int(k), int(n))
        except (ValueError, AssertionError, TypeError) as exc:
            raise ValueError(f"ldpc5g: unsupported (k, n) = ({k}, {n}): {exc}") from None
        self._decoder = LDPC5GDecoder(self._encoder, num_iter=int(num_iter), cn_update=cn_update,
                                      hard_out=True, return_infobits=True)
        self.k_code, self.n, self.crc, self.num_iter, self.cn_update = int(k), int(n), crc, int(num_iter), cn_update
        if crc:
            self._crc_enc = CRCEncoder(crc)
            self._crc_dec = CRCDecoder(self._crc_enc)
            self.k = self.k_code - self._crc_enc.crc_length
        else:
            self.k = self.k_code

    def encode(self, u):
        if self.crc:
            u = self._crc_enc(u)
        return self._encoder(u)

    def _mother_llr(self, llr):
        """Channel LLRs [..., n] -> LLRs of the decoder's internal word [N, n_pruned].

        The rate recovery of Sionna's ``LDPC5GDecoder.call`` (output de-interleaving, the
        punctured first 2Z positions, the punctured tail up to the pruned length, the
        filler bits as known zeros), repeated here so that the early-stopping driver can
        iterate on the same word and check its parity.
        """
        dec, enc = self._decoder, self._encoder
        x = tf.reshape(llr, [-1, enc.n])
        b = tf.shape(x)[0]
        if enc.num_bits_per_symbol is not None:
            x = tf.gather(x, enc.out_int_inv, axis=-1)
        k_filler = enc.k_ldpc - enc.k
        nb_punc = (enc.n_ldpc - k_filler) - enc.n - 2 * enc.z
        x = tf.concat([tf.zeros([b, 2 * enc.z]), x, tf.zeros([b, nb_punc - dec._nb_pruned_nodes])], axis=1)
        nb_par = enc.n_ldpc - k_filler - enc.k - dec._nb_pruned_nodes
        filler = -tf.cast(dec.llr_max, tf.float32) * tf.ones([b, k_filler])
        return tf.concat([x[:, :enc.k], filler, x[:, enc.k:enc.k + nb_par]], axis=1)

    def decode(self, llr):
        if self.early_stop and tf.executing_eagerly():
            # eager: a few gathers and concatenations (0.6 ms for 250 words; XLA: 1.0 ms and 0.11 s to compile
            # each batch shape)
            out = shared_decoder(self._decoder.pcm, self.num_iter, self.cn_update,
                                 hopeless_threshold=HOPELESS_THRESHOLD_5G)(self._mother_llr(llr))
            u_hat = tf.reshape(out["c_hat"][:, :self.k_code], tf.concat([tf.shape(llr)[:-1], [self.k_code]], 0))
        else:
            u_hat = self._decoder(llr)
        if not self.crc:
            return u_hat, tf.ones(tf.shape(u_hat)[:-1], tf.bool)
        u, ok = self._crc_dec(u_hat)
        return u, tf.squeeze(ok, -1)

    def get_config(self) -> dict:
        return {"type": "ldpc5g", "k": self.k_code, "n": self.n, "crc": self.crc, "num_iter": self.num_iter,
                "cn_update": self.cn_update, "early_stop": self.early_stop}


@CHANNEL_CODES.register("none")
class Uncoded(ChannelCode):
    """No channel code: the bits go straight to the modulation (``channel_code: {type: none}``).

    ``encode`` is the identity; ``decode`` takes hard decisions on the LLRs (bit 1 where
    ``llr > 0``, Sionna's logit convention).  With ``maxlog`` demapping these are the bits
    of the nearest constellation point, the detector of the textbook BER curves
    (:mod:`linksim.phy.theory`); with ``app`` the bit-wise MAP decisions, slightly better at
    low SNR for 16-QAM and above.  Nothing detects errors: every block is reported
    decoded (``block_ok`` True), so a separation receiver decodes whatever arrived.

    Parameters
    ----------
    n : int
        Bits per block (default 8, one byte): ``bler`` is then the byte error rate; an
        image carries ``floor(k log2(M) / n)`` blocks.
    """

    def __init__(self, n: int = 8):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"none: n must be a positive integer (bits per block), got {n!r}")
        self.n = self.k = int(n)

    def encode(self, u):
        return tf.cast(u, tf.float32)

    def decode(self, llr):
        u_hat = tf.cast(llr > 0.0, tf.float32)
        return u_hat, tf.ones(tf.shape(u_hat)[:-1], tf.bool)

    def get_config(self) -> dict:
        return {"type": "none", "n": self.n}


@CHANNEL_CODES.register("ideal")
class IdealCode(ChannelCode):
    """Ideal capacity-achieving code: floor(k * log2(1 + SNR)) bits arrive error-free.

    The upper bound of any separation scheme over an AWGN channel with Gaussian
    inputs; no bits are simulated.  ``n`` and ``k`` are undefined.
    """

    is_ideal = True

    def __init__(self):
        self.n = self.k = None

    @staticmethod
    def ideal_info_bits(channel_uses: int, snr_db: float) -> int:
        """Bits an image gets over ``channel_uses`` complex channel uses at Es/N0 ``snr_db``."""
        return int(math.floor(channel_uses * math.log2(1.0 + 10.0 ** (snr_db / 10.0))))

    @property
    def rate(self) -> float:  # pragma: no cover - not meaningful
        raise AttributeError("the ideal code has no fixed rate")

    def get_config(self) -> dict:
        return {"type": "ideal"}
