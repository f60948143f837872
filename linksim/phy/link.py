"""The coded digital link: channel encoder -> QAM mapper -> channel -> demapper -> decoder.

:class:`DigitalLink` compiles the two halves of the chain with ``tf.function``
(XLA by default: on a 2-core CPU the BP decoder runs about 2.5 times faster under
XLA, see ``benchmarks/``):

- :meth:`DigitalLink.transmit`: information bits ``[B, C, k]`` of ``C``
  codewords per image -> complex symbols ``[B, S]`` (unit average energy);
- :meth:`DigitalLink.detect`: received symbols and noise variance -> soft
  demapping -> BP decoding -> bits and a per-block success flag;
- :meth:`DigitalLink.receive`: symbols -> channel at ``snr_db`` -> soft demapping
  with the noise variance the channel's call returned -> BP decoding -> bits and
  a per-block success flag (False also where a decode-and-forward relay on the
  way failed its parity check: the channel's ``state["relay_ok"]``).

The link binds its channel once (``channel.bind(regenerate=..., constellation=...)``):
decode-and-forward relays regenerate with this link's code and report their
parity checks, quantize-and-forward relays tune to this link's QAM.

With an early-stopping code (``early_stop: true``, the default of the LDPC codes,
:mod:`linksim.phy.bp_early_stop`) the receive half is orchestrated from Python
instead of being one compiled graph: the channel runs eagerly (its decode-and-forward
relays call :meth:`DigitalLink._regenerate_impl` eagerly too), the demapper and the
transmitter are compiled with XLA, and the BP decoder's driver gathers the words that
have not converged and runs XLA-compiled chunks of iterations on them.  Results are
deterministic for a given seed either way (the random draws come from the channel's
seeded generators; the decoder draws none).

A scheme transmits once per batch and receives once per SNR point, so the
encoder does not run again for every SNR point.  :meth:`DigitalLink.run` does
both (what the throughput benchmark times).
"""

from __future__ import annotations

import tensorflow as tf

from linksim.channels.awgn import AWGNChannel
from linksim.phy.bp_early_stop import rotation_losers

__all__ = ["DigitalLink"]


