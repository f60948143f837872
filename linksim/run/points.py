"""Evaluating SNR points: the unit of work a serial run, a worker process and a Ray task share.

A run's sweep is every (rate ``k``, scheme ``i``, chain ``c``, SNR point) of the scenario.
The work is cut into **jobs** (:class:`Job`): one rate, one scheme, one batch ``j`` of
the test images, and some of the chains and SNR points.  A job encodes its batch once
(source coding, the JSCC encoder), sends it at each of its points, computes the
per-image metrics and the tasks' per-image outputs (one task call for several points
at once: :meth:`linksim.tasks.base.Task.evaluate_results`) and returns them as
:class:`BatchOutcome` values.  The run adds a point's outcomes up over its batches, in
batch order, and writes its row when the last batch is in.

Every (point, batch) draws its random numbers from its own seed
(:func:`batch_seed`: the point's seed for batch 0, a derived one for later batches), so
a point's result does not depend on which process evaluated which batch, nor in which
order: a serial run, ``--workers N`` and a Ray cluster write the same ``results.csv``
(apart from the timing column ``wall_s``).

:class:`Sweep` holds what every job needs (data, chains, tasks, metrics), built once per
process; :class:`WorkerState` adds the schemes a worker prepared.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from linksim.run.setup import build_scheme, build_tasks, load_setting, point_seed, prepare_scheme, scheme_context, set_seed
from linksim.scenario import Scenario

__all__ = ["Job", "BatchOutcome", "Sweep", "WorkerState", "build_sweep", "batch_seed", "point_tag", "run_job",
           "TASK_GROUP_IMAGES"]

#: A job hands at most this many received images to a task in one call (points are grouped up to it).
TASK_GROUP_IMAGES = 2000


@dataclass(frozen=True)
class Job:
    """Batch ``batch`` of the test images, sent by scheme ``scheme`` at rate index ``k_index``.

    ``points`` is ``((chain index, (snr, ...)), ...)``: the chains and SNR points to evaluate.
    """

    k_index: int
    scheme: int
    batch: int
    points: tuple

    @property
    def num_points(self) -> int:
        return sum(len(snrs) for _, snrs in self.points)


@dataclass
class BatchOutcome:
    """What one batch adds to one point: the scheme's counts, the per-image metric values, the tasks'
    per-image outputs, the first images (batch 0 only, for the example grid) and the seconds it took."""

    counts: dict
    per_image: dict
    task_outputs: dict
    first: np.ndarray | None
    wall_s: float


@dataclass
class Sweep:
    """What every job of a run needs, built once per process (:func:`build_sweep`)."""

    scenario: Scenario
    setting: object
    store: object
    tasks: dict
    img_metrics: list
    batch_size: int
    n_examples: int
    num_classes: int | None
    progress: bool
    train_missing: bool
    swept: bool

    @property
    def ks(self) -> list:
        return self.setting.ks

    @property
    def chains(self) -> list:
        return self.setting.chains

    @property
    def x_test(self):
        return self.setting.data[3]

    @property
    def num_batches(self) -> int:
        return -(-len(self.x_test) // self.batch_size)

    def batch_images(self, j: int):
        return self.x_test[j * self.batch_size:(j + 1) * self.batch_size]

    def prepared(self, i: int, k: int, c: int, scheme=None):
        """Scheme ``i`` (``scheme``, already built, or built here) prepared for rate ``k`` and chain ``c``:
        loads or trains its model."""
        ds, x_train, y_train, _, _ = self.setting.data
        scheme = scheme if scheme is not None else build_scheme(self.scenario, i)
        prepare_scheme(self.scenario, i, scheme,
                       scheme_context(self.scenario, self.setting.image_shape, k, x_train, self.chains[c].channel,
                                      self.store, self.progress, self.train_missing, y_train, self.num_classes))
        return scheme


def build_sweep(scenario: Scenario, store, *, progress: bool, train_missing: bool, tasks: dict | None = None,
                setting=None) -> Sweep:
    """Load the scenario's setting and prepare its tasks (unless given): what the jobs share."""
    from linksim.channel_sweep import is_sweep
    from linksim.metrics import image_metric_names
    from linksim.tasks.classification import num_classes_of

    st = setting or load_setting(scenario)
    if tasks is None:
        tasks = build_tasks(scenario, st.data, store, progress, train_missing)
    ev = scenario.data["evaluation"]
    return Sweep(scenario=scenario, setting=st, store=store, tasks=tasks,
                 img_metrics=image_metric_names(scenario.data["metrics"]), batch_size=int(ev["batch_size"]),
                 n_examples=int(ev["example_images"]), num_classes=num_classes_of(st.data[2], st.data[4]),
                 progress=progress, train_missing=train_missing, swept=is_sweep(scenario.data["channel"]))


