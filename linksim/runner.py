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
from linksim.scenario import Scenario

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
    """Complex channel uses per image from the scenario's ``rate`` field (its first value).

    ``bandwidth_ratio`` is k/n with n = H * W * C source values; k is rounded to
    the nearest integer (at least 1).
    """
    return channel_uses_list(rate, image_shape)[0]


def channel_uses_list(rate: dict, image_shape) -> list[int]:
    """Every rate point of the scenario's ``rate`` field as channel uses per image.

    ``channel_uses`` and ``bandwidth_ratio`` take one value or a list (a rate sweep).
    """
    n = int(np.prod(image_shape))
    if "channel_uses" in rate:
        vals = rate["channel_uses"] if isinstance(rate["channel_uses"], list) else [rate["channel_uses"]]
        return [int(v) for v in vals]
    vals = rate["bandwidth_ratio"] if isinstance(rate["bandwidth_ratio"], list) else [rate["bandwidth_ratio"]]
    return [max(1, int(round(float(v) * n))) for v in vals]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "scheme"


def _point_seed(seed: int, label: str, snr_db) -> int:
    """A seed per (scheme, SNR point), so a resumed point equals a fresh one."""
    return (seed * 1_000_003 + zlib.crc32(f"{label}|{_snr_key(snr_db)}".encode())) % (2**31 - 1)


def _snr_key(snr_db) -> str:
    """A grid point as text: ``"10.000000"``, or per hop ``"10.000000/20.000000"``."""
    if isinstance(snr_db, (list, tuple)):
        return "/".join(f"{float(v):.6f}" for v in snr_db)
    return f"{float(snr_db):.6f}"


def _row_snr_key(row: dict) -> str:
    hop = row.get("hop_snr_db")
    if isinstance(hop, str) and hop and row.get("snr_explicit_per_hop"):
        return _snr_key([float(v) for v in hop.split("/")])
    return _snr_key(row["snr_db"])


class HopSNR:
    """The per-hop SNRs of a grid point (scenario ``snr_db`` and ``channel.hop_snr_db``).

    Forms
    -----
    - one swept value for every hop (the default): ``snr_db: [0, 5, 10]``;
    - a sweep on some hops with the others fixed: ``channel: {hop_snr_db: [sweep, 20]}``
      (``sweep`` takes the grid's value, a number is fixed);
    - an explicit list per hop at every grid point: ``snr_db: [[5, 20], [10, 20]]``.
    """

    def __init__(self, hops: int, hop_snr_db: list | None):
        self.hops = int(hops)
        self.template = hop_snr_db

    def per_hop(self, point) -> list[float] | float:
        if isinstance(point, (list, tuple)):
            return [float(v) for v in point]
        if self.template is None:
            return float(point)
        return [float(point) if v == "sweep" else float(v) for v in self.template]

    def columns(self, point) -> dict:
        """``snr_db`` (the swept value; for an explicit list, the lowest hop SNR), ``hop_snr_db``, flags."""
        per = self.per_hop(point)
        if isinstance(per, float):
            per = [per] * self.hops
        explicit = isinstance(point, (list, tuple))
        return {"snr_db": float(min(per)) if explicit else float(point),
                "hop_snr_db": "/".join(f"{v:g}" for v in per), "snr_explicit_per_hop": explicit}


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


def _row(scheme, point_columns: dict, agg: _Aggregate, image_shape, wall_s: float, task=None,
         topology: dict | None = None) -> dict:
    from linksim.metrics import get_metric

    c = agg.counts
    n_img = c["images"]
    h, w, _ = image_shape
    row = {"scheme": scheme.label, "scheme_type": type(scheme).__name__, **point_columns, **(topology or {})}
    for name, vals in agg.per_image.items():
        if name.startswith("_"):
            continue
        vals = np.concatenate(vals)
        row[get_metric(name).column] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    if task is not None:
        row.update(task.scores(np.concatenate(agg.per_image["_pred"])))
    row["bpp"] = c["source_bits"] / (n_img * h * w)  # NaN for analog schemes
    row["channel_uses"] = c["channel_uses"] / n_img
    row["bandwidth_ratio"] = row["channel_uses"] / float(np.prod(image_shape))
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


REFERENCE = "reference (original images)"


def _topology(channel) -> dict:
    """``hops`` and ``relay`` columns of the results table."""
    hops = int(getattr(channel, "hops", 1))
    names = getattr(channel, "relay_names", [])
    return {"hops": hops, "relay": "/".join(names) if names else "none"}


