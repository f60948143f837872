"""The walkthroughs of docs/extending.md, run from outside the package: a new channel and a new JSCC loss,
each one plug-in file (docs/examples/), used by a scenario through ``linksim run --plugin``."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from linksim.cli import main
from linksim.registry import CHANNELS, LOSSES, load_plugin

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
CHANNEL_PLUGIN = EXAMPLES / "rayleigh_hop.py"
LOSS_PLUGIN = EXAMPLES / "l1_loss.py"

SCENARIO = """\
name: extending_walkthrough
seed: 3
dataset: {{name: embedded, train_size: 256, test_size: 32}}
snr_db: [5, 25]
rate: {{channel_uses: 98}}
channel: {{type: multihop, hops: 2, relay: af, hop: {{type: example_rayleigh_block}}}}
schemes:
  - type: jscc
    label: DeepJSCC, MSE + L1
    architecture: {{type: deepjscc, filters: [8, 8, 8, 8]}}
    snr_train_db: 15
    batch_size: 32
    stages:
      - losses: [{{type: mse}}, {{type: example_l1, weight: 0.5, scale: 2.0}}]
        epochs: 2
        steps_per_epoch: 4
metrics: [psnr]
plots: []
evaluation: {{example_images: 0}}
"""


def test_the_example_channel_and_loss_plug_in_and_run_a_scenario(tmp_path):
    scen = tmp_path / "walkthrough.yaml"
    scen.write_text(SCENARIO.format())
    out = tmp_path / "run"
    rc = main(["run", str(scen), "--out", str(out), "--plugin", str(CHANNEL_PLUGIN), "--plugin", str(LOSS_PLUGIN)])
    assert rc == 0
    df = pd.read_csv(out / "results.csv")
    rows = df[df["scheme"] == "DeepJSCC, MSE + L1"].sort_values("snr_db")
    assert list(rows["snr_db"]) == [5, 25]
    assert rows["hops"].tolist() == [2, 2]
    assert np.all(np.isfinite(rows["psnr_db"]))
    assert "example_rayleigh_block" in CHANNELS and "example_l1" in LOSSES


def test_the_example_fading_hop_reports_the_equalised_noise_per_image():
    """ZF with perfect CSI: E|y - x|^2 of image i is no / |h_i|^2, what ``out["no"]`` says.

    4 images x 20,000 symbols at 10 dB: the per-image sample variance has a relative
    standard error of 1/sqrt(20,000) = 0.7 %; tolerance 5 %.
    """
    load_plugin(CHANNEL_PLUGIN)
    tf.random.set_seed(5)
    ch = CHANNELS.create("example_rayleigh_block")
    x = tf.complex(tf.random.normal([4, 20000]), tf.random.normal([4, 20000])) / np.sqrt(2.0)
    out = ch(x, 10.0)
    err = np.mean(np.abs(out["y"].numpy() - x.numpy()) ** 2, axis=1)
    np.testing.assert_allclose(err, out["no"].numpy(), rtol=0.05)
    np.testing.assert_allclose(out["no"].numpy(), 0.1 / np.abs(out["state"]["h"].numpy()) ** 2, rtol=1e-5)


def test_the_example_loss_refuses_a_bad_option_naming_it():
    load_plugin(LOSS_PLUGIN)
    with pytest.raises(ValueError, match="scale must be a positive number"):
        LOSSES.create("example_l1", scale=-1)
    with pytest.raises(ValueError, match=r"has no option\(s\) scal .*allowed: scale"):
        LOSSES.create("example_l1", scal=1)
