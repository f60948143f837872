"""A scenario that sweeps the rate: one row per (scheme, rate, SNR), rate plots, resume per rate."""

import pandas as pd

from linksim.cli import main

SWEEP = """\
name: rate_sweep
seed: 1234                     # with the embedded data set: the shipped classifier
dataset: {name: embedded, test_size: 30}
snr_db: [6, 16]
rate: {channel_uses: [486, 972]}
schemes:
  - type: separation
    label: WebP + LDPC
    codec: {type: webp}
metrics: [psnr, ssim, ber, bler, bpp, accuracy, f1]
plots: [psnr_vs_snr, psnr_vs_rate, accuracy_vs_rate]
evaluation: {example_images: 0}
"""


def test_rate_sweep_gives_a_row_per_rate_and_draws_rate_plots(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(SWEEP)
    out = tmp_path / "run"
    assert main(["run", str(f), "--out", str(out), "--no-progress"]) == 0
    df = pd.read_csv(out / "results.csv")
    rx = df[df.scheme_type != "Reference"]
    assert sorted(rx.channel_uses.unique()) == [486, 972]
    assert len(rx) == 4
    # twice the channel uses carry twice the codewords: more bits for the image, a better picture
    hi = rx[rx.snr_db == 16].set_index("channel_uses")
    assert hi.loc[972, "bpp"] > 1.9 * hi.loc[486, "bpp"]
    assert hi.loc[972, "psnr_db"] > hi.loc[486, "psnr_db"] + 3
    assert (out / "psnr_vs_rate.png").exists() and (out / "accuracy_vs_rate.png").exists()
    # resume: dropping one rate's rows recomputes only those
    df[~((df.channel_uses == 972) & (df.snr_db == 6))].to_csv(out / "results.csv", index=False)
    assert main(["run", str(f), "--out", str(out), "--no-progress"]) == 0
    again = pd.read_csv(out / "results.csv")
    assert len(again) == len(df)
    import json

    assert json.loads((out / "meta.json").read_text())["resumed_points"] == 3


PARAM = """\
name: param_sweep
dataset: {name: embedded, test_size: 20}
snr_db: [5, 15]
rate: {channel_uses: 486}
schemes:                       # the shipped models of scenarios/awgn_jscc_vs_sscc.yaml: no training
  - {type: deepjscc_pca, label: "DeepJSCC 1 dB", snr_train_db: 1, epochs: 15}
  - {type: deepjscc_pca, label: "DeepJSCC 19 dB", snr_train_db: 19, epochs: 15}
metrics: [psnr, ssim, accuracy, f1]
plots: [table, psnr_vs_snr_train_db, accuracy_vs_snr_train_db]
"""


def test_metric_vs_scheme_option_plots_and_the_markdown_table(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(PARAM)
    out = tmp_path / "run"
    assert main(["run", str(f), "--out", str(out), "--no-progress"]) == 0
    import json

    meta = json.loads((out / "meta.json").read_text())
    assert all(s.get("stored_model") for s in meta["schemes"]), "the test must run from shipped models"
    for name in ("psnr_vs_snr_train_db.png", "accuracy_vs_snr_train_db.png", "table.csv", "table.md"):
        assert (out / name).exists(), name
    md = (out / "table.md").read_text()
    assert "## SNR 5 dB" in md and "| DeepJSCC 19 dB |" in md and "accuracy" in md
    table = pd.read_csv(out / "table.csv")
    assert len(table) == 5  # the reference and 2 schemes x 2 SNRs


def test_a_plot_for_an_option_no_scheme_sets_is_an_error(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text(PARAM.replace("accuracy_vs_snr_train_db", "accuracy_vs_tau"))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    assert "plots[2]" in err and "accuracy_vs_tau" in err and "<metric>_vs_<scheme option>" in err