class _Task:
    """The downstream classifier of a scenario with task metrics (accuracy, f1).

    Trained on the scenario's original training images (or loaded from the model
    store, like the JSCC models) and applied to every batch of received images.
    """

    def __init__(self, scenario, ds, x_train, y_train, x_test, y_test, store, progress, train_missing):
        from linksim.tasks import load_or_train_classifier

        if y_train is None or y_test is None:
            raise scenario.error(("metrics",), f"accuracy and f1 need a labelled data set; "
                                               f"'{ds.name}' has no labels")
        spec = scenario.data["dataset"]
        dataset_spec = {"name": spec["name"], "params": spec.get("params", {}),
                        "train_size": spec.get("train_size")}
        self.num_classes = _num_classes(y_train, y_test)
        cfg = scenario.data.get("task", {}).get("classifier")
        try:
            self.model, self.entry = load_or_train_classifier(
                store, dataset_spec=dataset_spec, image_shape=tuple(x_test.shape[1:]),
                num_classes=self.num_classes, x_train=x_train, y_train=y_train, seed=scenario.seed,
                config=cfg, progress=progress, train_missing=train_missing)
        except ValueError as exc:
            raise scenario.error(("metrics",), str(exc)) from None
        self.y_test = np.asarray(y_test)
        self.x_test = x_test

    def describe(self) -> dict:
        return {"stored_model": str(self.entry.path) if self.entry is not None else None,
                "num_classes": self.num_classes}

    def predict(self, images) -> np.ndarray:
        from linksim.tasks import predict_labels

        return predict_labels(self.model, images)

    def scores(self, pred: np.ndarray) -> dict:
        from linksim.tasks import accuracy, macro_f1

        y = self.y_test[:len(pred)]
        return {"accuracy": float(accuracy(y, pred)), "f1": float(macro_f1(y, pred, self.num_classes))}

    def reference_row(self, topology: dict) -> dict:
        """The classifier on the original test images: the ceiling of every scheme's accuracy."""
        row = {"scheme": REFERENCE, "scheme_type": "Reference", "snr_db": float("nan"), **topology}
        row.update(self.scores(self.predict(self.x_test)))
        row["images"] = int(len(self.x_test))
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


def _num_classes(y_train, y_test) -> int | None:
    """Classes of a labelled data set (the largest label in either split, plus one)."""
    if y_train is None or y_test is None:
        return None
    return int(max(int(np.max(y_train)), int(np.max(y_test))) + 1)


def _context(scenario: Scenario, image_shape, k: int, x_train, channel, store, progress: bool,
             train_missing: bool = True, y_train=None, num_classes: int | None = None):
    """What a scheme may use to prepare itself; ``extra["train_labels"]`` holds the training labels."""
    from linksim.schemes.base import SchemeContext

    ds = scenario.data["dataset"]
    dataset_spec = {"name": ds["name"], "params": ds.get("params", {}), "train_size": ds.get("train_size")}
    return SchemeContext(image_shape=image_shape, channel_uses=k, train_images=x_train, channel=channel,
                         seed=scenario.seed, dataset_spec=dataset_spec, store=store, progress=progress,
                         train_missing=train_missing, extra={"train_labels": y_train,
                                                             "task": scenario.data.get("task", {}),
                                                             "num_classes": num_classes})


def _prepare(scenario: Scenario, index: int, scheme, ctx) -> None:
    try:
        scheme.prepare(ctx)
    except ValueError as exc:
        raise scenario.error(("schemes", index), str(exc)) from None


def make_channel(scenario: Scenario):
    """The scenario's channel layer and its :class:`HopSNR` (``hop_snr_db`` is not a layer option)."""
    ch_spec = dict(scenario.data["channel"])
    hop_template = ch_spec.pop("hop_snr_db", None)
    try:
        channel = CHANNELS.create(ch_spec.pop("type"), **ch_spec)
    except (TypeError, ValueError) as exc:
        raise scenario.error(("channel",), str(exc)) from None
    return channel, HopSNR(getattr(channel, "hops", 1), hop_template)


def _setup(scenario: Scenario):
    """Data, image shape, channel uses and channel of a scenario."""
    ds, x_train, y_train, x_test, y_test = _load_data(scenario)
    image_shape = tuple(int(s) for s in x_test.shape[1:])
    ks = channel_uses_list(scenario.data["rate"], image_shape)
    channel, hop_snr = make_channel(scenario)
    return ds, x_train, y_train, x_test, y_test, image_shape, ks, channel, hop_snr


def train_scenario(scenario: Scenario, *, store=None, progress: bool = True) -> list[dict]:
    """Train (or find in the store) every model the scenario's schemes need.

    Output
    ------
    list of ``{"scheme": label, "stored_model": path}``, one per trainable scheme.
    """
    from linksim.metrics import task_metric_names
    from linksim.store import default_store

    store = store or default_store()
    _set_seed(scenario.seed)
    ds, x_train, y_train, x_test, y_test, image_shape, ks, channel, _ = _setup(scenario)
    out = []
    if task_metric_names(scenario.data["metrics"]):
        task = _Task(scenario, ds, x_train, y_train, x_test, y_test, store, progress, True)
        out.append({"scheme": "downstream classifier", "stored_model": task.describe()["stored_model"]})
    num_classes = _num_classes(y_train, y_test)
    for k in ks:
        for i in range(len(scenario.schemes)):
            scheme = _build_scheme(scenario, i)
            if not scheme.trainable:
                continue
            _prepare(scenario, i, scheme, _context(scenario, image_shape, k, x_train, channel, store, progress,
                                                   y_train=y_train, num_classes=num_classes))
            out.append({"scheme": scheme.label if len(ks) == 1 else f"{scheme.label} (k = {k})",
                        "stored_model": str(scheme.entry.path)})
    return out


