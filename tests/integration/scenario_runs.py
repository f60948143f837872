"""Helpers of the integration tests: a shipped scenario's quick run, as a user starts it."""

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
