"""The MCR² scenarios (``mcr2_gated.yaml``, ``mcr2_beta.yaml``) at quick size from the shipped weights."""

from pathlib import Path

import numpy as np
import pytest
from scenario_runs import quick_run_meta, stored_models

from linksim.run import REFERENCE
from linksim.store import SHIPPED_DIR


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory):
    return quick_run_meta(tmp_path_factory, "mcr2_gated")


@pytest.fixture(scope="module")
def beta_run(tmp_path_factory):
    return quick_run_meta(tmp_path_factory, "mcr2_beta")


def _mcr2(df):
    return df[df.scheme_type == "MCR2JSCCScheme"]


def test_the_gated_scenario_runs_from_shipped_weights_and_draws_its_plots(gated_run):
    out, df, meta = gated_run
    stored = stored_models(meta)
    assert stored and all(Path(p).parent == SHIPPED_DIR for p in stored), stored
    for plot in ("psnr_vs_snr", "accuracy_vs_snr", "feature_accuracy_vs_snr", "used_channel_uses_vs_snr",
                 "accuracy_vs_used_channel_uses"):
        assert (out / f"{plot}.png").stat().st_size > 10_000, plot
    rx = df[df.scheme != REFERENCE]
    assert (rx.channel_uses == 128).all()
    # feature-space accuracy for the MCR² schemes only; every scheme's decoded images are classified
    assert _mcr2(rx).feature_accuracy.notna().all() and rx[rx.scheme_type != "MCR2JSCCScheme"].feature_accuracy.isna().all()
    assert rx.accuracy.notna().all()


def test_gated_schemes_spend_fewer_channel_uses_at_high_snr_and_never_more_than_allocated(gated_run):
    _, df, _ = gated_run
    gated = df[df.scheme.str.startswith("Gated")]
    assert gated.scheme.nunique() >= 2
    for scheme, g in gated.groupby("scheme"):
        g = g.set_index("snr_db")
        assert (g.used_channel_uses <= g.channel_uses).all() and (g.used_channel_uses > 0).all()
        assert g.loc[20.0, "used_channel_uses"] < g.loc[0.0, "used_channel_uses"], scheme
        assert g.used_channel_uses_std.notna().all()
    plain = _mcr2(df)[~_mcr2(df).scheme.str.startswith("Gated")]
    assert (plain.used_channel_uses == 128).all() and (plain.used_channel_uses_std == 0).all()


def test_the_beta_sweep_runs_and_draws_the_trade_off(beta_run):
    out, df, _ = beta_run
    assert sorted(_mcr2(df).scheme.unique().tolist()) == sorted([
        "DeepJSCC (β = 0, MSE only)", "MCR² JSCC (β = 1e-4)", "MCR² JSCC (β = 1e-3)", "MCR² JSCC (β = 1e-2)"])
    for plot in ("psnr_vs_beta", "feature_accuracy_vs_beta", "accuracy_vs_beta", "feature_accuracy_vs_snr"):
        assert (out / f"{plot}.png").stat().st_size > 10_000, plot
    assert np.isfinite(_mcr2(df).feature_accuracy).all() and np.isfinite(_mcr2(df).psnr_db).all()
