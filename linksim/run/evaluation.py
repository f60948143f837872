"""The sweep: every (rate, scheme, SNR point) of a scenario, its results rows and their aggregation.

:func:`run_scenario` sets up (:mod:`linksim.run.setup`), opens the run directory
(:mod:`linksim.run.directory`), prepares the tasks the scenario's metrics name
(:data:`linksim.registry.TASKS`, :class:`linksim.tasks.base.Task`), then for each
point transmits the test images batch by batch, adds up the scheme's counts and the
per-image metrics (:class:`Aggregate`) and turns them into one results row
(:func:`make_row`).  It knows no task or metric by name.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from linksim import channel_sweep
from linksim.codecs import cache as source_cache
from linksim.run.directory import (REFERENCE, REFERENCE_TYPE, RunDirectory, default_run_dir, finish_meta,
                                   new_meta, row_snr_key, snr_key)
from linksim.run.setup import (build_scheme, build_tasks, load_setting, prepare_scheme, scheme_context, topology,
                               trains_per_chain)
from linksim.scenario import Scenario

__all__ = ["Aggregate", "make_row", "reference_row", "build_tasks", "run_scenario", "train_scenario"]


class Aggregate:
    """What one (scheme, SNR point) adds up over its batches.

    ``counts`` sums the scheme's counters (``images``, ``bits``, ``bit_errors``, ...);
    ``per_image`` collects per-image metric values by metric name; ``task_outputs``
    collects each task's per-image outputs by task name and output key.
    """

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.per_image: dict[str, list] = {}
        self.task_outputs: dict[str, dict[str, list]] = {}

    def add(self, counts: dict, metrics: dict, task_outputs: dict | None = None) -> None:
        """Add one batch: the scheme's ``counts``, per-image ``metrics``, ``{task: {key: array}}``."""
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        for k, v in metrics.items():
            self.per_image.setdefault(k, []).append(np.asarray(v))
        for task, outs in (task_outputs or {}).items():
            into = self.task_outputs.setdefault(task, {})
            for k, v in outs.items():
                into.setdefault(k, []).append(np.asarray(v))

    def outputs_of(self, task: str) -> dict[str, np.ndarray]:
        """A task's outputs over every batch, concatenated."""
        return {k: np.concatenate(v) for k, v in self.task_outputs.get(task, {}).items()}


def make_row(scheme, point_columns: dict, agg: Aggregate, image_shape, wall_s: float,
             tasks: dict | None = None, topology: dict | None = None, pilot_channel_uses: int = 0) -> dict:
    """The results row of one (scheme, SNR point).

    Columns, in order: ``scheme``, ``scheme_type``, the point's SNR columns, the topology
    (``hops``, ``relay``), the image metrics (mean over images, NaN when none is finite),
    the task metrics, ``bpp`` (NaN for analog schemes), ``channel_uses``,
    ``bandwidth_ratio``, ``used_channel_uses`` (and ``used_channel_uses_std`` when the scheme
    reports the spread), ``pilot_channel_uses`` (when the channel sends pilots), for digital schemes
    ``ber``, ``bler``,
    ``decode_failures``, ``bits``, ``blocks``; then ``images`` and ``wall_s``.

    Parameters
    ----------
    scheme : Scheme
        Gives ``label``, its class name and ``digital``.
    point_columns : dict
        :meth:`HopSNR.columns` of the point.
    agg : Aggregate
        The point's counts (at least ``images``, ``source_bits``, ``channel_uses``; digital
        schemes also ``bits``, ``bit_errors``, ``blocks``, ``block_errors``, ``decode_failures``).
    image_shape : tuple
        ``(H, W, C)``.
    wall_s : float
        Seconds the point took.
    tasks : dict, optional
        ``{name: Task}``; each summarises its outputs in ``agg``.
    topology : dict, optional
        ``{"hops", "relay"}`` columns.
    pilot_channel_uses : int
        Channel uses per image the channel's pilots add (:meth:`Channel.pilot_channel_uses`);
        the column is written when it is not 0.
    """
    from linksim.metrics import get_metric

    c = agg.counts
    n_img = c["images"]
    h, w, _ = image_shape
    row = {"scheme": scheme.label, "scheme_type": type(scheme).__name__, **point_columns, **(topology or {})}
    for name, vals in agg.per_image.items():
        vals = np.concatenate(vals)
        row[get_metric(name).column] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    for name, task in (tasks or {}).items():
        outputs = agg.outputs_of(name)
        n = len(next(iter(outputs.values()))) if outputs else 0
        row.update(task.summarise(outputs, np.arange(n)))
    row["bpp"] = c["source_bits"] / (n_img * h * w)  # NaN for analog schemes
    row["channel_uses"] = c["channel_uses"] / n_img
    row["bandwidth_ratio"] = row["channel_uses"] / float(np.prod(image_shape))
    row["used_channel_uses"] = c.get("used_channel_uses", c["channel_uses"]) / n_img
    if "used_channel_uses_sq" in c:  # a variable-length transmission: the spread over images
        row["used_channel_uses_std"] = float(np.sqrt(max(0.0, c["used_channel_uses_sq"] / n_img
                                                          - row["used_channel_uses"] ** 2)))
    if pilot_channel_uses:
        row["pilot_channel_uses"] = float(pilot_channel_uses)
    if scheme.digital:
        row["ber"] = c["bit_errors"] / max(1, c["bits"])
        row["bler"] = c["block_errors"] / max(1, c["blocks"])
        row["decode_failures"] = int(c["decode_failures"])
        row["bits"] = int(c["bits"])
        row["blocks"] = int(c["blocks"])
    row["images"] = int(n_img)
    row["wall_s"] = round(wall_s, 3)
    return row


