"""LDPC belief-propagation decoding that stops early, built on Sionna's ``LDPCBPDecoder``.

Sionna's BP decoder runs a fixed number of iterations for the whole batch ("due to
batching, no early stopping"), but its ``call(llr, num_iter=, msg_v2c=)`` can resume
from the variable-to-check messages it returns (``return_state=True``).
:class:`EarlyStopBPDecoder` uses that:

0. words far below the waterfall skip the rest: the soft-bit estimate of each word's
   mutual information, ``I = 1 - mean log2(1 + exp(-|L|))`` over its channel LLRs
   (:func:`soft_bit_information`, eager), is compared with the code's design rate ``R``;
   a word missing more than ``hopeless_threshold`` of the redundancy,
   ``1 - I > hopeless_threshold * (1 - R)``, cannot converge (calibrated with a margin:
   :data:`DEFAULT_HOPELESS_THRESHOLD`) and is decoded plainly, ``num_iter`` iterations in
   one call per block, exactly fixed-iteration decoding.  A batch of such words costs
   plain decoding plus the estimate (~0.5 %); in a mixed batch the hopeless words that
   fill whole blocks go plain (:meth:`EarlyStopBPDecoder._split`);
1. the words are decoded in *blocks* of ``block_size`` rows (64 on a CPU; the last block
   padded with copies), each block one call of a single XLA-compiled function whose shape
   never changes: it runs a number of iterations given as a tensor, from the channel LLRs
   or from the messages a previous call returned, and also returns the hard decisions and
   the parity check ``H c = 0`` of each word (computed sparsely from the check nodes'
   neighbour lists).  One compilation per code and process serves every batch size, the
   hopeless words' plain call and every chunk;
2. run ``stop_check_every`` iterations on every block;
3. words whose hard decisions satisfy every parity check leave: their decisions are final;
4. when the remaining words fit in fewer blocks, they and their messages are gathered
   into as many blocks as they need (on the host, numpy); otherwise the blocks stay as
   they are, the rows of departed words iterating on unread;
5. the next chunk resumes from the messages, until no word is left or ``num_iter``
   iterations ran.  A chunk after which no word left is followed by one twice as long
   (up to :data:`MAX_CHUNK`), so that below the waterfall, where no word converges,
   few chunks (and parity checks) run: 2 + 4 + 8 + 6 for 20 iterations.

Why blocks: per word and iteration, a block of 32-256 words costs what a batch of 500
does on a CPU (measured, 1 and 2 threads: 37-40 and 20-23 us against 47 and 25 us for
500 words), while every new batch shape is one more XLA compilation of about 1.2 s per
process and code.  Decoding each batch at its own size and the shrinking batches at
bucket sizes (as an earlier version did) cost the main job's workers about 10 s of
compilation each; blocks cost one.

The driver runs in Python (numpy), outside XLA.

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

__all__ = ["EarlyStopBPDecoder", "shared_decoder", "default_block_size", "rotation_losers",
           "DEFAULT_STOP_CHECK_EVERY", "DEFAULT_HOPELESS_THRESHOLD", "MAX_CHUNK", "soft_bit_information"]

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


def default_block_size() -> int:
    """Words per compiled call: 64 on a CPU (measured, see the module's docstring); 1024 when a GPU is
    visible (not measured here: a GPU needs wide batches to be busy)."""
    return 1024 if tf.config.list_logical_devices("GPU") else 64


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
    block_size : int or None
        Words per compiled call (default None: :func:`default_block_size`, 64 on a CPU).  Every
        call has this batch size, so the decoder is compiled once per process whatever the
        batch sizes it is given; a batch is padded to a whole number of blocks.
    jit_compile : bool
        Compile the block function with XLA (default True).
    hopeless_threshold : float or None
        A word whose :func:`soft_bit_information` ``I`` leaves more than ``hopeless_threshold``
        of the code's redundancy missing, ``1 - I > hopeless_threshold * (1 - R)`` with the design
        rate ``R = 1 - m / n``, is *hopeless*: far below the waterfall, it is decoded plainly,
        ``num_iter`` iterations in one call per block (no chunks, no intermediate parity checks),
        exactly fixed-iteration decoding.  A batch with at most 1/16 of its words not hopeless
        is decoded plainly as a whole; a mixed batch sends the whole blocks of its
        lowest-information words (all hopeless) plainly and the rest through the chunks
        (:meth:`_split`).  ``None`` turns it off.  The classification changes speed only,
        never a decision.  Default :data:`DEFAULT_HOPELESS_THRESHOLD`.
    first_chunk : int or None
        Length of the first chunk (default ``stop_check_every``).

    Input
    -----
    llr : [..., n], tf.float32
        Channel LLRs, Sionna's logit convention (``log p(b=1) / p(b=0)``).
    retire : callable or None
        ``retire(passed, failed) -> [W] bool``, asked after every chunk: the words (rows of ``llr``
        flattened to ``[W, n]``) whose decoding no longer matters, given which have ``passed`` (a
        parity check satisfied, final) and which have ``failed`` (all ``num_iter`` iterations without
        one, or retired earlier), both ``[W]`` bool.  A retired word stops at once and is reported
        with ``ok`` False, the decisions of its last chunk and the iterations it ran.  The blind
        receiver retires the phase rotations that can no longer be chosen
        (:func:`rotation_losers`).  Default None: every word runs until it passes or fails.

    Output
    ------
    dict
        ``c_hat`` [..., n] tf.float32 hard decisions; ``ok`` [...] tf.bool, the
        parity check of ``c_hat``; ``iterations`` [...] tf.int32, the iterations each word
        used.

    Raises
    ------
    ValueError
        For a non-positive ``num_iter``, ``stop_check_every``, ``block_size`` or ``first_chunk``,
        or a ``hopeless_threshold`` outside (0, 1].
    """

    def __init__(self, pcm, num_iter: int = 20, cn_update: str = "boxplus-phi",
                 stop_check_every: int = DEFAULT_STOP_CHECK_EVERY, llr_max: float = 20.0,
                 block_size=None, jit_compile: bool = True,
                 hopeless_threshold=DEFAULT_HOPELESS_THRESHOLD, first_chunk=None):
        first_chunk = stop_check_every if first_chunk is None else first_chunk
        block_size = default_block_size() if block_size is None else block_size
        for name, v in (("num_iter", num_iter), ("stop_check_every", stop_check_every), ("block_size", block_size),
                        ("first_chunk", first_chunk)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer (got {v!r})")
        if hopeless_threshold is not None and (isinstance(hopeless_threshold, bool)
                                               or not isinstance(hopeless_threshold, (int, float))
                                               or not 0 < hopeless_threshold <= 1):
            raise ValueError(f"hopeless_threshold must be in (0, 1] or None (got {hopeless_threshold!r})")
        self.num_iter, self.stop_check_every = int(num_iter), int(stop_check_every)
        self.first_chunk = int(first_chunk)
        self.block_size = int(block_size)
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
        # the variable node of each edge, in the decoder's edge order (its messages' first axis)
        self._edge_vn = tf.constant(self.decoder._vn_idx, tf.int32)
        self._no_messages = tf.zeros([len(self.decoder._vn_idx), self.block_size], tf.float32)
        self._run = tf.function(self._run_impl, jit_compile=jit_compile, reduce_retracing=False)
        #: mean iterations per word of the last :meth:`__call__` (a Python float)
        self.last_mean_iterations = None
        #: compiled decoder calls (one per block and chunk) of the last :meth:`__call__`
        self.last_decoder_calls = 0
        #: words of the last :meth:`__call__` decoded plainly (hopeless ones)
        self.last_plain_words = 0
        #: words of the last :meth:`__call__` that ``retire`` stopped
        self.last_retired_words = 0

    # ------------------------------------------------------------------ the compiled function
    def _parity_ok(self, c):
        """True per word where the hard word ``c`` [b, n] satisfies every check."""
        c_t = tf.transpose(c)                                                    # [n, b]: faster gathers
        c_t = tf.concat([c_t, tf.zeros_like(c_t[:1])], axis=0)                   # [n + 1, b]
        s = tf.reduce_sum(tf.gather(c_t, self._neighbours, axis=0), axis=1)      # [m, b]
        return tf.reduce_all(tf.equal(tf.math.floormod(s, 2.0), 0.0), axis=0)

    def _initial_messages(self, llr):
        """The messages ``LDPCBPDecoder`` starts from when given none, in the convention its ``msg_v2c``
        takes: each edge carries its variable's clipped channel LLR (the decoder negates both, so
        starting from these is the same computation, exactly)."""
        return tf.gather(tf.transpose(tf.clip_by_value(llr, -self.llr_max, self.llr_max)), self._edge_vn)

    def _run_impl(self, llr, msg, num_iter, fresh):
        """``num_iter`` iterations on a block: from the channel LLRs where ``fresh``, else from ``msg``."""
        msg = tf.cond(fresh, lambda: self._initial_messages(llr), lambda: msg)
        c, msg = self.decoder(llr, num_iter=num_iter, msg_v2c=msg)
        return c, msg, self._parity_ok(c)

    def _call(self, llr_block, msg, num_iter: int):
        """One compiled call; ``msg`` None starts from the channel LLRs."""
        self.last_decoder_calls += 1
        fresh = msg is None
        return self._run(llr_block, self._no_messages if fresh else msg, tf.constant(num_iter, tf.int32),
                         tf.constant(fresh))

    # ------------------------------------------------------------------ driver
    def _blocks(self, flat: np.ndarray, words: np.ndarray):
        """(slot, llr blocks): ``words`` padded to whole blocks with copies of the first (slot -1)."""
        b = self.block_size
        pad = -words.size % b
        slot = np.concatenate([words, np.full(pad, -1)])
        rows = np.concatenate([words, np.repeat(words[:1], pad)])
        return slot, [tf.constant(flat[rows[i:i + b]]) for i in range(0, rows.size, b)]

    def __call__(self, llr, retire=None) -> dict:
        llr = tf.convert_to_tensor(llr, tf.float32)
        shape = llr.shape
        if shape[-1] != self.n:
            raise ValueError(f"llr must have last dimension n = {self.n} (got shape {shape})")
        flat = tf.reshape(llr, [-1, self.n])
        total = int(flat.shape[0])
        c_out = np.zeros((total, self.n), np.float32)
        ok_out = np.zeros(total, bool)
        it_out = np.full(total, self.num_iter, np.int32)
        self.last_decoder_calls, self.last_plain_words, self.last_retired_words = 0, 0, 0
        if total == 0:
            return self._pack(c_out, ok_out, it_out, shape)
        words, host = np.arange(total), flat.numpy()
        finished = np.zeros(total, bool)
        if self.hopeless_threshold is not None:
            plain, words = self._split(soft_bit_information(flat, self.llr_max).numpy())
            if plain.size:
                self._decode_plain(host, plain, c_out, ok_out)
                finished[plain] = True
        if words.size:
            self._decode_early(host, words, c_out, ok_out, it_out, retire, finished)
        return self._pack(c_out, ok_out, it_out, shape)

    def _split(self, info):
        """(plain, early): the rows decoded plainly and those decoded in chunks.

        All rows plain when at most 1/16 of them are not hopeless (those few lose early stopping;
        the chunks' overhead, about 1.5 iterations for a word that runs every one (measured: ~4 chunks,
        ~0.35 each), is saved on all).  Otherwise the
        lowest-information rows that fill whole blocks, all hopeless, go plain: that adds no padding
        (the early rows need no more blocks than the batch would) and saves them the chunks.
        """
        total = info.size
        everything, nothing = np.arange(total), np.arange(0)
        hopeless = int(np.sum(1.0 - info > self.hopeless_threshold * (1.0 - self.rate)))
        if total - hopeless <= total // 16:
            return (everything, nothing) if hopeless else (nothing, everything)
        size = hopeless - hopeless % self.block_size
        if not size:
            return nothing, everything
        order = np.argsort(info, kind="stable")
        return np.sort(order[:size]), np.sort(order[size:])

    def _decode_plain(self, flat, words, c_out, ok_out):
        """``num_iter`` iterations on the rows ``words`` of ``flat``, a call per block: fixed-iteration decoding."""
        slot, blocks = self._blocks(flat, words)
        b = self.block_size
        for i, block in enumerate(blocks):
            c, _, ok = self._call(block, None, self.num_iter)
            s = slot[i * b:(i + 1) * b]
            keep = s >= 0
            c_out[s[keep]], ok_out[s[keep]] = c.numpy()[keep], ok.numpy()[keep]
        self.last_plain_words = int(words.size)

    def _decode_early(self, flat, words, c_out, ok_out, it_out, retire, finished):
        """The chunked early-stopping decoding of the rows ``words`` of ``flat``; fills the outputs.

        ``finished`` [W] bool marks the words whose outcome is final (updated here); ``retire`` see the class."""
        # slot[r]: the word row r of the current blocks decodes, -1 for padding and for words that
        # already left (their rows keep iterating until the next compaction).
        b = self.block_size
        slot, llr_b = self._blocks(flat, words)
        msg_b = [None] * len(llr_b)
        done, chunk = 0, self.first_chunk
        while done < self.num_iter:
            step = min(chunk, self.num_iter - done)
            outs = [self._call(block, msg, step) for block, msg in zip(llr_b, msg_b)]
            msg_b = [m for _, m, _ in outs]
            done += step
            ok = np.concatenate([o.numpy() for _, _, o in outs])
            live = slot >= 0
            leave = live & (ok if done < self.num_iter else True)
            if retire is not None and done < self.num_iter:
                passed = finished & ok_out
                passed[slot[leave]] = True                       # converged in this chunk
                failed = finished & ~ok_out
                gone = np.asarray(retire(passed, failed), bool)
                stop = np.zeros(slot.size, bool)
                stop[live] = gone[slot[live]]
                self.last_retired_words += int(np.sum(stop & ~leave))
                leave |= stop
            if not leave.any():              # nobody left: same blocks, next chunk twice as long
                chunk = min(self.growth * chunk, self.max_chunk)
                continue
            chunk = self.stop_check_every
            rows = np.flatnonzero(leave)
            for i in np.unique(rows // b):   # the decisions of the blocks that lost words
                r = rows[rows // b == i]
                c_out[slot[r]] = outs[i][0].numpy()[r - i * b]
            ok_out[slot[rows]] = ok[rows]
            it_out[slot[rows]] = done
            finished[slot[rows]] = True
            slot = np.where(leave, -1, slot)
            stay = np.flatnonzero(slot >= 0)
            if not stay.size:
                break
            need = -(-stay.size // b)
            if need < len(llr_b):            # compact: the remaining words into fewer blocks (padded as at first)
                rows = np.concatenate([stay, np.repeat(stay[:1], need * b - stay.size)])
                msg_all = np.take(np.concatenate([m.numpy() for m in msg_b], axis=1), rows, axis=1)
                msg_b = [tf.constant(np.ascontiguousarray(msg_all[:, i:i + b])) for i in range(0, rows.size, b)]
                slot, llr_b = self._blocks(flat, slot[stay])

    def _pack(self, c, ok, it, shape) -> dict:
        self.last_mean_iterations = float(it.mean()) if it.size else 0.0
        lead = list(shape[:-1])
        return {"c_hat": tf.reshape(tf.constant(c), lead + [self.n]),
                "ok": tf.reshape(tf.constant(ok), lead),
                "iterations": tf.reshape(tf.constant(it), lead)}


def rotation_losers(rotations: int, images: int, per_image: int):
    """A ``retire`` callable (:class:`EarlyStopBPDecoder`) for words laid out ``[rotations, images, per_image]``
    of which each image keeps the rotation with the most words passing, the first on a tie.

    A rotation ``q`` of an image can no longer be chosen once another ``r`` is sure to have at least as
    many words passing (``r < q``) or more (``r > q``): ``passed_r >= per_image - failed_q``, respectively
    ``>``, since ``passed_r`` can only grow and ``per_image - failed_q`` (at most the words ``q`` will pass)
    only shrink.  Its words are retired.  The rotation chosen is never retired, and every retired
    rotation still loses with the words it has (it is beaten, directly or through another beaten one, by the
    rotation chosen), so the choice and the chosen rotation's decisions are those of decoding every word.
    """
    shape = (rotations, images, per_image)

    def retire(passed, failed):
        low = passed.reshape(shape).sum(axis=-1)                 # words sure to pass, [rotations, images]
        high = per_image - failed.reshape(shape).sum(axis=-1)    # words that may pass
        lose = np.zeros((rotations, images), bool)
        for q in range(rotations):
            for r in range(rotations):
                if r != q:
                    lose[q] |= (low[r] >= high[q]) if r < q else (low[r] > high[q])
        return np.repeat(lose.reshape(-1), per_image)

    return retire


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
