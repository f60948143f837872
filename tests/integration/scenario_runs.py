"""Helpers of the integration tests: a shipped scenario's quick run, as a user starts it."""

import json
from pathlib import Path

import pandas as pd
import yaml

from linksim.cli import main

REPO = Path(__file__).resolve().parents[2]


def quick_run(tmp_path_factory, name: str):
    """``linksim run scenarios/<name>.yaml --quick`` into a fresh folder: ``(folder, results table)``."""
    out = tmp_path_factory.mktemp(name)
    assert main(["run", str(REPO / "scenarios" / f"{name}.yaml"), "--quick", "--out", str(out),
                 "--no-progress"]) == 0
    return out, pd.read_csv(out / "results.csv")


def quick_run_meta(tmp_path_factory, name: str):
    """:func:`quick_run` with the run's ``meta.json``: ``(folder, results table, metadata)``."""
    out, df = quick_run(tmp_path_factory, name)
    return out, df, run_meta(out)


def run_meta(out) -> dict:
    """A run folder's ``meta.json``."""
    return json.loads((Path(out) / "meta.json").read_text())


def stored_models(meta: dict) -> set:
    """The model files the run's schemes loaded (``stored_model`` of each scheme that has one)."""
    return {s["stored_model"] for s in meta["schemes"] if s.get("stored_model")}


def small_scenario(tmp_path: Path, plugin: str | None = None) -> Path:
    """``multihop_df.yaml`` cut down: 60 images in batches of 25 (3 batches), 3 SNR points, 3 schemes."""
    data = yaml.safe_load((REPO / "scenarios" / "multihop_df.yaml").read_text())
    data["name"] = "parallel_small"
    data["dataset"]["test_size"] = 60
    data["snr_db"] = [0, 10, 20]
    data["schemes"] = [data["schemes"][0], data["schemes"][2], data["schemes"][4]]
    data["metrics"] = ["psnr", "ssim", "ber", "bler", "bpp", "accuracy"]
    data["plots"] = ["psnr_vs_snr"]
    data["evaluation"] = {"batch_size": 25, "example_images": 2}
    if plugin:  # only the plug-in's scheme, no task
        data["plugins"] = [plugin]
        data["schemes"] = [data["schemes"][1], {"type": "explodes", "label": "Explodes"}]
        data["metrics"] = ["psnr"]
    path = tmp_path / "parallel_small.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def table(out: Path) -> pd.DataFrame:
    """``results.csv`` without its timing column."""
    return pd.read_csv(out / "results.csv").drop(columns=["wall_s"])
