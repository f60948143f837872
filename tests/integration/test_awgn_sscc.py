"""The shipped scenario ``scenarios/awgn_sscc.yaml``: smoke size in the default run, full size marked slow."""

from pathlib import Path

import pandas as pd
import pytest

from linksim.cli import main

REPO = Path(__file__).resolve().parents[2]
SCENARIO = str(REPO / "scenarios" / "awgn_sscc.yaml")


def test_awgn_sscc_quick_shows_the_separation_cliff(tmp_path):
    out = tmp_path / "quick"
    assert main(["run", SCENARIO, "--quick", "--out", str(out), "--no-progress"]) == 0
    df = pd.read_csv(out / "results.csv")
    lo, hi = df.snr_db.min(), df.snr_db.max()
    for scheme, g in df[df.scheme_type == "SeparationScheme"].groupby("scheme"):
        g = g.set_index("snr_db")
        if g.loc[lo, "bler"] > 0:  # practical codes: below the cliff every image falls back
            assert g.loc[lo, "decode_failures"] == g.loc[lo, "images"], scheme
        assert g.loc[hi, "decode_failures"] == 0, scheme
        assert g.loc[hi, "psnr_db"] > g.loc[lo, "psnr_db"], scheme


@pytest.mark.slow
def test_awgn_sscc_full_run(tmp_path):
    out = tmp_path / "full"
    assert main(["run", SCENARIO, "--out", str(out), "--no-progress"]) == 0
    df = pd.read_csv(out / "results.csv")
    assert df.snr_db.nunique() == 21
