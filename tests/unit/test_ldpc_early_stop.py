"""Early-stopping BP decoding (linksim.phy.bp_early_stop) against Sionna's fixed 20 iterations.

Every test is seeded.  Batches are 128 codewords, two blocks of the decoder's 64; its one
XLA-compiled block function is shared by every test of the module (``shared_decoder``).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import sionna
import tensorflow as tf
from sionna.phy.channel import AWGN
from sionna.phy.mapping import Demapper, Mapper

from linksim.channels import AWGNChannel, MultiHopChannel, RayleighFadingChannel
from linksim.phy.bp_early_stop import EarlyStopBPDecoder, rotation_losers, shared_decoder, soft_bit_information
from linksim.phy.codes import HOPELESS_THRESHOLD_80211N, LDPC5G, LDPC80211n
from linksim.phy.link import DigitalLink
from linksim.phy.modulation import QAM
from linksim.registry import CHANNEL_CODES

BATCH = 128


def _llrs(code, snr_db, m=4, batch=BATCH, seed=0):
    """Channel LLRs of ``batch`` random codewords of ``code`` over AWGN at Es/N0 ``snr_db`` (QAM 2^m)."""
    sionna.phy.config.seed = seed
    u = tf.constant(np.random.default_rng(seed).integers(0, 2, (batch, code.k)), tf.float32)
    no = 10.0 ** (-snr_db / 10.0)
    y = AWGN()(Mapper("qam", m)(code.encode(u)), no)
    return u, Demapper("app", "qam", m)(y, no)


def _shared(code):
    """The early-stopping decoder ``code.decode`` uses (802.11n: its hopeless threshold), compiled once per module."""
    return shared_decoder(code.pcm, 20, "boxplus-phi", hopeless_threshold=HOPELESS_THRESHOLD_80211N)


_FIXED: dict = {}


def _fixed(code):
    """Sionna's fixed-iteration decoder of ``code``, XLA-compiled (``decode`` traced: the plain path).

    One compiled function per code configuration in the module (each compilation costs seconds).
    """
    key = repr(sorted(code.get_config().items()))
    if key not in _FIXED:
        _FIXED[key] = tf.function(code.decode, jit_compile=True)
    return _FIXED[key]


# ------------------------------------------------------------------ equal decisions
@pytest.mark.parametrize("snr_db", [8.0, 10.0, 11.0, 12.0, 15.0])
def test_early_stopped_80211n_decisions_equal_20_fixed_iterations_word_for_word(snr_db):
    # 128 codewords of the (1944, 1458) code on 16-QAM per SNR: below (8 dB: nothing decodes), in (10, 11)
    # and above (12, 15) the waterfall. Words that never satisfy their checks equal 20 plain iterations
    # by construction (the resumed chunks are the same computation). A word that satisfied them can in
    # principle differ: BP may leave a codeword it reached (checking after every iteration, 2 of 6,144
    # words at 9.5-10.5 dB did, each the right codeword that plain decoding then lost). With the default
    # chunk of 2 no word of these batches differs; the asserts allow only that kind of difference.
    code = LDPC80211n()
    _, llr = _llrs(code, snr_db)
    u_es, ok_es = (t.numpy() for t in code.decode(llr))
    u_fx, ok_fx = (t.numpy() for t in _fixed(code)(llr))
    differ = np.any(u_es != u_fx, axis=-1)
    assert not np.any(differ & ok_fx)                  # where plain decoding converged, the same word
    assert np.all(ok_es[differ])                       # a difference: early stopping found a codeword
    assert np.array_equal(ok_es, ok_fx | differ)
    assert differ.sum() == 0                           # and these seeded batches have none


@pytest.mark.parametrize("snr_db", [4.0, 6.0])
def test_early_stopped_5g_decisions_equal_20_fixed_iterations_word_for_word(snr_db):
    # 5G NR (512, 384) + CRC24B on QPSK: the early stop checks the parity of the decoder's internal
    # (lifted, pruned mother-code) word; the info bits and the CRC verdict equal LDPC5GDecoder's.
    code = LDPC5G(384, 512)
    _, llr = _llrs(code, snr_db, m=2)
    u_es, ok_es = code.decode(llr)
    u_fx, ok_fx = _fixed(code)(llr)
    np.testing.assert_array_equal(u_es.numpy(), u_fx.numpy())
    np.testing.assert_array_equal(ok_es.numpy(), ok_fx.numpy())
    assert ok_es.numpy().any() or snr_db < 5


def test_converged_words_leave_early_and_hopeless_ones_run_every_iteration():
    code = LDPC80211n()
    dec = _shared(code)
    _, llr = _llrs(code, 15.0)
    high = dec(llr)
    assert high["ok"].numpy().all() and high["iterations"].numpy().max() <= 4
    _, llr = _llrs(code, 6.0)
    low = dec(llr)
    assert not low["ok"].numpy().any() and (low["iterations"].numpy() == 20).all()
    assert dec.last_mean_iterations == 20.0


def test_decoder_keeps_the_leading_shape_and_an_empty_batch():
    code = LDPC80211n()
    dec = _shared(code)
    _, llr = _llrs(code, 15.0)
    out = dec(tf.reshape(llr, [2, BATCH // 2, code.n]))
    assert out["c_hat"].shape == (2, BATCH // 2, code.n) and out["ok"].shape == (2, BATCH // 2)
    empty = dec(tf.zeros([0, code.n]))
    assert empty["c_hat"].shape == (0, code.n)


def test_blocks_of_any_size_give_the_same_decisions_from_one_compilation():
    # Blocks of 32 (four per batch of 128, so the remaining words are compacted into fewer blocks as they
    # converge) against the shared decoder's blocks of 64: the same decisions and iterations word for word,
    # across the waterfall and for batches of 1, 45 and 128 words, all from one compiled function.
    code = LDPC80211n()
    small = EarlyStopBPDecoder(code.pcm, hopeless_threshold=HOPELESS_THRESHOLD_80211N, block_size=32)
    for snr, batch in ((6.0, 45), (10.0, BATCH), (11.0, BATCH), (12.0, 1), (12.0, BATCH)):
        _, llr = _llrs(code, snr, batch=batch, seed=7)
        a, b = small(llr), _shared(code)(llr)
        for key in ("c_hat", "ok", "iterations"):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=f"{key} at {snr} dB")
        assert small.last_decoder_calls >= -(-batch // 32)
    assert small._run.experimental_get_tracing_count() == 1


# ------------------------------------------------------------------ hopeless words
@contextlib.contextmanager
def _counting(dec):
    """Count ``dec``'s compiled decoder calls: yields the list of their (batch size, iterations)."""
    calls, original = [], dec._run

    def counted(llr, msg, num_iter, fresh):
        calls.append((int(llr.shape[0]), int(num_iter)))
        return original(llr, msg, num_iter, fresh)
    dec._run = counted
    try:
        yield calls
    finally:
        dec._run = original


