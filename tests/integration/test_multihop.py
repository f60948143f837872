"""The main job ``scenarios/multihop_df.yaml`` at smoke size, with the shipped weights; resume."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from linksim.cli import main
from linksim.run import REFERENCE, run_scenario
from linksim.scenario import load_scenario
from linksim.store import SHIPPED_DIR, ModelStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def df_run(tmp_path_factory):
    # what the README's main command runs, at smoke size, through the CLI
    out = tmp_path_factory.mktemp("multihop_df_quick")
    assert main(["run", str(REPO / "scenarios" / "multihop_df.yaml"), "--quick", "--out", str(out),
                 "--no-progress"]) == 0
    return out, pd.read_csv(out / "results.csv")


def test_the_main_scenario_needs_no_training_on_a_fresh_clone(df_run):
    out, _ = df_run
    meta = json.loads((out / "meta.json").read_text())
    stored = [s.get("stored_model") for s in meta["schemes"] if s.get("stored_model")]
    stored.append(meta["classifier"]["stored_model"])
    # PCA-DeepJSCC, the DHD-aligned DeepJSCC and the classifier
    assert len(stored) == 3 and all(Path(p).parent == SHIPPED_DIR for p in stored), stored


def test_main_scenario_writes_every_column_and_plot(df_run):
    out, df = df_run
    for col in ("scheme", "snr_db", "hops", "relay", "psnr_db", "ssim", "lpips", "bpp", "channel_uses", "ber",
                "bler", "decode_failures", "accuracy", "f1"):
        assert col in df.columns, col
    assert set(df.hops) == {2} and set(df.relay) == {"df"}
    for plot in ("psnr_vs_snr", "accuracy_vs_snr", "ssim_vs_snr", "lpips_vs_snr", "ber_vs_snr", "bler_vs_snr",
                 "examples"):
        assert (out / f"{plot}.png").exists(), plot


def test_classifier_reference_is_recorded_and_never_beaten_by_more_than_noise(df_run):
    _, df = df_run
    ref = df[df.scheme == REFERENCE]
    assert len(ref) == 1 and math.isnan(ref.snr_db.iloc[0])
    p, n = float(ref.accuracy.iloc[0]), int(df[df.scheme != REFERENCE].images.iloc[0])
    assert p > 0.7
    # received images cannot carry more class information than the originals; the same n test
    # images are scored, so an excess is sampling noise: allow 3 standard errors of a proportion
    tol = 3 * math.sqrt(p * (1 - p) / n) + 1 / n
    rx = df[df.scheme != REFERENCE]
    assert (rx.accuracy <= p + tol).all(), rx[["scheme", "snr_db", "accuracy"]]


def test_separation_over_df_falls_off_its_cliff_while_the_jscc_keeps_its_accuracy(df_run):
    _, df = df_run
    lo, hi = df.snr_db.min(), df.snr_db.max()
    sep = df[df.scheme_type == "SeparationScheme"]
    for scheme, g in sep.groupby("scheme"):
        g = g.set_index("snr_db")
        assert g.loc[lo, "decode_failures"] == g.loc[lo, "images"], scheme
        assert g.loc[hi, "decode_failures"] == 0 and g.loc[hi, "ber"] == 0, scheme
    jscc = df[df.scheme_type == "PCADeepJSCCScheme"]
    best_sep_lo = sep[sep.snr_db == lo].accuracy.max()
    assert (jscc[jscc.snr_db == lo].accuracy > best_sep_lo + 0.2).all()


def test_a_second_run_into_the_same_directory_resumes(df_run, tmp_path):
    out, df = df_run
    before = (out / "results.csv").read_text()
    scen = load_scenario(REPO / "scenarios" / "multihop_df.yaml").quick()
    again = run_scenario(scen, out, progress=False, store=ModelStore([SHIPPED_DIR]), train_missing=False,
                         plots=False)
    meta = json.loads((out / "meta.json").read_text())
    points = len(df[df.scheme != REFERENCE])
    assert meta["resumed_points"] == points
    assert (out / "results.csv").read_text() == before
    assert len(again) == len(df)