def point_tag(sweep: Sweep, label: str, k: int, c: int) -> str:
    """The seed tag of a (scheme, rate, chain): the label, ``|k<k>`` in a rate sweep, ``|<chain>`` in a
    channel sweep."""
    return label + (f"|k{k}" if len(sweep.ks) > 1 else "") + (f"|{sweep.chains[c].tag}" if sweep.swept else "")


def batch_seed(seed: int, tag: str, snr, batch: int) -> int:
    """The seed of one batch of one point: the point's seed (:func:`point_seed`) for batch 0, and for
    batch ``j`` the point's seed of the tag ``<tag>|b<j>``."""
    return point_seed(seed, tag if batch == 0 else f"{tag}|b{batch}", snr)


class WorkerState:
    """A process's :class:`Sweep` and the schemes it has prepared, reused by its later jobs.

    ``schemes`` may be given a function ``(i, k, c) -> scheme`` that returns schemes already
    prepared (the serial run passes its own); otherwise a worker prepares each once.
    """

    def __init__(self, sweep: Sweep, schemes=None):
        self.sweep = sweep
        self._given = schemes
        self._schemes: dict = {}

    def scheme(self, i: int, k: int, c: int):
        if self._given is not None:
            return self._given(i, k, c)
        key = (i, k, c)
        if key not in self._schemes:
            if len(self._schemes) >= 8:  # keep memory bounded on a long sweep: drop the oldest
                self._schemes.pop(next(iter(self._schemes)))
            self._schemes[key] = self.sweep.prepared(i, k, c)
        return self._schemes[key]


def run_job(state: WorkerState, job: Job) -> dict:
    """Evaluate ``job``; the scheme's transmissions of the batch are encoded once for all its chains.

    Output
    ------
    dict with ``outcomes``: ``{(chain index, snr key): BatchOutcome}``; ``warnings``: the
    ``(category, message)`` of the warnings raised, for the run to show; ``source_checks``:
    ``{model: message or None}``, the scheme's source-coding check of this batch
    (``check_source_coding``: a message when no image of the batch fits its budget).
    """
    from linksim.metrics import get_metric
    from linksim.run.directory import snr_key

    sweep = state.sweep
    k = sweep.ks[job.k_index]
    x = sweep.batch_images(job.batch)
    idx = np.arange(job.batch * sweep.batch_size, job.batch * sweep.batch_size + len(x))
    encoded: dict = {}
    checks: dict = {}
    pending: list = []      # (key, result, outcome) whose task outputs are still to compute
    received: dict = {}     # digest of a point's received batch -> its outcome (see _received_digest)
    copies: list = []       # (key, outcome, the earlier outcome it takes its values from)
    outcomes: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for c, snrs in job.points:
            scheme = state.scheme(job.scheme, k, c)
            entry = getattr(scheme, "entry", None)
            enc_key = str(entry.path) if entry is not None else None
            if enc_key not in encoded:
                t = time.time()
                encoded[enc_key] = (scheme.encode(x), time.time() - t)
                check = getattr(scheme, "check_source_coding", None)  # e.g. a separation codec that never fits
                if check is not None:
                    with warnings.catch_warnings():  # the run warns once, when no batch fits (see run_scenario)
                        warnings.simplefilter("ignore")
                        checks[enc_key] = check([encoded[enc_key][0]])
            states, enc_s = encoded[enc_key]
            tag = point_tag(sweep, scheme.label, k, c)
            hop_snr = sweep.chains[c].hop_snr
            for snr in snrs:
                t = time.time()
                set_seed(batch_seed(sweep.scenario.seed, tag, snr, job.batch))
                res = scheme.evaluate(states, hop_snr.per_hop(snr))
                first = res.images[:sweep.n_examples] if job.batch == 0 and sweep.n_examples else None
                digest = _received_digest(res)
                source = received.get(digest)
                if source is not None:      # the same received batch as an earlier point: its values, exactly
                    out = BatchOutcome(dict(res.counts), dict(source.per_image), {}, first, 0.0)
                    copies.append(((c, snr_key(snr)), out, source))
                else:
                    per_image = {m: np.asarray(get_metric(m)(x, res.images)) for m in sweep.img_metrics}
                    out = BatchOutcome(dict(res.counts), per_image, {}, first, 0.0)
                    received[digest] = out
                    pending.append(((c, snr_key(snr)), res, out))
                out.wall_s = time.time() - t + enc_s / len(snrs)
                if sum(len(p[1].images) for p in pending) >= TASK_GROUP_IMAGES:
                    _task_outputs(sweep, pending, idx, outcomes)
        _task_outputs(sweep, pending, idx, outcomes)
        for key, out, source in copies:
            out.task_outputs = {name: dict(o) for name, o in source.task_outputs.items()}
            outcomes[key] = out
    seen = []
    for w in caught:
        if (w.category, str(w.message)) not in seen:
            seen.append((w.category, str(w.message)))
    from linksim.codecs import cache as source_cache

    return {"outcomes": outcomes, "warnings": seen, "source_checks": checks,
            "cache": (os.getpid(), source_cache.stats())}


