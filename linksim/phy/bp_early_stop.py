"""LDPC belief-propagation decoding that stops early, built on Sionna's ``LDPCBPDecoder``.

Sionna's BP decoder runs a fixed number of iterations for the whole batch ("due to
batching, no early stopping"), but its ``call(llr, num_iter=, msg_v2c=)`` can resume
from the variable-to-check messages it returns (``return_state=True``).
:class:`EarlyStopBPDecoder` uses that:

0. words far below the waterfall skip the rest: the soft-bit estimate of each word's
   mutual information, ``I = 1 - mean log2(1 + exp(-|L|))`` over its channel LLRs
   (:func:`soft_bit_information`, one small compiled call), is compared with the code's
   design rate ``R``; a word missing more than ``hopeless_threshold`` of the redundancy,
   ``1 - I > hopeless_threshold * (1 - R)``, cannot converge (calibrated with a margin:
   :data:`DEFAULT_HOPELESS_THRESHOLD`) and is decoded by one plain ``num_iter``-iteration
   call, exactly fixed-iteration decoding.  A batch of such words is one call (the cost of
   plain decoding plus the estimate, ~0.5 %); in a mixed batch a bucket of them goes plain
   only where that cannot be slower (:meth:`EarlyStopBPDecoder._split`);
1. run ``stop_check_every`` iterations on every word of the batch (one XLA-compiled
   function; it also returns the hard decisions and the parity check ``H c = 0`` of each
   word, computed sparsely from the check nodes' neighbour lists);
2. words whose hard decisions satisfy every parity check leave the batch: their
   decisions are final;
3. when the remaining words fit a *bucket* smaller than the current batch (the full
   batch first; then sizes ``2^j`` and ``3 * 2^(j-1)``, so that XLA sees few distinct
   shapes), they and their messages are gathered into a batch of that size (padded with
   copies); otherwise the batch stays as it is, the rows of departed words iterating on
   unread;
4. the next chunk resumes from the messages, until no word is left or ``num_iter``
   iterations ran.  A chunk after which no word left is followed by one twice as long
   (up to :data:`MAX_CHUNK`), so that below the waterfall, where no word converges,
   few chunks (and parity checks) run: 2 + 4 + 8 + 6 for 20 iterations.

The driver runs in Python (numpy), outside XLA; each chunk function is compiled once per
batch size (the chunk length is a tensor; the plain call of step 0 is the first chunk's
function with ``num_iter`` iterations, no extra compilation), and so is the gather that
compacts the batch (~4x faster than eager TensorFlow's gather of the messages).

Equality with fixed-iteration decoding
--------------------------------------
With the flooding schedule (Sionna's default, the one linksim uses) an iteration
depends only on the channel LLRs and the incoming variable-to-check messages (the
check-to-variable messages are recomputed from them), so resuming from ``msg_v2c`` is
the same computation as running on: a hopeless word, and a word that never satisfies its
parity checks, ends
with exactly the decisions of ``num_iter`` plain iterations.  A word that satisfies them
after ``j < num_iter`` iterations leaves with its decisions at ``j``, a valid codeword;
plain decoding would iterate on.  BP does not stop at a codeword by itself, and its hard
decisions can leave it again, rarely: checking after every iteration, 2 of 6,144 words of
the 802.11n (1944, 1458) code on 16-QAM at 9.5-10.5 dB Es/N0 did (both times the right
codeword; plain decoding then ended on a word that fails its checks); checking every 2
iterations (the default), none of them did.  So, in every batch tested, the decisions
equal plain decoding's wherever plain decoding ends at a codeword, and where they differ
early stopping has found a codeword (its BLER is the same or marginally lower).  The
tests compare both decoders word by word on real batches at several SNRs.  Floating
point could differ in the last bit between batch shapes under XLA; no decision has been
seen to change by it.

Only the flooding schedule is supported (a layered schedule keeps check-to-variable
state that ``return_state`` does not return).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import tensorflow as tf
from sionna.phy.fec.ldpc import LDPCBPDecoder

__all__ = ["EarlyStopBPDecoder", "shared_decoder", "DEFAULT_STOP_CHECK_EVERY", "DEFAULT_HOPELESS_THRESHOLD",
           "MAX_CHUNK", "soft_bit_information"]

#: iterations per chunk between two parity checks (measured: benchmarks/ldpc_early_stop.py)
DEFAULT_STOP_CHECK_EVERY = 2
#: after a chunk where no word converged the next is this many times as long, up to MAX_CHUNK
CHUNK_GROWTH = 2
MAX_CHUNK = 8
#: a word whose missing information ``1 - I`` exceeds this fraction of the redundancy ``1 - R`` is hopeless.
#: Measured (tests' seeds, 500 words per SNR, 20 iterations): the words that converged had at most 0.41-0.48
#: of the redundancy missing on the 802.11n codes (n = 1944, rates 1/2, 2/3 on QPSK, 3/4 on 16-QAM,
#: 5/6 on 64-QAM), at most 0.57-0.62 on 5G NR (512, 384) QPSK and (1944, 1458) 16-QAM
#: (:mod:`linksim.phy.codes` sets 0.5 for 802.11n, by cost on 2,000 words per SNR; this conservative default
#: serves any code).
DEFAULT_HOPELESS_THRESHOLD = 0.75
#: the fixed cost of the chunks of a word that runs every iteration, in iterations (measured: ~4 chunks, ~0.35 each)
CHUNKS_OVERHEAD = 1.5


def _check_neighbours(pcm) -> np.ndarray:
    """[num_checks, max_degree] variable indices of each check, padded with ``n`` (a zero column)."""
    pcm = sp.csr_matrix(pcm)
    m, n = pcm.shape
    rows = [pcm.indices[pcm.indptr[i]:pcm.indptr[i + 1]] for i in range(m)]
    width = max(len(r) for r in rows)
    idx = np.full((m, width), n, np.int32)
    for i, r in enumerate(rows):
        idx[i, :len(r)] = r
    return idx


def soft_bit_information(llr, llr_max: float = 20.0):
    """Soft-bit estimate of the mutual information per bit of each word, ``1 - mean log2(1 + exp(-|L|))``.

    Input: LLRs [..., n] (either sign convention; clipped at ``llr_max`` as the decoder clips them).
    Output: [...], tf.float32, in [0, 1].  For consistent LLRs (exact APP demapping) this is an
    unbiased estimate of the bit-channel's mutual information, so a word far below the code rate
    cannot be decoded (see :data:`DEFAULT_HOPELESS_THRESHOLD`).
    """
    a = tf.minimum(tf.abs(tf.convert_to_tensor(llr, tf.float32)), llr_max)
    return 1.0 - tf.reduce_mean(tf.math.log1p(tf.exp(-a)), axis=-1) / float(np.log(2.0))


class EarlyStopBPDecoder:
    """BP decoding of a binary LDPC code that lets converged words leave the batch.

    Parameters
    ----------
    pcm : ndarray or scipy.sparse matrix, [m, n]
        Parity-check matrix.
    num_iter : int
        Maximum number of BP iterations (what fixed-iteration decoding would run).
    cn_update : str
        Check-node rule of Sionna's ``LDPCBPDecoder``.
    stop_check_every : int
        Iterations per chunk: the parity checks run after every chunk.
    llr_max : float
        LLR clipping, as Sionna's decoder (default 20).
    min_bucket : int
        Smallest padded batch a chunk runs on (default 64).  The batch sizes the chunks
        run on are the full batch, then (the buckets) ``2^j`` and ``3 * 2^(j-1)``: at most
        two XLA compilations per octave of batch size, each a few seconds, paid once per
        process (a batch of 500: 500, 384, 256, 192, 128, 96, 64 and the first chunk).
    jit_compile : bool
        Compile the chunks with XLA (default True).
    hopeless_threshold : float or None
        A word whose :func:`soft_bit_information` ``I`` leaves more than ``hopeless_threshold``
        of the code's redundancy missing, ``1 - I > hopeless_threshold * (1 - R)`` with the design
        rate ``R = 1 - m / n``, is *hopeless*: far below the waterfall, it is decoded by one plain
        ``num_iter``-iteration call (no chunks, no intermediate parity checks), exactly
        fixed-iteration decoding.  A batch of only hopeless words is a single call; a mixed
        batch sends its lowest-information words (a bucket size of them, all hopeless) to
        one such call and the rest through the chunks (:meth:`_split`).  ``None`` turns it off.
        The classification changes speed only, never a decision.  Default
        :data:`DEFAULT_HOPELESS_THRESHOLD`.
    first_chunk : int or None
        Length of the first chunk (default ``stop_check_every``).

    Input
    -----
    llr : [..., n], tf.float32
        Channel LLRs, Sionna's logit convention (``log p(b=1) / p(b=0)``).

    Output
    ------
    dict
        ``c_hat`` [..., n] tf.float32 hard decisions; ``ok`` [...] tf.bool, the
        parity check of ``c_hat``; ``iterations`` [...] tf.int32, the iterations each word
        used.

    Raises
    ------
    ValueError
        For a non-positive ``num_iter``, ``stop_check_every``, ``min_bucket`` or ``first_chunk``,
        or a ``hopeless_threshold`` outside (0, 1].
    """

    def __init__(self, pcm, num_iter: int = 20, cn_update: str = "boxplus-phi",
                 stop_check_every: int = DEFAULT_STOP_CHECK_EVERY, llr_max: float = 20.0,
                 min_bucket: int = 64, jit_compile: bool = True,
                 hopeless_threshold=DEFAULT_HOPELESS_THRESHOLD, first_chunk=None):
        first_chunk = stop_check_every if first_chunk is None else first_chunk
        for name, v in (("num_iter", num_iter), ("stop_check_every", stop_check_every), ("min_bucket", min_bucket),
                        ("first_chunk", first_chunk)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer (got {v!r})")
        if hopeless_threshold is not None and (isinstance(hopeless_threshold, bool)
                                               or not isinstance(hopeless_threshold, (int, float))
                                               or not 0 < hopeless_threshold <= 1):
            raise ValueError(f"hopeless_threshold must be in (0, 1] or None (got {hopeless_threshold!r})")
        self.num_iter, self.stop_check_every = int(num_iter), int(stop_check_every)
        self.first_chunk = int(first_chunk)
        self.min_bucket = int(min_bucket)
        self.max_chunk = max(self.stop_check_every, MAX_CHUNK)
        self.growth = CHUNK_GROWTH
        self.n = int(pcm.shape[1])
        #: the design rate 1 - m / n: the information per bit a word needs to be decodable
        self.rate = 1.0 - int(pcm.shape[0]) / self.n
        self.hopeless_threshold = None if hopeless_threshold is None else float(hopeless_threshold)
        self.llr_max = float(llr_max)
        self.decoder = LDPCBPDecoder(pcm, num_iter=self.num_iter, cn_update=cn_update, hard_out=True,
                                     return_state=True, llr_max=llr_max)
        self._neighbours = tf.constant(_check_neighbours(pcm))
        self._first = tf.function(self._first_impl, jit_compile=jit_compile, reduce_retracing=False)
        self._resume = tf.function(self._resume_impl, jit_compile=jit_compile, reduce_retracing=False)
        self._info = tf.function(self._info_impl, jit_compile=jit_compile, reduce_retracing=False)
        self._compact = tf.function(self._compact_impl, jit_compile=jit_compile, reduce_retracing=False)
        #: mean iterations per word of the last :meth:`__call__` (a Python float)
        self.last_mean_iterations = None
        #: compiled decoder calls (plain calls and chunks) of the last :meth:`__call__`
        self.last_decoder_calls = 0
        #: words of the last :meth:`__call__` decoded by the plain call (hopeless ones)
        self.last_plain_words = 0

    # ------------------------------------------------------------------ compiled functions
    def _parity_ok(self, c):
        """True per word where the hard word ``c`` [b, n] satisfies every check."""
        c_t = tf.transpose(c)                                                    # [n, b]: faster gathers
        c_t = tf.concat([c_t, tf.zeros_like(c_t[:1])], axis=0)                   # [n + 1, b]
        s = tf.reduce_sum(tf.gather(c_t, self._neighbours, axis=0), axis=1)      # [m, b]
        return tf.reduce_all(tf.equal(tf.math.floormod(s, 2.0), 0.0), axis=0)

    def _first_impl(self, llr, num_iter):
        c, msg = self.decoder(llr, num_iter=num_iter)
        return c, msg, self._parity_ok(c)

    def _resume_impl(self, llr, msg, num_iter):
        c, msg = self.decoder(llr, num_iter=num_iter, msg_v2c=msg)
        return c, msg, self._parity_ok(c)

    def _info_impl(self, llr):
        return soft_bit_information(llr, self.llr_max)

    @staticmethod
    def _compact_impl(llr, msg, rows):
        """The rows ``rows`` of the batch: LLRs [b, n] and messages [num_edges, b] (XLA: ~4x eager's gather)."""
        return tf.gather(llr, rows), tf.gather(msg, rows, axis=1)

    # ------------------------------------------------------------------ driver
    def _bucket(self, active: int) -> int:
        """The padded batch size for ``active`` words: the next of 2^j or 3 * 2^(j-1), at least ``min_bucket``."""
        if active <= self.min_bucket:
            return self.min_bucket
        p = 1 << (active - 1).bit_length()            # next power of two
        return 3 * p // 4 if 3 * p // 4 >= active else p

    def _bucket_floor(self, count: int) -> int:
        """The largest bucket size not above ``count`` (``count >= min_bucket``)."""
        p = 1 << (count.bit_length() - 1)             # largest power of two <= count
        return max(3 * p // 2 if 3 * p // 2 <= count else p, self.min_bucket)

    def __call__(self, llr) -> dict:
        llr = tf.convert_to_tensor(llr, tf.float32)
        shape = llr.shape
        if shape[-1] != self.n:
            raise ValueError(f"llr must have last dimension n = {self.n} (got shape {shape})")
        flat = tf.reshape(llr, [-1, self.n])
        total = int(flat.shape[0])
        c_out = np.zeros((total, self.n), np.float32)
        ok_out = np.zeros(total, bool)
        it_out = np.full(total, self.num_iter, np.int32)
        self.last_decoder_calls, self.last_plain_words = 0, 0
        if total == 0:
            return self._pack(c_out, ok_out, it_out, shape)
        words = np.arange(total)
        if self.hopeless_threshold is not None:
            plain, words = self._split(self._info(flat).numpy())
            if plain.size == total:                  # one fixed-iteration call, its outputs as they are (no copies)
                c, _, ok = self._first(flat, tf.constant(self.num_iter, tf.int32))
                self.last_decoder_calls, self.last_plain_words = 1, total
                self.last_mean_iterations = float(self.num_iter)
                lead = list(shape[:-1])
                return {"c_hat": tf.reshape(c, lead + [self.n]), "ok": tf.reshape(ok, lead),
                        "iterations": tf.fill(lead, tf.constant(self.num_iter, tf.int32))}
            if plain.size:                           # one fixed-iteration call: the first chunk's function
                c, _, ok = self._first(tf.gather(flat, plain), tf.constant(self.num_iter, tf.int32))
                c_out[plain], ok_out[plain] = c.numpy(), ok.numpy()
                self.last_decoder_calls += 1
                self.last_plain_words = int(plain.size)
        if words.size:
            self._decode_early(flat, words, c_out, ok_out, it_out)
        return self._pack(c_out, ok_out, it_out, shape)

    def _split(self, info):
        """(plain, early): the rows decoded by one fixed-iteration call and those decoded in chunks.

        All rows plain when at most 1/16 of them are not hopeless (those few lose early stopping;
        the chunks' overhead, ~:data:`CHUNKS_OVERHEAD` iterations, is saved on all).  Otherwise a
        bucket of the lowest-information rows, all hopeless, goes plain when that is no slower even
        if no early word converges: the padding the early rows then need must cost less than the
        chunk overhead the plain rows save.
        """
        total = info.size
        everything, nothing = np.arange(total), np.arange(0)
        hopeless = int(np.sum(1.0 - info > self.hopeless_threshold * (1.0 - self.rate)))
        if total - hopeless <= total // 16:
            return (everything, nothing) if hopeless else (nothing, everything)
        if hopeless < self.min_bucket:
            return nothing, everything
        size = self._bucket_floor(hopeless)
        rest = total - size
        if (self._bucket(rest) - rest) * (self.num_iter + CHUNKS_OVERHEAD) > size * CHUNKS_OVERHEAD:
            return nothing, everything
        order = np.argsort(info, kind="stable")
        return np.sort(order[:size]), np.sort(order[size:])

    def _decode_early(self, flat, words, c_out, ok_out, it_out):
        """The chunked early-stopping decoding of the rows ``words`` of ``flat``; fills the outputs."""
        # slot[r]: the word row r of the current (padded) batch decodes, -1 for padding and
        # for words that already left (their rows keep iterating until the next compaction).
        # The whole batch runs as it is (no padding: the decoder should cost what fixed-iteration
        # decoding costs); a part of it is padded to a bucket (few shapes to compile).
        if words.size == flat.shape[0]:
            slot, llr_b = words, flat
        else:
            size = self._bucket(words.size)
            slot = np.concatenate([words, np.full(size - words.size, -1)])
            llr_b = tf.gather(flat, np.concatenate([words, np.repeat(words[:1], size - words.size)]))
        msg_b = None
        done, chunk = 0, self.first_chunk
        while done < self.num_iter:
            step = tf.constant(min(chunk, self.num_iter - done), tf.int32)   # a tensor: one trace per shape
            if msg_b is None:
                c, msg_b, ok = self._first(llr_b, step)
            else:
                c, msg_b, ok = self._resume(llr_b, msg_b, step)
            self.last_decoder_calls += 1
            done += int(step)
            ok = ok.numpy()
            live = slot >= 0
            leave = live & (ok if done < self.num_iter else True)
            if not leave.any():              # nobody left: same batch, next chunk twice as long
                chunk = min(self.growth * chunk, self.max_chunk)
                continue
            chunk = self.stop_check_every
            rows = np.flatnonzero(leave)
            c_out[slot[rows]] = c.numpy()[rows]
            ok_out[slot[rows]] = ok[rows]
            it_out[slot[rows]] = done
            slot = np.where(leave, -1, slot)
            stay = np.flatnonzero(slot >= 0)
            if not stay.size:
                break
            if self._bucket(stay.size) < slot.size:       # compact only when a smaller bucket fits
                size = self._bucket(stay.size)
                rows = np.concatenate([stay, np.repeat(stay[:1], size - stay.size)])
                slot = np.concatenate([slot[stay], np.full(size - stay.size, -1)])
                llr_b, msg_b = self._compact(llr_b, msg_b, tf.constant(rows, tf.int32))

    def _pack(self, c, ok, it, shape) -> dict:
        self.last_mean_iterations = float(it.mean()) if it.size else 0.0
        lead = list(shape[:-1])
        return {"c_hat": tf.reshape(tf.constant(c), lead + [self.n]),
                "ok": tf.reshape(tf.constant(ok), lead),
                "iterations": tf.reshape(tf.constant(it), lead)}


_SHARED: dict = {}


def shared_decoder(pcm, num_iter: int = 20, cn_update: str = "boxplus-phi",
                   stop_check_every: int = DEFAULT_STOP_CHECK_EVERY,
                   hopeless_threshold=DEFAULT_HOPELESS_THRESHOLD) -> EarlyStopBPDecoder:
    """One :class:`EarlyStopBPDecoder` per (code, options) in this process.

    Codes with the same parity-check matrix and options share their decoder and so its
    XLA compilations (the main job's separation schemes each build their own code object).
    """
    m = sp.csr_matrix(pcm)
    key = (m.shape, m.indptr.tobytes(), m.indices.tobytes(), int(num_iter), cn_update, int(stop_check_every),
           hopeless_threshold)
    if key not in _SHARED:
        _SHARED[key] = EarlyStopBPDecoder(pcm, num_iter=num_iter, cn_update=cn_update,
                                          stop_check_every=stop_check_every, hopeless_threshold=hopeless_threshold)
    return _SHARED[key]