class DigitalLink:
    """Channel code + QAM + channel, compiled.

    Parameters
    ----------
    code : ChannelCode
        A practical code (:class:`~linksim.phy.codes.LDPC80211n`, :class:`~linksim.phy.codes.LDPC5G`).
    modulation : QAM
    channel : Channel
        Any channel of the :class:`~linksim.channels.base.Channel` contract; bound
        here to this link's regeneration and constellation.  Default
        :class:`~linksim.channels.AWGNChannel`.
    jit_compile : bool
        Compile with XLA (default True).

    Raises
    ------
    ValueError
        If ``code`` is the ideal code (it sends no bits).
    """

    def __init__(self, code, modulation, channel=None, jit_compile: bool = True):
        if getattr(code, "is_ideal", False):
            raise ValueError("the ideal code sends no bits; DigitalLink needs a practical code")
        self.code, self.modulation = code, modulation
        self.m = modulation.num_bits_per_symbol
        channel = channel if channel is not None else AWGNChannel()
        self.channel = channel.bind(regenerate=self._regenerate_impl,
                                    constellation=modulation.mapper.constellation.points.numpy())
        self.jit_compile = jit_compile
        #: the receive half runs from Python with the code's early-stopping decoder
        self.early_stop = bool(getattr(code, "early_stop", False))
        self._transmit = tf.function(self._transmit_impl, jit_compile=jit_compile, reduce_retracing=True)
        self._llr = tf.function(self._llr_impl, jit_compile=jit_compile, reduce_retracing=True)
        self._receive = tf.function(self._receive_impl, jit_compile=jit_compile, reduce_retracing=True)
        self._detect = tf.function(self._detect_impl, jit_compile=jit_compile, reduce_retracing=True)

    def symbols_per_image(self, num_codewords: int) -> int:
        """Channel uses that ``num_codewords`` codewords fill (the last symbol zero-padded)."""
        return -(-num_codewords * self.code.n // self.m)

    # ------------------------------------------------------------------ graph functions
    def _transmit_impl(self, info_bits):
        shape = tf.shape(info_bits)
        c = self.code.encode(info_bits)                      # [B, C, n]
        n_coded = int(info_bits.shape[-2]) * self.code.n     # static C*n, also when traced inside a DF relay
        c = tf.reshape(c, [shape[0], n_coded])               # [B, C*n]
        pad = (-n_coded) % self.m
        if pad:
            c = tf.pad(c, [[0, 0], [0, pad]])
        return self.modulation.mapper(c)                     # [B, S]

    def _llr_impl(self, y, no, num_codewords):
        no = tf.cast(no, tf.float32)
        if no.shape.rank == 1:
            no = no[:, tf.newaxis]                           # one per image: broadcast over its symbols
        llr = self.modulation.demapper(y, no)                # [B, S*m]
        n_bits = num_codewords * self.code.n
        return tf.reshape(llr[:, :n_bits], [-1, num_codewords, self.code.n])

    def _detect_impl(self, y, no, num_codewords, retire=None):
        """Demap and decode: in one graph when traced, or compiled demapper + eager decoder driver.

        ``retire`` (a code that :attr:`~linksim.phy.codes.ChannelCode.retires_words`, eager only): the words
        whose decoding may stop early, see :class:`~linksim.phy.bp_early_stop.EarlyStopBPDecoder`."""
        if self.early_stop and tf.executing_eagerly():
            llr = self._llr(y, tf.cast(no, tf.float32), num_codewords)
            return self.code.decode(llr) if retire is None else self.code.decode(llr, retire=retire)
        return self.code.decode(self._llr_impl(y, no, num_codewords))

    def _regenerate_impl(self, y, no):
        """A decode-and-forward relay: demap, BP-decode, re-encode and map the bits.

        The relay forwards what its decoder decided and reports each block's parity
        check as ``ok`` [B, C]: a block it failed to decode re-encodes into a valid
        codeword whose check passes at the destination, so the destination ANDs
        ``ok`` into its own check (``state["relay_ok"]``) and the block counts as failed.
        """
        num_codewords = (int(y.shape[-1]) * self.m) // self.code.n
        u_hat, ok = self._detect_impl(y, no, num_codewords)
        transmit = self._transmit if tf.executing_eagerly() else self._transmit_impl
        return {"x": transmit(u_hat), "ok": ok}

    def _blind_detect_impl(self, y, no, coherence: int, num_codewords):
        """Detection without channel knowledge (a fading channel with ``csi: none``).

        Per coherence block of ``coherence`` symbols the receiver estimates the gain
        blindly: ``|h|^2 = max(mean |y|^2 - no, 0.01 mean |y|^2)`` (the symbols have unit
        energy) and the phase by the fourth-power estimator, ``arg(-sum y^4) / 4``
        (square QAM has ``E[x^4] < 0``), which leaves a four-fold ambiguity (multiples of
        90 degrees).  The four rotations are each demapped and decoded, and each image
        takes the one under which the most codewords pass the code's check (the first on
        a tie).  With an early-stopping code whose check is its decoder's
        (:attr:`~linksim.phy.codes.ChannelCode.retires_words`: the 802.11n codes), a rotation stops
        decoding once it can no longer be chosen (:func:`~linksim.phy.bp_early_stop.rotation_losers`):
        the same choice and decisions, without running the wrong rotations after the right one has
        passed to the last iteration.  One rotation index per image: the ambiguity is resolved when one
        coefficient spans the image (``coherence: image``); with shorter blocks each block
        has its own, and decoding mostly fails.  Without error detection (``channel_code:
        none``) the first rotation is always taken.
        """
        batch, s = (y.shape[0] if y.shape[0] is not None else tf.shape(y)[0]), int(y.shape[-1])
        coherence = int(coherence)
        blocks = s // coherence
        yb = tf.reshape(y, [batch, blocks, coherence])
        no = tf.cast(no, tf.float32)
        no_b = tf.reshape(no, [-1, 1, 1]) if no.shape.rank else no
        power = tf.reduce_mean(tf.square(tf.abs(yb)), axis=-1, keepdims=True)
        gain2 = tf.maximum(power - no_b, 0.01 * power)
        theta = tf.math.angle(-tf.reduce_sum(tf.pow(yb, 4), axis=-1, keepdims=True)) / 4.0
        h_hat = tf.complex(tf.sqrt(gain2) * tf.cos(theta), tf.sqrt(gain2) * tf.sin(theta))
        y_eq = tf.reshape(yb / h_hat, [batch, s])                                       # [B, S]
        no_eq = tf.reshape(tf.broadcast_to(no_b / gain2, [batch, blocks, coherence]), [batch, s])
        turns = tf.constant([1 + 0j, 1j, -1 + 0j, -1j], tf.complex64)                 # [4]
        y4 = tf.reshape(y_eq[tf.newaxis] * turns[:, tf.newaxis, tf.newaxis], [4 * batch, s])
        no4 = tf.tile(no_eq, [4, 1])
        retire = (rotation_losers(4, int(batch), int(num_codewords))
                  if self.code.retires_words and tf.executing_eagerly() else None)
        u4, ok4 = self._detect_impl(y4, no4, num_codewords, retire)                        # [4B, C, k], [4B, C]
        u4 = tf.reshape(u4, [4, batch, num_codewords, -1])
        ok4 = tf.reshape(ok4, [4, batch, num_codewords])
        best = tf.argmax(tf.reduce_sum(tf.cast(ok4, tf.int32), axis=-1), axis=0, output_type=tf.int32)   # [B]
        pick = tf.stack([best, tf.range(batch)], axis=1)
        return tf.gather_nd(u4, pick), tf.gather_nd(ok4, pick)

    def _receive_impl(self, symbols, snr_db, num_codewords):
        """Channel, then detection; a graph function, or run eagerly with an early-stopping code."""
        out = self.channel(symbols, snr_db)
        if out["state"].get("csi") == "none":
            u_hat, ok = self._blind_detect_impl(out["y"], out["no"], out["state"]["coherence"], num_codewords)
        else:
            u_hat, ok = self._detect_impl(out["y"], out["no"], num_codewords)
        relay_ok = out["state"].get("relay_ok")
        if relay_ok is not None:
            ok = tf.logical_and(ok, relay_ok)
        return u_hat, ok

    # ------------------------------------------------------------------ public API
    def transmit(self, info_bits) -> tf.Tensor:
        """Encode and map.

        Input
        -----
        info_bits : [B, C, k], tf.float32 in {0, 1}

        Output
        ------
        [B, S], tf.complex64, S = ceil(C * n / m), unit average energy
        """
        return self._transmit(tf.convert_to_tensor(info_bits, tf.float32))

    def detect(self, y, no, num_codewords: int) -> dict:
        """Demap and decode received symbols (no channel).

        Input
        -----
        y : [B, S], tf.complex64, received symbols
        no : float or tf.float32, noise variance per complex symbol
        num_codewords : int, C

        Output
        ------
        dict with ``bits`` [B, C, k] tf.float32 and ``block_ok`` [B, C] tf.bool
        """
        detect = self._detect_impl if self.early_stop else self._detect
        u_hat, ok = detect(tf.convert_to_tensor(y), tf.cast(no, tf.float32), int(num_codewords))
        return {"bits": u_hat, "block_ok": ok}

    def receive(self, symbols, snr_db: float, num_codewords: int) -> dict:
        """Send ``symbols`` through the channel at ``snr_db`` and decode.

        Input
        -----
        symbols : [B, S], tf.complex64
        snr_db : float, or a list of per-hop values for a multi-hop channel; Es/N0 in dB
        num_codewords : int, C

        Output
        ------
        dict with ``bits`` [B, C, k] tf.float32 and ``block_ok`` [B, C] tf.bool
        """
        receive = self._receive_impl if self.early_stop else self._receive   # eager: the decoder driver runs in Python
        u_hat, ok = receive(tf.convert_to_tensor(symbols), tf.constant(snr_db, tf.float32),
                            int(num_codewords))  # snr_db: scalar or per hop
        return {"bits": u_hat, "block_ok": ok}

    def run(self, info_bits, snr_db: float) -> dict:
        """:meth:`transmit` then :meth:`receive`; ``info_bits`` [B, C, k]."""
        info_bits = tf.convert_to_tensor(info_bits, tf.float32)
        return self.receive(self.transmit(info_bits), snr_db, int(info_bits.shape[1]))
