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
