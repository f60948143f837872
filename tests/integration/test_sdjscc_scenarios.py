"""The SD-JSCC paper's experiments (scenarios/sdjscc_*.yaml) at --quick size, with the shipped weights."""

from pathlib import Path

import pytest

from linksim.runner import REFERENCE, run_scenario
from linksim.scenario import load_scenario
from linksim.store import SHIPPED_DIR, ModelStore

REPO = Path(__file__).resolve().parents[2]

EXPECTED_PLOTS = {
    "sdjscc_acc_vs_snr": ["accuracy_vs_snr.png", "psnr_vs_snr.png", "table.md"],
    "sdjscc_table": ["table.md", "table.csv"],
    "sdjscc_acc_vs_rate": ["accuracy_vs_rate.png", "psnr_vs_rate.png", "table.md"],
    "sdjscc_tau": ["accuracy_vs_tau.png", "psnr_vs_tau.png"],
    "sdjscc_robustness": ["accuracy_vs_snr.png", "accuracy_vs_snr_train_db.png"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PLOTS))
def test_experiment_scenario_runs_at_quick_size_on_the_shipped_weights(name, tmp_path):
    scen = load_scenario(REPO / "scenarios" / f"{name}.yaml").quick()
    # only the shipped weights: a missing model is an error here, not a training run
    df = run_scenario(scen, tmp_path, progress=False, store=ModelStore([SHIPPED_DIR]), train_missing=False)
    rx = df[df.scheme != REFERENCE]
    assert len(rx) == len(scen.schemes) * len(scen.snr_db) * rx.channel_uses.nunique()
    assert rx.accuracy.between(0, 1).all()
    jscc = rx[rx.scheme_type.isin(["SDJSCCScheme", "SDJSCCNoGSWScheme", "DeepJSCCScheme"])]
    # binary latent: 2k bits per image, bpp = 2k / (28 * 28)
    assert ((jscc.bpp - 2 * jscc.channel_uses / 784).abs() < 1e-9).all()
    for f in EXPECTED_PLOTS[name]:
        assert (tmp_path / f).exists(), f
