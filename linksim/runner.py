"""Run a scenario: data set -> schemes -> SNR sweep -> results table, metadata and plots.

A run directory holds

- ``scenario.yaml``: the resolved scenario (every default filled in, the SNR grid expanded);
- ``meta.json``: linksim, Sionna, TensorFlow, Keras, numpy and Python versions, the seed,
  the git commit when available, wall time, per-scheme facts (bit budget, codewords);
- ``results.csv``: one row per (scheme, SNR point), written after every point;
- ``examples/``: a few received images per (scheme, SNR point) for the image grid;
- the PNG plots, drawn from ``results.csv`` (``linksim plot RUN_DIR`` redraws them).

Resuming: running the same scenario into a directory that already holds some of its
rows computes only the missing (scheme, SNR) points.  A directory that holds a
*different* scenario's results is refused, so nothing computed is overwritten.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from linksim import __version__
from linksim.registry import CHANNELS, SCHEMES
from linksim.scenario import Scenario, ScenarioError

__all__ = ["RunError", "run_scenario", "train_scenario", "channel_uses_for", "versions"]

RESULTS = "results.csv"


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


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def channel_uses_for(rate: dict, image_shape) -> int:
    """Complex channel uses per image from the scenario's ``rate`` field.

    ``bandwidth_ratio`` is k/n with n = H * W * C source values; k is rounded to
    the nearest integer (at least 1).
    """
    if "channel_uses" in rate:
        return int(rate["channel_uses"])
    n = int(np.prod(image_shape))
    return max(1, int(round(float(rate["bandwidth_ratio"]) * n)))


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "scheme"


def _point_seed(seed: int, label: str, snr_db: float) -> int:
    """A seed per (scheme, SNR point), so a resumed point equals a fresh one."""
    return (seed * 1_000_003 + zlib.crc32(f"{label}|{snr_db:.6f}".encode())) % (2**31 - 1)


def _set_seed(seed: int) -> None:
    import keras
    import sionna.phy

    keras.utils.set_random_seed(seed)
    sionna.phy.config.seed = seed


def _build_scheme(scenario: Scenario, index: int):
    spec = dict(scenario.schemes[index])
    cls = SCHEMES.get(spec.pop("type"))
    try:
        return cls(**spec)
    except (TypeError, ValueError, KeyError) as exc:
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        raise scenario.error(("schemes", index), msg) from None


def _load_data(scenario: Scenario):
    from linksim.data import get_dataset
    from linksim.data.base import DatasetError, to_float

    ds_spec = scenario.data["dataset"]
    try:
        ds = get_dataset(ds_spec["name"], **ds_spec.get("params", {}))
        x_test, y_test = ds.load("test", ds_spec["test_size"], seed=scenario.seed)
        x_train, y_train = ds.load("train", ds_spec.get("train_size"), seed=scenario.seed)
    except DatasetError as exc:
        raise scenario.error(("dataset",), str(exc)) from None
    except TypeError as exc:
        raise scenario.error(("dataset", "params"), str(exc)) from None
    return ds, to_float(x_train), y_train, to_float(x_test), y_test


class _Aggregate:
    def __init__(self):
        self.counts: dict[str, int] = {}
        self.per_image: dict[str, list] = {}

    def add(self, counts: dict, metrics: dict):
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        for k, v in metrics.items():
            self.per_image.setdefault(k, []).append(np.asarray(v))


def _row(scheme, snr_db: float, agg: _Aggregate, image_shape, wall_s: float) -> dict:
    from linksim.metrics import get_metric

    c = agg.counts
    n_img = c["images"]
    h, w, _ = image_shape
    row = {"scheme": scheme.label, "scheme_type": type(scheme).__name__, "snr_db": float(snr_db)}
    for name, vals in agg.per_image.items():
        vals = np.concatenate(vals)
        row[get_metric(name).column] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    row["bpp"] = c["source_bits"] / (n_img * h * w)  # NaN for analog schemes
    row["channel_uses"] = c["channel_uses"] / n_img
    row["used_channel_uses"] = c.get("used_channel_uses", c["channel_uses"]) / n_img
    if scheme.digital:
        row["ber"] = c["bit_errors"] / max(1, c["bits"])
        row["bler"] = c["block_errors"] / max(1, c["blocks"])
        row["decode_failures"] = int(c["decode_failures"])
        row["bits"] = int(c["bits"])
        row["blocks"] = int(c["blocks"])
    row["images"] = int(n_img)
    row["wall_s"] = round(wall_s, 3)
    return row


def _write_results(out: Path, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    tmp = out / (RESULTS + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, out / RESULTS)
    return df


def _resolved_for_compare(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=True)


def _prepare_out_dir(scenario: Scenario, out: Path, overwrite: bool) -> list[dict]:
    """Create ``out``; return rows already there (resume) after checking it is this scenario."""
    out.mkdir(parents=True, exist_ok=True)
    existing = out / "scenario.yaml"
    if existing.exists() and not overwrite:
        old = yaml.safe_load(existing.read_text())
        if _resolved_for_compare(old) != _resolved_for_compare(scenario.data):
            raise RunError(
                f"{out} holds the results of a different scenario ({existing}); nothing was changed. "
                f"Use another --out, or --overwrite to replace them.")
        if (out / RESULTS).exists():
            return pd.read_csv(out / RESULTS).to_dict("records")
        return []
    if overwrite and (out / RESULTS).exists():
        (out / RESULTS).unlink()
    existing.write_text(scenario.to_yaml())
    return []


def _context(scenario: Scenario, image_shape, k: int, x_train, channel, store, progress: bool,
             train_missing: bool = True):
    from linksim.schemes.base import SchemeContext

    ds = scenario.data["dataset"]
    dataset_spec = {"name": ds["name"], "params": ds.get("params", {}), "train_size": ds.get("train_size")}
    return SchemeContext(image_shape=image_shape, channel_uses=k, train_images=x_train, channel=channel,
                         seed=scenario.seed, dataset_spec=dataset_spec, store=store, progress=progress,
                         train_missing=train_missing)


def _prepare(scenario: Scenario, index: int, scheme, ctx) -> None:
    try:
        scheme.prepare(ctx)
    except ValueError as exc:
        raise scenario.error(("schemes", index), str(exc)) from None


def _setup(scenario: Scenario):
    """Data, image shape, channel uses and channel of a scenario."""
    ds, x_train, _, x_test, _ = _load_data(scenario)
    image_shape = tuple(int(s) for s in x_test.shape[1:])
    k = channel_uses_for(scenario.data["rate"], image_shape)
    ch_spec = dict(scenario.data["channel"])
    channel = CHANNELS.create(ch_spec.pop("type"), **ch_spec)
    return ds, x_train, x_test, image_shape, k, channel


def train_scenario(scenario: Scenario, *, store=None, progress: bool = True) -> list[dict]:
    """Train (or find in the store) every model the scenario's schemes need.

    Output
    ------
    list of ``{"scheme": label, "stored_model": path}``, one per trainable scheme.
    """
    from linksim.store import default_store

    store = store or default_store()
    _set_seed(scenario.seed)
    _, x_train, _, image_shape, k, channel = _setup(scenario)
    out = []
    for i in range(len(scenario.schemes)):
        scheme = _build_scheme(scenario, i)
        if not scheme.trainable:
            continue
        _prepare(scenario, i, scheme, _context(scenario, image_shape, k, x_train, channel, store, progress))
        out.append({"scheme": scheme.label, "stored_model": str(scheme.entry.path)})
    return out


def run_scenario(scenario: Scenario, out_dir: str | os.PathLike, *, overwrite: bool = False,
                 progress: bool = True, plots: bool = True, store=None) -> pd.DataFrame:
    """Run every (scheme, SNR) point of ``scenario`` and write the run directory.

    Parameters
    ----------
    scenario : Scenario
        A validated scenario (apply :meth:`Scenario.quick` first for smoke size).
    out_dir : path
        The run directory (created; resumed when it holds this scenario's rows).
    overwrite : bool
        Replace results of a different scenario in ``out_dir`` instead of refusing.
    progress : bool
        Show a progress bar on stderr.
    plots : bool
        Draw the plots at the end.
    store : ModelStore, optional
        Where trained models are found and stored (default :func:`linksim.store.default_store`).

    Output
    ------
    pandas.DataFrame: the results table.

    Raises
    ------
    ScenarioError
        A field that only fails when used (scheme options, data-set files).
    RunError
        ``out_dir`` holds a different scenario.
    """
    from tqdm.auto import tqdm

    from linksim.metrics import get_metric, image_metric_names
    from linksim.store import default_store

    t0 = time.time()
    out = Path(out_dir)
    rows = _prepare_out_dir(scenario, out, overwrite)
    done = {(r["scheme"], round(float(r["snr_db"]), 6)) for r in rows}
    meta = {"scenario": scenario.name, "source": scenario.source, "seed": scenario.seed,
            "quick": bool(scenario.data.get("quick_mode", False)), "versions": versions(),
            "git_commit": _git_commit(), "command": " ".join(sys.argv),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resumed_points": len(done), "schemes": []}

    store = store or default_store()
    _set_seed(scenario.seed)
    ds, x_train, x_test, image_shape, k, channel = _setup(scenario)
    meta.update(dataset=ds.name, image_shape=list(image_shape), channel_uses=k,
                bandwidth_ratio=k / float(np.prod(image_shape)), test_images=int(len(x_test)))
    img_metrics = image_metric_names(scenario.data["metrics"])
    batch = int(scenario.data["evaluation"]["batch_size"])
    n_examples = int(scenario.data["evaluation"]["example_images"])
    snrs = scenario.snr_db
    total = len(scenario.schemes) * len(snrs)
    bar = tqdm(total=total, disable=not progress, desc=scenario.name, unit="point", file=sys.stderr)
    bar.update(len(done))
    if n_examples:
        (out / "examples").mkdir(exist_ok=True)
        np.save(out / "examples" / "original.npy", x_test[:n_examples])

    for i in range(len(scenario.schemes)):
        scheme = _build_scheme(scenario, i)
        todo = [s for s in snrs if (scheme.label, round(float(s), 6)) not in done]
        if scheme.trainable:
            bar.set_postfix_str(f"{scheme.label}: loading or training the model")
        _prepare(scenario, i, scheme, _context(scenario, image_shape, k, x_train, channel, store, progress))
        meta["schemes"].append(scheme.describe())
        if not todo:
            continue
        bar.set_postfix_str(f"{scheme.label}: source coding")
        states = [scheme.encode(x_test[j:j + batch]) for j in range(0, len(x_test), batch)]
        for snr in todo:
            bar.set_postfix_str(f"{scheme.label} @ {snr:g} dB")
            t_point = time.time()
            _set_seed(_point_seed(scenario.seed, scheme.label, snr))
            agg = _Aggregate()
            first = None
            for j, state in enumerate(states):
                x = x_test[j * batch:(j + 1) * batch]
                res = scheme.evaluate(state, snr)
                agg.add(res.counts, {m: get_metric(m)(x, res.images) for m in img_metrics})
                if first is None:
                    first = res.images[:n_examples]
            rows.append(_row(scheme, snr, agg, image_shape, time.time() - t_point))
            _write_results(out, rows)
            if n_examples:
                np.save(out / "examples" / f"{slug(scheme.label)}__snr{snr:g}.npy", first)
            bar.update(1)
    bar.close()
    df = _write_results(out, rows) if rows else pd.DataFrame()
    meta["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta["wall_time_s"] = round(time.time() - t0, 2)
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    if plots and len(df):
        from linksim.plotting import draw_plots

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            draw_plots(out)
    return df