def _received_digest(res) -> tuple:
    """A digest of what the metrics and tasks read of one point's batch: the received images and the
    per-image ``outputs``.

    Points of one job share the transmitted batch, and a separation scheme often receives exactly the
    same images at several SNR points: every block decoded above the LDPC cliff, every block lost (the
    codec's fallback image) below it (the main job: 3 distinct batches in 11 points per scheme).  Such a
    point takes the per-image metric values and task outputs of the first point that received them
    instead of computing them again: the same values, since the metrics see the same whole batch.
    """
    from linksim.store import array_digest

    return tuple((name, array_digest(a)) for name, a in [("images", res.images)] + sorted(res.outputs.items()))


def _task_outputs(sweep: Sweep, pending: list, idx, outcomes: dict) -> None:
    """Give each task the received images of every pending point in one call; move them to ``outcomes``."""
    if not pending:
        return
    t = time.time()
    for name, task in sweep.tasks.items():
        outs = task.evaluate_results([p[1] for p in pending], [idx] * len(pending))
        for (key, _, out), o in zip(pending, outs):
            out.task_outputs[name] = {kk: np.asarray(v) for kk, v in o.items()}
    share = (time.time() - t) / len(pending)
    for key, _, out in pending:
        out.wall_s += share
        outcomes[key] = out
    pending.clear()


def jobs_for(sweep: Sweep, k_index: int, i: int, todo: dict, workers: int) -> list[Job]:
    """The jobs of scheme ``i`` at rate index ``k_index``: ``todo`` is ``{chain index: [snr, ...]}``.

    One job per batch of test images with every chain and SNR point; when there are fewer
    batches than ``workers``, each batch's points are split further so every worker gets work:
    by whole chains when there are at least as many chains as parts (a worker prepares the
    scheme for its chains only: the model, the compiled channel), else point by point.
    """
    points = [(c, tuple(snrs)) for c, snrs in todo.items() if snrs]
    if not points:
        return []
    nb = sweep.num_batches
    splits = max(1, min(-(-max(1, workers) // nb), sum(len(s) for _, s in points)))
    if splits > 1 and len(points) >= splits:
        parts: list = [[] for _ in range(splits)]
        sizes = [0] * splits
        for c, snrs in sorted(points, key=lambda p: -len(p[1])):      # largest chains first, to the lightest part
            n = sizes.index(min(sizes))
            parts[n].append((c, snrs))
            sizes[n] += len(snrs)
        groups = [tuple(sorted(part)) for part in parts]
    else:
        flat = [(c, s) for c, snrs in points for s in snrs]
        groups = []
        for part in range(splits):
            grouped: dict = {}
            for c, s in flat[part::splits]:
                grouped.setdefault(c, []).append(s)
            groups.append(tuple((c, tuple(v)) for c, v in grouped.items()))
    return [Job(k_index, i, j, g) for j in range(nb) for g in groups]


@dataclass
class PointBook:
    """The run's ledger of outstanding points: each point's batch outcomes until the last arrives."""

    num_batches: int
    outcomes: dict = field(default_factory=dict)

    def add(self, key: tuple, batch: int, outcome: BatchOutcome) -> list[BatchOutcome] | None:
        """Record one batch of point ``key``; return its outcomes in batch order once all are in."""
        got = self.outcomes.setdefault(key, {})
        got[batch] = outcome
        if len(got) < self.num_batches:
            return None
        del self.outcomes[key]
        return [got[j] for j in range(self.num_batches)]

