"""The separation (SSCC) scheme: bit budget, framing, fallback and failure counting."""

import numpy as np
import pytest

from linksim.channels import AWGNChannel
from linksim.schemes.base import SchemeContext, fallback_image
from linksim.schemes.separation import (FRAME_HEADER_BITS, SeparationScheme, SeparationTransmitter,
                                        deframe_bits, frame_payloads)


@pytest.fixture(scope="module")
def images():
    from linksim.data import get_dataset
    from linksim.data.base import to_float

    x, _ = get_dataset("embedded").load("test", 24, seed=0)
    xt, _ = get_dataset("embedded").load("train", 200, seed=0)
    return to_float(x), to_float(xt)


def _scheme(images, codec="webp", channel_uses=486, **kw):
    x, xt = images
    s = SeparationScheme(codec={"type": codec}, **kw)
    s.prepare(SchemeContext(image_shape=x.shape[1:], channel_uses=channel_uses, train_images=xt,
                            channel=AWGNChannel(), seed=0))
    return s


def test_frame_round_trip_and_overflow():
    payloads = [b"", b"abc", bytes(range(100))]
    bits = frame_payloads(payloads, 1458)
    assert bits.shape == (3, 1458)
    for p, b in zip(payloads, bits):
        assert deframe_bits(b) == p
    with pytest.raises(ValueError, match="exceeds"):
        frame_payloads([bytes(200)], 1458)


def test_an_impossible_length_field_deframes_to_none():
    bits = np.ones(64, np.uint8)  # length field 0xFFFF bytes > 48 bits available
    assert deframe_bits(bits) is None


def test_transmitter_spends_exactly_the_channel_uses_with_unit_energy(images):
    x, _ = images
    tx = SeparationTransmitter({"type": "webp"}, {"type": "ldpc_80211n"}, {"type": "qam"}, 972)
    out = tx(x[:8])
    assert tx.num_codewords == 2 and tx.num_info_bits == 2 * 1458
    assert out["symbols"].shape == (8, 972)
    energy = float(np.mean(np.abs(out["symbols"].numpy()) ** 2))
    assert energy == pytest.approx(1.0, abs=0.05)
    assert (out["source_bits"] <= tx.num_info_bits).all()
    assert (out["source_bits"] > FRAME_HEADER_BITS).all()


def test_too_few_channel_uses_for_one_codeword_is_explained():
    with pytest.raises(ValueError, match="needs at least 486 channel uses"):
        SeparationTransmitter({"type": "webp"}, {"type": "ldpc_80211n"}, {"type": "qam"}, 400)


def test_idle_channel_uses_are_warned_about():
    with pytest.warns(UserWarning, match="stay idle"):
        SeparationTransmitter({"type": "webp"}, {"type": "ldpc_80211n"}, {"type": "qam"}, 500)


def test_high_snr_delivers_the_codec_output_and_low_snr_the_fallback(images):
    x, xt = images
    s = _scheme(images)
    state = s.encode(x)
    good = s.evaluate(state, 25.0)
    assert good.counts["decode_failures"] == 0 and good.counts["bit_errors"] == 0
    direct = np.stack([s.rx.decode_payload(e.payload) for e in state.tx["encoded"]])
    np.testing.assert_array_equal(good.images, direct)
    bad = s.evaluate(state, 0.0)
    assert bad.counts["decode_failures"] == len(x)
    assert bad.counts["block_errors"] == bad.counts["blocks"] == len(x)
    mean = fallback_image("mean", xt, x.shape[1:])
    np.testing.assert_allclose(bad.images, np.broadcast_to(mean, x.shape), atol=1e-6)


@pytest.mark.parametrize("codec", ["jpeg", "webp", "bpg", "jpeg2000"])
def test_a_corrupted_bitstream_yields_the_fallback_or_an_image_never_an_exception(images, codec):
    x, _ = images
    s = _scheme(images, codec=codec, on_block_error="decode_anyway", fallback="gray")
    state = s.encode(x[:6])
    bits = state.tx["info_bits"].numpy().astype(np.uint8)
    rng = np.random.default_rng(0)
    failures = 0
    for trial in range(20):
        b = bits.copy()
        flips = rng.random(b.shape) < 0.02
        b[flips] ^= 1
        if trial % 5 == 0:  # some frames get pure garbage
            b = rng.integers(0, 2, b.shape, dtype=np.uint8)
        imgs, failed = s.rx.reconstruct(b, np.ones(b.shape[:2], bool))
        assert imgs.shape == x[:6].shape and imgs.dtype == np.float32
        assert np.isfinite(imgs).all() and (imgs >= 0).all() and (imgs <= 1).all()
        assert np.all(imgs[failed] == 0.5)
        failures += int(failed.sum())
    assert failures > 0


