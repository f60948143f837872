"""The DHD scenarios (``dhd_multihop_df.yaml``, ``dhd_multihop_qf.yaml``) at quick size from the shipped weights."""

import math
from pathlib import Path

import pytest
from scenario_runs import quick_run, run_meta, stored_models

from linksim.run import REFERENCE
from linksim.store import SHIPPED_DIR

PLOTS = ("psnr_vs_snr", "lpips_vs_snr", "hash_cos_vs_snr", "retrieval_map_vs_snr", "psnr_vs_hops", "lpips_vs_hops",
         "hash_cos_vs_hops", "hash_hamming_norm_vs_hops", "retrieval_map_vs_hops", "examples")


@pytest.fixture(scope="module")
def df_run(tmp_path_factory):
    return quick_run(tmp_path_factory, "dhd_multihop_df")


@pytest.fixture(scope="module")
def qf_run(tmp_path_factory):
    return quick_run(tmp_path_factory, "dhd_multihop_qf")


def _stored(out):
    meta = run_meta(out)
    return stored_models(meta), meta


def test_the_df_scenario_runs_from_shipped_weights_over_1_and_4_hops(df_run):
    out, df = df_run
    stored, meta = _stored(out)
    # 5 lambdas (one-hop models) and PCA-DeepJSCC, all shipped; the hash network too
    assert len(stored) == 6 and all(Path(p).parent == SHIPPED_DIR for p in stored), stored
    assert Path(meta["tasks"]["hashing"]["stored_model"]).parent == SHIPPED_DIR
    rx = df[df.scheme != REFERENCE]
    # the quick run keeps the ends of the sweep (quick.hops: [1, 4])
    assert sorted(set(rx.hops)) == [1, 4] and set(rx.loc[rx.hops == 4, "relay"]) == {"df/df/df"}
    assert len(rx) == 2 * 10 * 3  # chains x schemes x quick SNRs
    for col in ("psnr_db", "lpips", "hash_cos", "hash_hamming_norm", "retrieval_map"):
        assert rx[col].notna().all(), col
    for plot in PLOTS:
        assert (out / f"{plot}.png").stat().st_size > 10_000, plot


def test_hash_metrics_are_bounded_and_the_reference_row_holds_the_original_retrieval(df_run):
    _, df = df_run
    ref = df[df.scheme == REFERENCE]
    assert len(ref) == 1 and 0.5 < float(ref.retrieval_map.iloc[0]) <= 1.0
    rx = df[df.scheme != REFERENCE]
    assert ((rx.hash_cos >= -1) & (rx.hash_cos <= 1 + 1e-6)).all()
    assert ((rx.hash_hamming_norm >= 0) & (rx.hash_hamming_norm <= 1)).all()
    assert ((rx.lpips >= 0) & (rx.lpips < 1.5)).all()


def test_df_noise_accumulates_over_hops_for_every_jscc(df_run):
    # 24 images, 0 dB per hop: a DF relay re-encodes its errors, so 4 hops are worse than 1 (by a margin far
    # beyond the noise of 24 images: measured 3-5 dB of PSNR)
    _, df = df_run
    jscc = df[df.scheme_type.isin(["JSCCScheme", "PCADeepJSCCScheme"]) & (df.snr_db == 0)]
    for scheme, g in jscc.groupby("scheme"):
        g = g.set_index("hops")
        assert g.loc[4, "psnr_db"] < g.loc[1, "psnr_db"] - 1.0, scheme
        assert g.loc[4, "lpips"] > g.loc[1, "lpips"], scheme


def test_the_qf_scenario_runs_every_chain_from_shipped_weights(qf_run):
    out, df = qf_run
    stored, _ = _stored(out)
    # 5 one-hop lambdas, 2 QF-trained lambdas, PCA-DeepJSCC: one model each for every chain
    assert len(stored) == 8 and all(Path(p).parent == SHIPPED_DIR for p in stored), stored
    rx = df[df.scheme != REFERENCE]
    chains = {(int(h), None if math.isnan(b) else int(b)) for h, b in zip(rx.hops, rx.relay_bits)}
    assert chains == {(1, None), (4, 2), (4, 8)}  # quick: hops [1, 4], bits [2, 8] (the full run has 13 chains)
    assert len(rx) == 3 * 12 * 3
    for plot in PLOTS:
        assert (out / f"{plot}.png").stat().st_size > 10_000, plot


def test_more_relay_bits_help_every_jscc_over_qf(qf_run):
    # 24 images at 20 dB per hop over 4 hops: 8-bit relays beat 2-bit relays (measured by several dB)
    _, df = qf_run
    rx = df[(df.scheme_type == "JSCCScheme") & (df.snr_db == 20) & (df.hops == 4)]
    for scheme, g in rx.groupby("scheme"):
        g = g.set_index("relay_bits")
        assert g.loc[8.0, "psnr_db"] > g.loc[2.0, "psnr_db"] + 1.0, scheme
