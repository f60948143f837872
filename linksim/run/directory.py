"""The run directory: resume, writing results, provenance (``meta.json``) and example images.

A run directory holds

- ``scenario.yaml``: the resolved scenario (every default filled in, the SNR grid expanded);
- ``meta.json``: linksim, Sionna, TensorFlow, Keras, numpy and Python versions, the seed,
  the git commit when available, wall time, per-scheme facts (bit budget, codewords);
- ``results.csv``: one row per (scheme, SNR point), written after every point;
- ``examples/``: a few received images per (scheme, SNR point) for the image grid
  (file names from :func:`example_path`, the one place that names them);
- the PNG plots, drawn from ``results.csv`` (``linksim plot RUN_DIR`` redraws them).

Resuming: running the same scenario into a directory that already holds some of its
rows computes only the missing (scheme, SNR) points.  A directory that holds a
*different* scenario's results is refused, so nothing computed is overwritten.

This module imports no other linksim module but the package version, so plotting
and evaluation can both use it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from linksim import __version__

__all__ = ["RunError", "RunDirectory", "RESULTS", "REFERENCE", "REFERENCE_TYPE", "versions", "slug",
           "snr_key", "row_snr_key", "example_path", "is_reference"]

RESULTS = "results.csv"

#: The ``scheme`` of the reference row (a task on the original test images: the ceiling
#: of every scheme's task metrics).  The one name of that row: the results table, the
#: plots' legends and the Markdown table all use it.
REFERENCE = "reference (original images)"
#: The ``scheme_type`` of the reference row.
REFERENCE_TYPE = "Reference"


class RunError(RuntimeError):
    """A run that cannot proceed (e.g. the output directory holds another scenario)."""


def versions() -> dict:
    """Versions of everything that changes results."""
    import keras
    import sionna.phy
    import tensorflow as tf

    try:
        from importlib.metadata import version

        sionna_v = version("sionna-no-rt")
    except Exception:  # pragma: no cover
        sionna_v = getattr(sionna.phy, "__version__", "unknown")
    return {"linksim": __version__, "sionna": sionna_v, "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "python": platform.python_version()}


def git_commit() -> str | None:
    """The commit of the linksim checkout, or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def slug(text: str) -> str:
    """``text`` as a file-name part: letters, digits and underscores, lower case."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "scheme"


def snr_key(snr_db) -> str:
    """A grid point as text: ``"10.000000"``, or per hop ``"10.000000/20.000000"``."""
    if isinstance(snr_db, (list, tuple)):
        return "/".join(f"{float(v):.6f}" for v in snr_db)
    return f"{float(snr_db):.6f}"


def _explicit(row: dict) -> bool:
    flag = row.get("snr_explicit_per_hop")
    if isinstance(flag, str):  # read back from CSV by a reader that kept text
        return flag.strip().lower() == "true"
    return bool(flag) and not (isinstance(flag, float) and np.isnan(flag))


def row_snr_key(row: dict) -> str:
    """The :func:`snr_key` of the grid point a results row was computed at."""
    hop = row.get("hop_snr_db")
    if isinstance(hop, str) and hop and _explicit(row):
        return snr_key([float(v) for v in hop.split("/")])
    return snr_key(row["snr_db"])


def is_reference(df: pd.DataFrame) -> pd.Series:
    """Which rows of a results table are the reference row."""
    return df["scheme"] == REFERENCE if "scheme" in df.columns else pd.Series(False, index=df.index)


def example_path(run_dir, scheme_label: str, row: dict) -> Path:
    """Where the example images of a (scheme, SNR point) are stored.

    ``row`` is a results row (or its SNR columns ``snr_db``, ``hop_snr_db``,
    ``snr_explicit_per_hop``): a swept point is named by its SNR
    (``<scheme>__snr10.npy``), an explicit per-hop point by its hop SNRs
    (``<scheme>__snr5_20.npy``).  Writer and example grid both call this.
    """
    if _explicit(row):
        tag = "_".join(f"{float(v):g}" for v in str(row["hop_snr_db"]).split("/"))
    else:
        tag = f"{float(row['snr_db']):g}"
    return Path(run_dir) / "examples" / f"{slug(scheme_label)}__snr{tag}.npy"


def _resolved_for_compare(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=True)


class RunDirectory:
    """A run directory: the scenario it holds, its rows, its meta data and examples.

    Parameters
    ----------
    path : path
        The directory (created by :meth:`open`).
    """

    def __init__(self, path):
        self.path = Path(path)

    @property
    def results_file(self) -> Path:
        return self.path / RESULTS

    def open(self, scenario_data: dict, scenario_yaml: str, overwrite: bool = False) -> list[dict]:
        """Create the directory; return the rows already there (resume).

        Parameters
        ----------
        scenario_data : dict
            The resolved scenario (``Scenario.data``), compared with the stored one.
        scenario_yaml : str
            Its YAML text, written to ``scenario.yaml`` in a new directory.
        overwrite : bool
            Replace another scenario's results instead of refusing.

        Output
        ------
        list of dict: the stored rows of this scenario (empty for a new directory).

        Raises
        ------
        RunError
            The directory holds a different scenario's results (and not ``overwrite``).
        """
        out = self.path
        out.mkdir(parents=True, exist_ok=True)
        existing = out / "scenario.yaml"
        if existing.exists() and not overwrite:
            old = yaml.safe_load(existing.read_text())
            if _resolved_for_compare(old) != _resolved_for_compare(scenario_data):
                raise RunError(
                    f"{out} holds the results of a different scenario ({existing}); nothing was changed. "
                    f"Use another --out, or --overwrite to replace them.")
            if self.results_file.exists():
                return pd.read_csv(self.results_file).to_dict("records")
            return []
        if overwrite and self.results_file.exists():
            self.results_file.unlink()
        existing.write_text(scenario_yaml)
        return []

    def write_results(self, rows: list[dict]) -> pd.DataFrame:
        """Write ``rows`` to ``results.csv`` atomically (a new file replaces the old)."""
        df = pd.DataFrame(rows)
        tmp = self.path / (RESULTS + ".tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, self.results_file)
        return df

    def write_meta(self, meta: dict) -> Path:
        """Write ``meta.json``."""
        path = self.path / "meta.json"
        path.write_text(json.dumps(meta, indent=2, default=str))
        return path

    def write_original_examples(self, images) -> None:
        """Store the original images of the example grid (``examples/original.npy``)."""
        (self.path / "examples").mkdir(exist_ok=True)
        np.save(self.path / "examples" / "original.npy", images)

    def write_examples(self, scheme_label: str, row: dict, images) -> Path:
        """Store the received example images of one (scheme, SNR point)."""
        path = example_path(self.path, scheme_label, row)
        path.parent.mkdir(exist_ok=True)
        np.save(path, images)
        return path


def new_meta(scenario, resumed_points: int) -> dict:
    """The provenance of a run at its start: versions, commit, command, seed, time."""
    return {"scenario": scenario.name, "source": scenario.source, "seed": scenario.seed,
            "quick": bool(scenario.data.get("quick_mode", False)), "versions": versions(),
            "git_commit": git_commit(), "command": " ".join(sys.argv),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resumed_points": resumed_points, "schemes": []}


def finish_meta(meta: dict, wall_time_s: float) -> dict:
    """Add the end time and the wall time to ``meta``."""
    meta["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta["wall_time_s"] = round(wall_time_s, 2)
    return meta