def test_failed_parity_check_counts_a_decode_failure_even_if_the_codec_could_decode(images):
    x, _ = images
    s = _scheme(images)
    state = s.encode(x[:4])
    bits = state.tx["info_bits"].numpy().astype(np.uint8)
    ok = np.ones(bits.shape[:2], bool)
    ok[1, 0] = False
    imgs, failed = s.rx.reconstruct(bits, ok)
    assert failed.tolist() == [False, True, False, False]


@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 2.0, 7.5, 15.0, 30.0])
def test_the_ideal_code_budget_is_the_awgn_capacity_of_the_channel_uses_less_the_header(images, snr_db):
    s = _scheme(images, channel_code={"type": "ideal"})
    k = s.tx.channel_uses
    # computed independently of linksim: floor(k log2(1 + SNR)) bits, SNR as a linear Es/N0
    capacity_bits = int(np.floor(k * np.log2(1.0 + np.power(10.0, snr_db / 10.0))))
    assert s.tx.source_budget_bits(snr_db) == max(0, capacity_bits - FRAME_HEADER_BITS)


def test_the_ideal_code_delivers_the_codec_output_at_its_budget_and_bpp_follows_the_capacity(images):
    x, _ = images
    s = _scheme(images, channel_code={"type": "ideal"})
    state = s.encode(x[:6])
    lo, hi = s.evaluate(state, 6.0), s.evaluate(state, 15.0)
    for snr_db, res in ((6.0, lo), (15.0, hi)):
        budget = s.tx.source_budget_bits(snr_db)
        encoded = s.tx.source_encode(x[:6], snr_db)
        assert all(e.payload and e.bits <= budget for e in encoded), snr_db   # every image fits at 6 dB and up
        # error-free delivery: exactly what the codec decodes from its own payload at that budget
        direct = np.stack([s.rx.decode_payload(e.payload) for e in encoded])
        np.testing.assert_array_equal(res.images, direct)
        assert res.counts["decode_failures"] == 0
        assert res.counts["source_bits"] == sum(e.bits + FRAME_HEADER_BITS for e in encoded)
        assert res.counts["bits"] == 6 * budget
        # bpp never exceeds the capacity per pixel, and the codec uses most of it (rate control)
        bpp = res.counts["source_bits"] / (6 * 28 * 28)
        capacity_bpp = s.tx.channel_uses * np.log2(1.0 + 10.0 ** (snr_db / 10.0)) / (28 * 28)
        assert bpp <= capacity_bpp
    assert hi.counts["source_bits"] > 2 * lo.counts["source_bits"]
    psnr = [float(np.mean(-10 * np.log10(np.mean((r.images - x[:6]) ** 2, axis=(1, 2, 3))))) for r in (lo, hi)]
    assert psnr[1] > psnr[0] + 3.0, psnr


def test_the_ideal_code_falls_back_when_the_capacity_cannot_carry_the_smallest_file(images):
    x, xt = images
    s = _scheme(images, channel_code={"type": "ideal"})
    state = s.encode(x[:6])
    # at -10 dB, 486 channel uses carry floor(486 log2 1.1) = 66 bits: 50 after the header, no WebP file fits
    res = s.evaluate(state, -10.0)
    assert res.counts["decode_failures"] == 6 and res.counts["source_bits"] == 0
    mean = fallback_image("mean", xt, x.shape[1:])
    np.testing.assert_allclose(res.images, np.broadcast_to(mean, x[:6].shape), atol=1e-6)


def test_bad_scheme_options_name_the_allowed_values():
    with pytest.raises(ValueError, match="mean, gray, black"):
        SeparationScheme(codec={"type": "webp"}, fallback="white")
    with pytest.raises(ValueError, match="decode_anyway"):
        SeparationScheme(codec={"type": "webp"}, on_block_error="ignore")
