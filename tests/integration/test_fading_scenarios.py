"""The fading scenarios (``ber_rayleigh_uncoded``, ``rayleigh_jscc_vs_sscc``, ``multihop_rayleigh``) at quick
size from the shipped weights."""

from pathlib import Path

import numpy as np
import pytest
from scenario_runs import quick_run_meta, stored_models

from linksim.phy.theory import qam_ber_rayleigh
from linksim.store import SHIPPED_DIR


@pytest.fixture(scope="module")
def ber_run(tmp_path_factory):
    return quick_run_meta(tmp_path_factory, "ber_rayleigh_uncoded")


@pytest.fixture(scope="module")
def csi_run(tmp_path_factory):
    return quick_run_meta(tmp_path_factory, "rayleigh_jscc_vs_sscc")


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory):
    return quick_run_meta(tmp_path_factory, "multihop_rayleigh")


def _from_shipped(meta):
    stored = stored_models(meta)
    return stored and all(Path(p).parent == SHIPPED_DIR for p in stored), stored


def test_uncoded_ber_over_rayleigh_follows_the_closed_form(ber_run):
    # quick size: 200 images x 480 symbols (96,000 QPSK / 192,000 16-QAM bits per point) and 16,000 fading
    # coefficients; at 0-20 dB (BER 4e-3 to 0.3) within 15 % of the closed form
    out, df, _ = ber_run
    assert set(df.scheme) == {"QPSK", "16-QAM"}
    for label, m in (("QPSK", 2), ("16-QAM", 4)):
        g = df[df.scheme == label].sort_values("snr_db")
        want = qam_ber_rayleigh(g.snr_db.to_numpy(), m)
        np.testing.assert_allclose(g.ber.to_numpy(), want, rtol=0.15)
    assert (out / "ber_vs_snr.png").stat().st_size > 10_000


def test_the_csi_sweep_runs_every_chain_from_shipped_weights(csi_run):
    out, df, meta = csi_run
    ok, stored = _from_shipped(meta)
    assert ok, stored
    assert len(stored) == 6                           # two JSCC models per CSI mode
    assert set(df.channel_csi) == {"perfect", "pilots", "none"}
    # one pilot per image (coherence: image) on top of the 486 channel uses, in the pilots chain only
    assert (df[df.channel_csi == "pilots"].pilot_channel_uses == 1).all()
    assert df[df.channel_csi != "pilots"].pilot_channel_uses.isna().all()
    for plot in ("psnr_vs_snr", "ssim_vs_snr", "bler_vs_snr"):
        assert (out / f"{plot}.png").stat().st_size > 10_000, plot
    jscc = df[df.scheme == "PCA-DeepJSCC (SNR-adaptive)"].set_index(["channel_csi", "snr_db"]).psnr_db
    # a JSCC model trained without CSI degrades gracefully: well above the mean image at every SNR
    assert (jscc.loc["none"] > 15).all()
    assert jscc.loc[("perfect", 30.0)] > jscc.loc[("perfect", 0.0)]


def test_separation_without_csi_decodes_with_its_blind_estimate(csi_run):
    _, df, _ = csi_run
    sep = df[df.scheme == "BPG + LDPC 1/2 + 16-QAM"].set_index(["channel_csi", "snr_db"])
    # at 30 dB average SNR the outage of a rate-1/2 16-QAM code is 0.4 % (docs/channels.md): of 24 images,
    # at most 4 fail in any CSI mode
    for csi in ("perfect", "pilots", "none"):
        assert sep.loc[(csi, 30.0), "bler"] <= 4 / 24, csi


def test_the_fading_relay_chain_runs_per_number_of_hops(chain_run):
    out, df, meta = chain_run
    ok, stored = _from_shipped(meta)
    assert ok, stored
    assert set(df.hops) == {1, 2}
    assert (out / "psnr_vs_hops.png").exists() and (out / "psnr_vs_snr.png").stat().st_size > 10_000
    sep = df[df.scheme == "BPG + LDPC 1/2 + 16-QAM"].set_index(["hops", "snr_db"]).bler
    # every hop can be in outage: two hops fail at least as often as one at the same SNR (24 images; 1 image slack)
    assert sep.loc[(2, 15.0)] >= sep.loc[(1, 15.0)] - 1 / 24