def run_scenario(scenario: Scenario, out_dir: str | os.PathLike, *, overwrite: bool = False,
                 progress: bool = True, plots: bool = True, store=None,
                 train_missing: bool = True) -> pd.DataFrame:
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
    train_missing : bool
        Train a model the store lacks (default); False makes a missing model an error.

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

    from linksim.metrics import get_metric, image_metric_names, task_metric_names
    from linksim.store import default_store

    t0 = time.time()
    out = Path(out_dir)
    rows = _prepare_out_dir(scenario, out, overwrite)
    done = {(r["scheme"], int(round(float(r["channel_uses"]))), _row_snr_key(r))
            for r in rows if r["scheme"] != REFERENCE}
    meta = {"scenario": scenario.name, "source": scenario.source, "seed": scenario.seed,
            "quick": bool(scenario.data.get("quick_mode", False)), "versions": versions(),
            "git_commit": _git_commit(), "command": " ".join(sys.argv),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resumed_points": len(done), "schemes": []}

    store = store or default_store()
    _set_seed(scenario.seed)
    ds, x_train, y_train, x_test, y_test, image_shape, ks, channel, hop_snr = _setup(scenario)
    topology = _topology(channel)
    n_src = float(np.prod(image_shape))
    meta.update(dataset=ds.name, image_shape=list(image_shape), channel_uses=ks[0] if len(ks) == 1 else ks,
                bandwidth_ratio=ks[0] / n_src if len(ks) == 1 else [k / n_src for k in ks],
                test_images=int(len(x_test)), **topology)
    img_metrics = image_metric_names(scenario.data["metrics"])
    task = None
    if task_metric_names(scenario.data["metrics"]):
        if progress:
            print(f"{scenario.name}: loading or training the downstream classifier", file=sys.stderr)
        task = _Task(scenario, ds, x_train, y_train, x_test, y_test, store, progress, train_missing)
        meta["classifier"] = task.describe()
        if not any(r["scheme"] == REFERENCE for r in rows):
            rows.append(task.reference_row(topology))
            _write_results(out, rows)
    batch = int(scenario.data["evaluation"]["batch_size"])
    n_examples = int(scenario.data["evaluation"]["example_images"])
    snrs = scenario.snr_db
    total = len(ks) * len(scenario.schemes) * len(snrs)
    bar = tqdm(total=total, disable=not progress, desc=scenario.name, unit="point", file=sys.stderr)
    bar.update(len(done))
    if n_examples:
        (out / "examples").mkdir(exist_ok=True)
        np.save(out / "examples" / "original.npy", x_test[:n_examples])

    for k, i in ((k, i) for k in ks for i in range(len(scenario.schemes))):
        scheme = _build_scheme(scenario, i)
        todo = [s for s in snrs if (scheme.label, k, _snr_key(s)) not in done]
        where = scheme.label if len(ks) == 1 else f"{scheme.label}, k = {k}"
        if scheme.trainable:
            bar.set_postfix_str(f"{where}: loading or training the model")
        _prepare(scenario, i, scheme, _context(scenario, image_shape, k, x_train, channel, store, progress,
                                               train_missing, y_train, _num_classes(y_train, y_test)))
        meta["schemes"].append({**scheme.describe(), "channel_uses": k})
        if not todo:
            continue
        bar.set_postfix_str(f"{where}: source coding")
        states = [scheme.encode(x_test[j:j + batch]) for j in range(0, len(x_test), batch)]
        for snr in todo:
            cols = hop_snr.columns(snr)
            bar.set_postfix_str(f"{where} @ {cols['hop_snr_db']} dB")
            t_point = time.time()
            # one rate: the seed of (scheme, SNR); a rate sweep adds k
            _set_seed(_point_seed(scenario.seed, scheme.label if len(ks) == 1 else f"{scheme.label}|k{k}", snr))
            agg = _Aggregate()
            first = None
            for j, state in enumerate(states):
                x = x_test[j * batch:(j + 1) * batch]
                res = scheme.evaluate(state, hop_snr.per_hop(snr))
                per_image = {m: get_metric(m)(x, res.images) for m in img_metrics}
                if task is not None:
                    per_image["_pred"] = task.predict(res.images)
                agg.add(res.counts, per_image)
                if first is None:
                    first = res.images[:n_examples]
            rows.append(_row(scheme, cols, agg, image_shape, time.time() - t_point, task, topology))
            _write_results(out, rows)
            if n_examples and k == ks[0]:  # the example grid shows the first rate
                tag = f"{cols['snr_db']:g}" if not cols["snr_explicit_per_hop"] else cols["hop_snr_db"].replace("/", "_")
                np.save(out / "examples" / f"{slug(scheme.label)}__snr{tag}.npy", first)
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