def reference_row(tasks: dict, topology: dict, images: int) -> dict:
    """The reference row: every task's metrics on the original test images."""
    row = {"scheme": REFERENCE, "scheme_type": REFERENCE_TYPE, "snr_db": float("nan"), **topology}
    for task in tasks.values():
        row.update(task.reference_row())
    row["images"] = int(images)
    return row


def _task_meta(tasks: dict) -> dict:
    meta = {"tasks": {name: t.describe() for name, t in tasks.items()}} if tasks else {}
    for t in tasks.values():
        if t.meta_key:
            meta[t.meta_key] = t.describe()
    return meta


def _num_classes(y_train, y_test) -> int | None:
    from linksim.tasks.classification import num_classes_of

    return num_classes_of(y_train, y_test)


def train_scenario(scenario: Scenario, *, store=None, progress: bool = True) -> list[dict]:
    """Train (or find in the store) every model the scenario's schemes and tasks need.

    Output
    ------
    list of ``{"scheme": label, "stored_model": path}``, one per task and trainable scheme.
    """
    from linksim.store import default_store

    store = store or default_store()
    st = load_setting(scenario)
    ds, x_train, y_train, x_test, y_test = data = st.data
    image_shape, ks = st.image_shape, st.ks
    out = []
    for task in build_tasks(scenario, data, store, progress, True).values():
        out.append({"scheme": task.label, "stored_model": task.describe().get("stored_model")})
    num_classes = _num_classes(y_train, y_test)
    seen = set()
    with store.sharing_loaded_models():  # each chain loads the same stored models
        for chain in st.chains:  # a model trained through the scenario's chain differs per chain
            for k in ks:
                for i in range(len(scenario.schemes)):
                    scheme = build_scheme(scenario, i)
                    if not scheme.trainable:
                        continue
                    prepare_scheme(scenario, i, scheme, scheme_context(scenario, image_shape, k, x_train, chain.channel,
                                                                       store, progress, y_train=y_train,
                                                                       num_classes=num_classes))
                    if (scheme.label, k, str(scheme.entry.path)) in seen:
                        continue
                    seen.add((scheme.label, k, str(scheme.entry.path)))
                    where = ", ".join(filter(None, [f"k = {k}" if len(ks) > 1 else "",
                                                    chain.tag if trains_per_chain(scheme) else ""]))
                    out.append({"scheme": f"{scheme.label} ({where})" if where else scheme.label,
                                "stored_model": str(scheme.entry.path)})
    return out