def test_soft_bit_information_is_one_for_certain_bits_and_zero_for_erasures():
    info = soft_bit_information(tf.constant([[30.0, -30.0], [0.0, 0.0], [0.0, 40.0]])).numpy()
    np.testing.assert_allclose(info, [1.0, 0.0, 0.5], atol=1e-6)


def test_a_hopeless_batch_is_one_plain_call_per_block_with_the_plain_decisions_bit_for_bit():
    # 7 dB Es/N0 (BLER 1): every word misses more than half of the redundancy (measured: >= 0.62 at 8 dB),
    # so each block of the batch is one 20-iteration call from the channel LLRs, the same computation as
    # Sionna's fixed-iteration decoder: decided bits and parity checks equal, bit for bit.
    code = LDPC80211n()
    dec = _shared(code)
    _, llr = _llrs(code, 7.0)
    with _counting(dec) as calls:
        out = dec(llr)
    blocks = -(-BATCH // dec.block_size)              # 2 of 64 on a CPU
    assert calls == [(dec.block_size, 20)] * blocks and dec.last_decoder_calls == blocks
    assert dec.last_plain_words == BATCH
    u_fx, ok_fx = _fixed(code)(llr)
    np.testing.assert_array_equal(tf.gather(out["c_hat"], code.info_positions, axis=-1).numpy(), u_fx.numpy())
    np.testing.assert_array_equal(out["ok"].numpy(), ok_fx.numpy())
    assert (out["iterations"].numpy() == 20).all()


def test_a_mixed_batch_sends_its_hopeless_words_to_one_plain_call_and_the_rest_to_early_stopping():
    # 64 words at 6 dB (hopeless) and 64 at 12 dB: the hopeless block (64) is one plain call, whose
    # decisions equal plain decoding's bit for bit; the others stop early and converge.
    code = LDPC80211n()
    dec = _shared(code)
    if dec.block_size > BATCH // 2:                   # a GPU's blocks: the 64 hopeless words fill no block
        pytest.skip(f"needs blocks of at most {BATCH // 2} words (the decoder's: {dec.block_size})")
    _, low = _llrs(code, 6.0, batch=BATCH // 2, seed=5)
    _, high = _llrs(code, 12.0, batch=BATCH // 2, seed=6)
    llr = tf.concat([low, high], axis=0)
    with _counting(dec) as calls:
        out = dec(llr)
    assert calls[0] == (BATCH // 2, 20) and all(n < 20 for _, n in calls[1:]) and dec.last_plain_words == BATCH // 2
    c_fx = _fixed(code)(llr)
    c_es = out["c_hat"].numpy()
    u_es = tf.gather(c_es, code.info_positions, axis=-1).numpy()
    np.testing.assert_array_equal(u_es[:BATCH // 2], c_fx[0].numpy()[:BATCH // 2])
    assert out["ok"].numpy()[BATCH // 2:].all() and (out["iterations"].numpy()[BATCH // 2:] < 20).all()
    np.testing.assert_array_equal(u_es[BATCH // 2:], c_fx[0].numpy()[BATCH // 2:])


def test_the_split_sends_whole_blocks_of_hopeless_words_plain():
    dec = EarlyStopBPDecoder(LDPC80211n().pcm, hopeless_threshold=0.5, block_size=64)     # hopeless: info < 0.875
    low, high = 0.8, 0.95

    def split(n_low, n_high):
        plain, early = dec._split(np.array([low] * n_low + [high] * n_high))
        assert np.array_equal(np.sort(np.concatenate([plain, early])), np.arange(n_low + n_high))
        return plain.size, early.size
    assert split(500, 0) == (500, 0) and split(0, 500) == (0, 500)
    assert split(470, 30) == (500, 0)                 # at most 1/16 not hopeless: all plain
    assert split(40, 460) == (0, 500)                 # fewer hopeless than a block
    assert split(128, 128) == (128, 128)              # two blocks of hopeless words
    assert split(250, 250) == (192, 308)              # three whole blocks; 308 rows need 5 blocks as 500 need 8


# ------------------------------------------------------------------ BLER through the link
def test_bler_with_early_stopping_equals_plain_decoding_on_the_waterfall():
    """BLER of early-stopping vs plain decoding through DigitalLink (AWGN, 802.11n 3/4, 16-QAM).

    Sample: 3 batches of 128 codewords (384) per point at 9.5, 10, 10.5 and 11 dB Es/N0, the
    waterfall. The two links draw their noise independently (the early-stopping link runs
    its channel eagerly, the plain one under XLA), so the BLERs are two independent binomial
    estimates: tolerance |p1 - p2| <= 4 sigma + 1/384 with sigma = sqrt(2 p (1 - p) / 384), p
    the pooled estimate (two-sided false alarm ~6e-5 per point).
    """
    u = np.random.default_rng(1).integers(0, 2, (BATCH, 1, 1458)).astype(np.float32)
    links = {es: DigitalLink(LDPC80211n(early_stop=es), QAM(4), channel=AWGNChannel()) for es in (True, False)}
    assert links[True].early_stop and not links[False].early_stop    # off: the one compiled receive graph
    for snr in (9.5, 10.0, 10.5, 11.0):
        bler = {}
        for es, link in links.items():
            sionna.phy.config.seed = int(snr * 10)
            fails = [np.sum(~link.run(u, snr)["block_ok"].numpy()) for _ in range(3)]
            bler[es] = sum(fails) / (3 * BATCH)
        p = (bler[True] + bler[False]) / 2
        tol = 4 * math.sqrt(2 * p * (1 - p) / (3 * BATCH)) + 1 / (3 * BATCH)
        assert abs(bler[True] - bler[False]) <= tol, (snr, bler, tol)


def test_link_results_are_deterministic_for_a_seed_and_wrong_words_are_flagged():
    link = DigitalLink(LDPC80211n(), QAM(4), channel=MultiHopChannel(hops=2, relay="df"))
    u = np.random.default_rng(2).integers(0, 2, (BATCH, 1, 1458)).astype(np.float32)
    runs = []
    for _ in range(2):
        sionna.phy.config.seed = 11
        out = link.run(u, [10.5, 11.0])
        runs.append((out["bits"].numpy(), out["block_ok"].numpy()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    wrong = np.any(runs[0][0] != u, axis=-1)
    assert wrong.any() and (~runs[0][1]).any()
    assert not np.any(wrong & runs[0][1])            # a DF relay's failure reaches the destination's flag


def test_df_relays_decode_with_the_early_stopping_driver():
    code = LDPC80211n()
    link = DigitalLink(code, QAM(4), channel=MultiHopChannel(hops=2, relay="df"))
    calls = []
    dec = _shared(code)
    original = type(dec).__call__

    def counting(self, llr, retire=None):
        calls.append(int(np.prod(llr.shape[:-1])))
        return original(self, llr, retire)

    type(dec).__call__ = counting
    try:
        u = np.random.default_rng(3).integers(0, 2, (BATCH, 1, 1458)).astype(np.float32)
        sionna.phy.config.seed = 1
        out = link.run(u, [20.0, 20.0])
    finally:
        type(dec).__call__ = original
    assert calls == [BATCH, BATCH]                    # the relay, then the destination
    assert out["block_ok"].numpy().all()


def test_blind_detection_decodes_its_four_rotations_with_early_stopping():
    # one coefficient per image at 30 dB, no CSI: the blind receiver decodes 4 x 32 words; the right
    # rotation converges at once, the three wrong ones run every iteration; every image but those in
    # outage (probability ~0.004 for 5G (512, 384) on QPSK) decodes, and no wrong word passes the CRC.
    link = DigitalLink(LDPC5G(384, 512), QAM(2), channel=RayleighFadingChannel(csi="none"))
    sionna.phy.config.seed = 4
    bits = np.random.default_rng(4).integers(0, 2, (BATCH // 4, 1, 360)).astype(np.float32)
    out = link.run(bits, 30.0)
    ok = out["block_ok"].numpy()[:, 0]
    assert int(np.sum(~ok)) <= 2
    wrong = np.any(out["bits"].numpy() != bits, axis=(1, 2))
    assert not np.any(wrong & ok)


def test_rotation_losers_retires_only_rotations_that_can_no_longer_be_chosen():
    retire = rotation_losers(4, 3, 2)                       # 4 rotations x 3 images x 2 words

    def words(marks):                                       # {(rotation, image): words} -> [24] bool
        a = np.zeros((4, 3, 2), bool)
        for (q, b), w in marks.items():
            a[q, b, :w] = True
        return a.reshape(-1)

    # image 0: rotation 2 passed both words: 3 can at most tie and comes later; 0 and 1 may still tie first.
    # image 1: rotation 1 passed one word, rotation 3 failed one: 3 can reach 1 but comes later, out.
    # image 2: rotation 3 passed both, rotation 0 failed one: 0 can reach 1 < 2, out; 1 and 2 may still tie, stay.
    gone = retire(words({(2, 0): 2, (1, 1): 1, (3, 2): 2}), words({(3, 1): 1, (0, 2): 1})).reshape(4, 3, 2)
    assert gone.all(axis=-1).tolist() == gone.any(axis=-1).tolist()       # whole rotations
    assert gone[..., 0].T.tolist() == [[False, False, False, True], [False, False, False, True],
                                       [True, False, False, False]]
    assert not retire(np.zeros(24, bool), np.zeros(24, bool)).any()       # nothing known: nothing retired


@pytest.mark.parametrize("snr_db", [6.0, 12.0, 30.0])
def test_the_blind_receiver_retiring_wrong_rotations_chooses_and_decodes_as_decoding_every_rotation(snr_db):
    # 802.11n rate 3/4 + 16-QAM (one codeword per image, as rayleigh_jscc_vs_sscc), one Rayleigh coefficient per
    # image, no CSI, 64 images, the same seeded channel: the link with the rotations retired (the default)
    # against the same link decoding all four rotations of every image. Bits and checks equal exactly; at
    # 30 dB most images converge under one rotation, and the ones after it are retired.
    code = LDPC80211n(rate="3/4")
    link = DigitalLink(code, QAM(4), channel=RayleighFadingChannel(csi="none"))
    bits = np.random.default_rng(6).integers(0, 2, (64, 1, code.k)).astype(np.float32)
    symbols = link.transmit(bits)
    out = {}
    for retiring in (True, False):
        code.retires_words = retiring                     # an instance attribute: this link only
        sionna.phy.config.seed = 9
        out[retiring] = link.receive(symbols, snr_db, 1)
        out[retiring, "retired"] = _shared(code).last_retired_words
    np.testing.assert_array_equal(out[True]["bits"].numpy(), out[False]["bits"].numpy())
    np.testing.assert_array_equal(out[True]["block_ok"].numpy(), out[False]["block_ok"].numpy())
    assert out[False, "retired"] == 0
    if snr_db == 30.0:
        ok = out[True]["block_ok"].numpy()[:, 0]
        assert ok.mean() > 0.9 and out[True, "retired"] >= 40, (ok.mean(), out[True, "retired"])


# ------------------------------------------------------------------ the option
@pytest.mark.parametrize("name, kwargs", [("ldpc_80211n", {}), ("ldpc5g", {"k": 384, "n": 512})])
def test_early_stop_is_a_validated_code_option_in_the_config(name, kwargs):
    code = CHANNEL_CODES.create(name, **kwargs)
    assert code.early_stop is True and code.get_config()["early_stop"] is True
    off = CHANNEL_CODES.create(name, **kwargs, early_stop=False)
    cfg = off.get_config()
    assert cfg["early_stop"] is False
    again = CHANNEL_CODES.create(cfg.pop("type"), **cfg)
    assert again.get_config() == off.get_config()
    with pytest.raises(ValueError, match=f"{name}: early_stop must be true or false"):
        CHANNEL_CODES.create(name, **kwargs, early_stop="yes")


def test_bad_decoder_options_are_rejected():
    pcm = LDPC80211n().pcm
    with pytest.raises(ValueError, match="stop_check_every must be a positive integer"):
        EarlyStopBPDecoder(pcm, stop_check_every=0)
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        EarlyStopBPDecoder(pcm, block_size=0)
    for bad in (0, 1.5, True, "x"):
        with pytest.raises(ValueError, match="hopeless_threshold must be in"):
            EarlyStopBPDecoder(pcm, hopeless_threshold=bad)
    with pytest.raises(ValueError, match="llr must have last dimension n = 1944"):
        EarlyStopBPDecoder(pcm)(tf.zeros([2, 100]))
