"""Helpers of the integration tests: a shipped scenario's quick run, as a user starts it."""

import json
from pathlib import Path

import pandas as pd

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
