"""The ``linksim`` command, called through ``main([...])``."""

import json
from pathlib import Path

import pandas as pd
import pytest

from linksim.cli import main

REPO = Path(__file__).resolve().parents[2]

SMOKE = """\
name: smoke
seed: 5
dataset: {name: embedded, test_size: 6, train_size: 50}
snr_db: [0, 20]
rate: {channel_uses: 486}
schemes:
  - type: separation
    label: WebP+LDPC
    codec: {type: webp}
  - type: separation
    label: BPG+ideal
    codec: {type: bpg}
    channel_code: {type: ideal}
plots: [psnr_vs_snr, ssim_vs_snr, ber_vs_snr, bler_vs_snr, examples]
evaluation: {example_images: 2}
"""


@pytest.fixture
def smoke_file(tmp_path):
    p = tmp_path / "smoke.yaml"
    p.write_text(SMOKE)
    return p


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert "linksim" in capsys.readouterr().out
    assert main([]) == 2


def test_list_shows_every_registry(capsys):
    from linksim import registry

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for title, reg in registry.ALL.items():  # one source: every registry, every name
        assert f"{title}:" in out, title
        for name in reg.names():
            assert f"  {name} " in out, name
    assert "stored models:" in out
    for word in ("schemes:", "separation", "codecs:", "bpg", "jpeg2000", "channel codes:", "ldpc_80211n",
                 "ldpc5g", "ideal", "channels:", "awgn", "datasets:", "embedded", "cifar10", "metrics:",
                 "psnr", "plots:", "psnr_vs_snr"):
        assert word in out, word


def test_validate_accepts_the_shipped_scenarios(capsys):
    files = [str(p) for p in sorted((REPO / "scenarios").glob("*.yaml"))]
    assert main(["validate", *files]) == 0
    assert capsys.readouterr().out.count(": ok") == len(files)


def test_validate_explains_a_bad_file_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.replace("codec: {type: webp}", "codec: {type: webp, quality_step: 3}"))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "schemes[0]" in err and "Traceback" not in err


def test_run_writes_results_meta_and_plots_then_resumes(smoke_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(smoke_file), "--out", str(out), "--no-progress"]) == 0
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4
    for col in ("scheme", "snr_db", "psnr_db", "ssim", "bpp", "channel_uses", "ber", "bler", "decode_failures"):
        assert col in df.columns, col
    assert set(df["channel_uses"]) == {486}
    webp = df[df.scheme == "WebP+LDPC"].set_index("snr_db")
    assert webp.loc[0, "decode_failures"] == 6 and webp.loc[20, "decode_failures"] == 0
    assert webp.loc[20, "psnr_db"] > webp.loc[0, "psnr_db"] + 3
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 5
    for key in ("linksim", "sionna", "tensorflow", "numpy"):
        assert key in meta["versions"]
    assert "wall_time_s" in meta and "git_commit" in meta
    assert (out / "scenario.yaml").exists()
    for png in ("psnr_vs_snr.png", "ssim_vs_snr.png", "ber_vs_snr.png", "bler_vs_snr.png", "examples.png"):
        assert (out / png).stat().st_size > 1000, png

    # a second run into the same directory computes nothing again
    before = (out / "results.csv").read_text()
    assert main(["run", str(smoke_file), "--out", str(out), "--no-progress"]) == 0
    assert (out / "results.csv").read_text() == before
    assert json.loads((out / "meta.json").read_text())["resumed_points"] == 4

    # plots are redrawn from the saved results
    (out / "psnr_vs_snr.png").unlink()
    assert main(["plot", str(out)]) == 0
    assert (out / "psnr_vs_snr.png").exists()


def test_run_refuses_to_overwrite_another_scenarios_results(smoke_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(smoke_file), "--out", str(out), "--no-progress"]) == 0
    other = tmp_path / "other.yaml"
    other.write_text(SMOKE.replace("seed: 5", "seed: 6"))
    before = (out / "results.csv").read_text()
    assert main(["run", str(other), "--out", str(out), "--no-progress"]) == 2
    assert "different scenario" in capsys.readouterr().err
    assert (out / "results.csv").read_text() == before


def test_plot_on_a_directory_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no results.csv" in capsys.readouterr().err