def run_scenario(scenario: Scenario, out_dir: str | os.PathLike, *, overwrite: bool = False,
                 progress: bool = True, plots: bool = True, store=None,
                 train_missing: bool = True, workers: int = 0, executor: str = "local",
                 ray_address: str | None = None) -> pd.DataFrame:
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
    workers : int
        Worker processes on this machine (``executor="local"``); 0 (default) evaluates in this
        process. Any number of workers writes the same results (:mod:`linksim.run.points`,
        :mod:`linksim.run.parallel`); in-process evaluation uses TensorFlow's default threads,
        so its float32 results may differ from theirs in the last bits.
    executor : {"local", "ray"}
        ``ray``: the points run as Ray tasks (:class:`~linksim.run.parallel.RayExecutor`).
    ray_address : str, optional
        The Ray cluster's address (default: Ray's ``RAY_ADDRESS``, else a local cluster).

    Output
    ------
    pandas.DataFrame: the results table, rows in sweep order (rate, scheme, chain, SNR).

    Raises
    ------
    ScenarioError
        A field that only fails when used (scheme options, data-set files).
    RunError
        ``out_dir`` holds a different scenario, is a file, cannot be written, or is a
        folder linksim did not create (see :meth:`RunDirectory.open`); ``out_dir`` is
        ``runs/<scenario name>`` and the name would leave ``runs/`` (``..``, ``/``).
    """
    from tqdm.auto import tqdm

    from linksim.metrics import get_metric, image_metric_names
    from linksim.run import parallel
    from linksim.run.points import PointBook, WorkerState, build_sweep, jobs_for
    from linksim.store import default_store

    t0 = time.time()
    if os.fspath(out_dir) in (os.path.join("runs", scenario.name), os.path.join("runs", scenario.name + "_quick")):
        default_run_dir(scenario.name)  # the folder comes from the name: refuse one that leaves runs/
    if executor not in parallel.EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(parallel.EXECUTORS)} (got {executor!r})")
    run_dir = RunDirectory(out_dir)
    rows = run_dir.open(scenario.data, scenario.to_yaml(), overwrite)
    swept = channel_sweep.is_sweep(scenario.data["channel"])
    chain_cols = channel_sweep.variant_columns(scenario.data["channel"]) if swept else []
    done = {(r["scheme"], int(round(float(r["channel_uses"]))), row_snr_key(r),
             channel_sweep.row_variant_key(r, chain_cols))
            for r in rows if r["scheme"] != REFERENCE}
    meta = new_meta(scenario, len(done))

    store = store or default_store()
    st = load_setting(scenario)
    ds, x_train, y_train, x_test, y_test = data = st.data
    image_shape, ks, chains = st.image_shape, st.ks, st.chains
    topo = topology(chains[0].channel)
    n_src = float(np.prod(image_shape))
    meta.update(dataset=ds.name, image_shape=list(image_shape), channel_uses=ks[0] if len(ks) == 1 else ks,
                bandwidth_ratio=ks[0] / n_src if len(ks) == 1 else [k / n_src for k in ks],
                test_images=int(len(x_test)), channel=chains[0].channel.describe(), **topo)
    if swept:
        meta.update(chains=[{**c.columns, "channel": c.channel.describe()} for c in chains],
                    hops=sorted({c.columns["hops"] for c in chains}),
                    relay=sorted({topology(c.channel)["relay"].split("/")[0] for c in chains} - {"none"}) or "none")
    for m in image_metric_names(scenario.data["metrics"]):  # before any training: e.g. missing LPIPS weights
        get_metric(m).ensure_available()                   # fail now, with the fix
    tasks = build_tasks(scenario, data, store, progress, train_missing)
    meta.update(_task_meta(tasks))
    if tasks and not any(r["scheme"] == REFERENCE for r in rows):
        rows.append(reference_row(tasks, topo, len(x_test)))
        run_dir.write_results(rows)
    sweep = build_sweep(scenario, store, progress=progress, train_missing=train_missing, tasks=tasks, setting=st)
    n_examples = sweep.n_examples
    snrs = scenario.snr_db
    total = len(chains) * len(ks) * len(scenario.schemes) * len(snrs)
    bar = tqdm(total=total, disable=not progress, desc=scenario.name, unit="point", file=sys.stderr)
    bar.update(len(done))
    if n_examples:
        run_dir.write_original_examples(x_test[:n_examples])
    order = _row_order(scenario, ks, chains, chain_cols)

    prepared: dict = {}      # (i, k, c) -> the scheme this process prepared
    points: dict = {}        # (k index, i, c, snr key) -> (scheme, c, snr) of an outstanding point
    book = PointBook(sweep.num_batches)
    checks: dict = {}        # (k index, i, model) -> {batch: source-coding warning or None}
    cache_stats: dict = {}   # {process id: its source cache's counts}
    stack = contextlib.ExitStack()
    cache = stack.enter_context(source_cache.activated(source_cache.cache_dir_for_run(store, out_dir), export=True))
    try:  # worker processes take the cache folder from the environment the block sets
        runner = parallel.make_executor(executor, workers, WorkerState(sweep, lambda i, k, c: prepared[(i, k, c)]),
                                        lambda threads: parallel.worker_spec(scenario, store, threads), ray_address)
    except BaseException:
        stack.close()
        raise
    meta["executor"] = {"type": executor, "workers": runner.workers}

    def collect(finished) -> None:
        """Turn finished jobs into rows; then raise the first error a job raised."""
        new = False
        errors = [result for _, result in finished if isinstance(result, BaseException)]
        for job, result in finished:
            if isinstance(result, BaseException):
                continue
            for (c, key), outcome in result["outcomes"].items():
                parts = book.add((job.k_index, job.scheme, c, key), job.batch, outcome)
                if parts is None:
                    continue
                scheme, c, snr = points.pop((job.k_index, job.scheme, c, key))
                agg = Aggregate()
                for o in parts:
                    agg.add(o.counts, o.per_image, o.task_outputs)
                chain = chains[c]
                cols = chain.hop_snr.columns(snr)
                sent = agg.counts.get("used_channel_uses", agg.counts["channel_uses"]) / agg.counts["images"]
                rows.append(make_row(scheme, cols, agg, image_shape, sum(o.wall_s for o in parts), tasks,
                                     topology(chain.channel, chain.columns),
                                     pilot_channel_uses=chain.channel.pilot_channel_uses(int(round(sent)))))
                if n_examples and job.k_index == 0 and c == 0:  # the example grid shows the first rate and chain
                    run_dir.write_examples(scheme.label, cols, parts[0].first)
                bar.update(1)
                new = True
            for model, msg in result["source_checks"].items():  # warn once when no batch had an image that fits
                seen = checks.setdefault((job.k_index, job.scheme, model), {})
                seen[job.batch] = msg
                if len(seen) == sweep.num_batches and all(seen.values()):
                    warnings.warn(seen[0], stacklevel=2)
            for category, msg in result["warnings"]:
                warnings.warn(msg, category, stacklevel=2)
            if result.get("cache"):
                cache_stats[result["cache"][0]] = result["cache"][1]
        if new:
            rows.sort(key=order)
            run_dir.write_results(rows)
        if errors:
            raise errors[0]

    finished_ok = False
    try:
        with store.sharing_loaded_models():  # a channel sweep prepares each scheme once per chain
            for ki, k in enumerate(ks):
                for i in range(len(scenario.schemes)):
                    todo = {}
                    for c, chain in enumerate(chains):
                        scheme = build_scheme(scenario, i)
                        where = ", ".join([scheme.label] + ([f"k = {k}"] if len(ks) > 1 else [])
                                          + ([chain.tag] if swept else []))
                        if scheme.trainable:
                            bar.set_postfix_str(f"{where}: loading or training the model")
                        sweep.prepared(i, k, c, scheme)
                        if c == 0 or trains_per_chain(scheme):
                            meta["schemes"].append({**scheme.describe(), "channel_uses": k,
                                                    **({"chain": chain.tag} if swept else {})})
                        todo[c] = [s for s in snrs if (scheme.label, k, snr_key(s), chain.key) not in done]
                        prepared[(i, k, c)] = scheme
                        points.update({(ki, i, c, snr_key(s)): (scheme, c, s) for s in todo[c]})
                    bar.set_postfix_str(f"{scheme.label}" + (f", k = {k}" if len(ks) > 1 else "") + ": evaluating")
                    for job in jobs_for(sweep, ki, i, todo, runner.workers):
                        runner.submit(job)
                    collect(runner.completed())
                    if not runner.workers:  # in-process: its points are done, keep no models around
                        prepared.clear()
            while runner.pending():
                collect(runner.completed(wait=True))
        finished_ok = True
    finally:
        runner.close(cancel=not finished_ok)  # after an error: what is running finishes and is kept
        if not finished_ok:
            with contextlib.suppress(Exception):
                collect(runner.completed())
        stack.close()
    bar.close()
    meta["source_cache"] = _cache_meta(cache, cache_stats)
    df = run_dir.write_results(sorted(rows, key=order)) if rows else pd.DataFrame()
    run_dir.write_meta(finish_meta(meta, time.time() - t0))
    if plots and len(df):
        from linksim.plotting import draw_plots

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            draw_plots(Path(out_dir))
    return df


def _cache_meta(cache, per_process: dict) -> dict | None:
    """The run's source-cache facts for ``meta.json``: its folder and the counts summed over the processes."""
    if cache is None:
        return None
    own = cache.stats()
    totals = {k: v for k, v in own.items() if isinstance(v, (int, float))}
    for pid, counts in per_process.items():
        if pid == os.getpid() or not counts:
            continue
        for k, v in counts.items():
            if isinstance(v, (int, float)):
                totals[k] = totals.get(k, 0) + v
    return {"path": own.get("path"), **totals}


def _row_order(scenario: Scenario, ks: list, chains: list, chain_cols: list):
    """Sort key of results rows: the reference row first, then rate, scheme, chain and SNR point in the
    order of the scenario (the order a serial run computes them), whichever process finished first."""
    labels = {s.get("label"): i for i, s in enumerate(scenario.schemes)}
    k_pos = {int(k): n for n, k in enumerate(ks)}
    chain_pos = {c.key: n for n, c in enumerate(chains)}
    snr_pos = {snr_key(s): n for n, s in enumerate(scenario.snr_db)}

    def key(row: dict) -> tuple:
        if row["scheme"] == REFERENCE:
            return (0,)
        try:
            return (1, k_pos[int(round(float(row["channel_uses"])))], labels[row["scheme"]],
                    chain_pos[channel_sweep.row_variant_key(row, chain_cols)], snr_pos[row_snr_key(row)])
        except (KeyError, ValueError, TypeError):
            return (2,)

    return key
