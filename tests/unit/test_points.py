"""The pieces of a parallel sweep: how a scheme's points become jobs, per-(point, batch) seeds,
the ledger that completes a point, row order, tasks over several points, executor settings."""

from types import SimpleNamespace

import numpy as np
import pytest

from linksim.run import parallel
from linksim.run.points import BatchOutcome, Job, PointBook, batch_seed, jobs_for
from linksim.run.setup import point_seed
from linksim.schemes.base import BatchResult
from linksim.tasks.base import Task


def _sweep(images: int, batch: int):
    return SimpleNamespace(num_batches=-(-images // batch))


def _points(jobs):
    return sorted((j.batch, c, s) for j in jobs for c, snrs in j.points for s in snrs)


@pytest.mark.parametrize("images,batch,workers", [(500, 250, 2), (60, 25, 2), (24, 250, 1), (24, 250, 2),
                                                  (24, 250, 5), (1000, 100, 8)])
def test_every_point_of_every_batch_is_in_exactly_one_job(images, batch, workers):
    sweep = _sweep(images, batch)
    todo = {0: [0.0, 5.0, 10.0], 1: [0.0, 20.0]}
    jobs = jobs_for(sweep, 0, 3, todo, workers)
    want = sorted((j, c, s) for j in range(sweep.num_batches) for c, snrs in todo.items() for s in snrs)
    assert _points(jobs) == want
    assert all(j.scheme == 3 and j.k_index == 0 for j in jobs)
    assert len(jobs) >= min(workers, 5 * sweep.num_batches)  # enough jobs to keep every worker busy


def test_one_job_per_batch_when_batches_outnumber_workers():
    jobs = jobs_for(_sweep(500, 250), 1, 0, {0: [0.0, 10.0]}, 2)
    assert [(j.batch, j.points) for j in jobs] == [(0, ((0, (0.0, 10.0)),)), (1, ((0, (0.0, 10.0)),))]


def test_a_batch_is_split_by_whole_chains_when_there_are_enough_of_them():
    # one batch, two workers, 13 chains (dhd_multihop_qf): each chain's points stay in one job, so a
    # worker prepares the scheme for its chains only; the parts are balanced by points
    todo = {c: [0.0, 5.0, 10.0] if c % 3 else [0.0, 5.0, 10.0, 15.0, 20.0] for c in range(13)}
    jobs = jobs_for(_sweep(200, 250), 0, 2, todo, 2)
    assert len(jobs) == 2
    chains = [[c for c, _ in j.points] for j in jobs]
    assert sorted(sum(chains, [])) == list(range(13))
    assert all(dict(j.points)[c] == tuple(todo[c]) for j in jobs for c, _ in j.points)
    sizes = sorted(j.num_points for j in jobs)
    assert sizes[1] - sizes[0] <= 5
    # fewer chains than parts: split point by point
    few = jobs_for(_sweep(200, 250), 0, 2, {0: [0.0, 5.0, 10.0, 15.0]}, 2)
    assert [j.points for j in few] == [((0, (0.0, 10.0)),), ((0, (5.0, 15.0)),)]


def test_no_jobs_when_nothing_is_left_to_do():
    assert jobs_for(_sweep(500, 250), 0, 0, {0: [], 1: []}, 2) == []


def test_batch_zero_keeps_the_point_seed_and_later_batches_get_their_own():
    assert batch_seed(1234, "JPEG", 10.0, 0) == point_seed(1234, "JPEG", 10.0)
    seeds = {batch_seed(1234, "JPEG", 10.0, j) for j in range(50)}
    assert len(seeds) == 50  # distinct per batch
    assert batch_seed(1234, "JPEG", 10.0, 3) == batch_seed(1234, "JPEG", 10.0, 3)
    assert batch_seed(1234, "JPEG", 10.0, 3) != batch_seed(1234, "WebP", 10.0, 3)


def _outcome(n):
    return BatchOutcome({"images": n}, {"psnr": np.full(n, float(n))}, {}, None, 0.1)


def test_a_point_completes_with_its_batches_in_order_whatever_order_they_arrive():
    book = PointBook(3)
    key = (0, 1, 0, "10")
    assert book.add(key, 2, _outcome(3)) is None
    assert book.add(key, 0, _outcome(1)) is None
    parts = book.add(key, 1, _outcome(2))
    assert [p.counts["images"] for p in parts] == [1, 2, 3]
    assert key not in book.outcomes


class _Doubles(Task):
    """Per-image output: twice the image mean, and the index (to see the split is right)."""

    calls = 0

    def evaluate(self, images, indices):
        _Doubles.calls += 1
        return {"v": 2 * np.asarray(images).reshape(len(images), -1).mean(axis=1), "i": np.asarray(indices)}


def test_a_task_evaluates_several_results_in_one_call_with_the_same_outputs():
    rng = np.random.default_rng(0)
    results = [BatchResult(rng.random((n, 4, 4, 1)).astype(np.float32), {}) for n in (3, 5, 2)]
    idx = [np.arange(10, 13), np.arange(10, 15), np.arange(10, 12)]
    task = _Doubles()
    _Doubles.calls = 0
    together = task.evaluate_results(results, idx)
    assert _Doubles.calls == 1
    one_by_one = [task.evaluate_result(r, i) for r, i in zip(results, idx)]
    for a, b in zip(together, one_by_one):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_a_task_that_reads_more_than_images_is_called_per_result():
    class Own(_Doubles):
        def evaluate_result(self, result, indices):
            return {"n": np.full(len(indices), result.outputs["n"])}

    results = [BatchResult(np.zeros((2, 1, 1, 1)), {}, {"n": 7}), BatchResult(np.zeros((3, 1, 1, 1)), {}, {"n": 9})]
    out = Own().evaluate_results(results, [np.arange(2), np.arange(3)])
    assert [list(o["n"]) for o in out] == [[7, 7], [9, 9, 9]]


def test_worker_threads_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("LINKSIM_WORKER_THREADS", raising=False)
    assert parallel.worker_threads() == 1
    monkeypatch.setenv("LINKSIM_WORKER_THREADS", "3")
    assert parallel.worker_threads() == 3
    for bad in ("0", "x", "-1"):
        monkeypatch.setenv("LINKSIM_WORKER_THREADS", bad)
        with pytest.raises(parallel.WorkerUserError, match="LINKSIM_WORKER_THREADS must be a positive integer"):
            parallel.worker_threads()


def test_default_workers_is_at_least_one_and_at_most_the_cores(monkeypatch):
    monkeypatch.delenv("LINKSIM_WORKER_THREADS", raising=False)
    n = parallel.default_workers()
    assert 1 <= n <= parallel.usable_cores()
    monkeypatch.setattr(parallel, "_available_memory", lambda: parallel.WORKER_MEMORY)  # room for one
    assert parallel.default_workers() == 1


def test_workers_that_fill_the_cores_keep_to_their_own(monkeypatch):
    monkeypatch.delenv("LINKSIM_PIN_WORKERS", raising=False)
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {2, 3, 5, 7})
    assert parallel.worker_cores(4, 1) == [{2}, {3}, {5}, {7}]
    assert parallel.worker_cores(2, 2) == [{2, 3}, {5, 7}]
    assert parallel.worker_cores(2, 1) is None     # cores to spare: the workers' helper threads may use them
    assert parallel.worker_cores(3, 2) is None     # more threads than cores: the system places them
    assert parallel.worker_cores(5, 1) is None
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1})
    assert parallel.worker_cores(2, 1) == [{0}, {1}]
    assert parallel.worker_cores(1, 1) is None     # one worker: its helper threads may use the free core
    assert parallel.worker_cores(1, 2) is None
    for off in ("0", "off", "OFF", "false", "no"):
        monkeypatch.setenv("LINKSIM_PIN_WORKERS", off)
        assert parallel.worker_cores(2, 1) is None
    monkeypatch.setenv("LINKSIM_PIN_WORKERS", "1")
    assert parallel.worker_cores(2, 1) == [{0}, {1}]


@pytest.mark.skipif(not hasattr(parallel.os, "sched_getaffinity") or parallel.usable_cores() < 2,
                    reason="needs two cores and CPU affinity (Linux)")
def test_a_pool_that_fills_the_cores_gives_each_worker_its_own(monkeypatch):
    import time

    monkeypatch.delenv("LINKSIM_PIN_WORKERS", raising=False)
    cores = sorted(parallel.os.sched_getaffinity(0))[:2]
    monkeypatch.setattr(parallel, "worker_cores", lambda w, t: [{cores[0]}, {cores[1]}])
    pool = parallel.start_pool(2, 1)
    try:
        futures = [pool.submit(time.sleep, 0.5) for _ in range(2)]  # two at once: both processes start
        for f in futures:
            f.result(timeout=120)
        pids = list(pool._processes)
        assert len(pids) == 2
        assert sorted(tuple(parallel.os.sched_getaffinity(p)) for p in pids) == [(cores[0],), (cores[1],)]
    finally:
        pool.shutdown()


def test_an_error_that_does_not_pickle_travels_as_its_text():
    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}/{b}")

    out = parallel._portable(Odd(1, 2))
    assert isinstance(out, parallel.WorkerError) and str(out) == "Odd: 1/2"
    ok = ValueError("plain")
    assert parallel._portable(ok) is ok


def test_scenario_errors_survive_pickling_with_their_message():
    import pickle

    from linksim.scenario import ScenarioError

    e = ScenarioError("bad value", file="f.yaml", line=3, field="schemes[0]")
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) and back.field == "schemes[0]" and back.line == 3


def test_an_address_where_nothing_listens_is_reported_at_once():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert parallel._unreachable(f"127.0.0.1:{port}", timeout=2.0)
    assert parallel._unreachable("auto") is None and parallel._unreachable("ray://x:1") is None
    assert "not a number" in parallel._unreachable("127.0.0.1:http")


def test_a_job_counts_its_points():
    assert Job(0, 1, 2, ((0, (0.0, 5.0)), (1, (10.0,)))).num_points == 3


class _Lossy:
    """A scheme whose received batch is the same at several SNRs: all lost (zeros) below 10 dB, the
    images themselves from 10 dB on, and at 20 dB the images with a per-image output besides."""

    label, entry = "lossy", None

    def encode(self, x):
        return x

    def evaluate(self, states, snr):
        snr = float(np.ravel(snr)[0])
        images = np.zeros_like(states) if snr < 10 else states.copy()
        outputs = {"flag": np.ones(len(states))} if snr == 20 else {}
        return BatchResult(images, {"images": len(states)}, outputs)


def test_points_receiving_the_same_batch_share_its_metric_values_and_task_outputs(monkeypatch):
    import linksim.metrics as metrics
    from linksim.run.points import WorkerState, run_job

    seen = []
    psnr = metrics.get_metric("psnr")

    class Counted:
        def __call__(self, x, x_hat):
            seen.append(len(x_hat))
            return psnr(x, x_hat)

    monkeypatch.setattr(metrics, "get_metric", lambda name: Counted())
    rng = np.random.default_rng(1)
    x = rng.random((6, 4, 4, 1)).astype(np.float32)
    chain = SimpleNamespace(hop_snr=SimpleNamespace(per_hop=lambda snr: [snr]), tag="awgn")
    sweep = SimpleNamespace(ks=[16], batch_images=lambda j: x, batch_size=6, chains=[chain], img_metrics=["psnr"],
                            n_examples=0, tasks={"t": _Doubles()}, scenario=SimpleNamespace(seed=3), swept=False)
    _Doubles.calls = 0
    snrs = (0.0, 5.0, 10.0, 15.0, 20.0)
    out = run_job(WorkerState(sweep, schemes=lambda i, k, c: _Lossy()), Job(0, 0, 0, ((0, snrs),)))["outcomes"]
    # three distinct received batches (zeros; the images; the images with an output): computed once each
    assert seen == [6, 6, 6] and _Doubles.calls == 1
    got = {key[1]: o for key, o in out.items()}
    assert len(got) == 5
    by_snr = [got[k] for k in sorted(got, key=float)]
    for a, b in ((0, 1), (2, 3)):
        np.testing.assert_array_equal(by_snr[a].per_image["psnr"], by_snr[b].per_image["psnr"])
        np.testing.assert_array_equal(by_snr[a].task_outputs["t"]["v"], by_snr[b].task_outputs["t"]["v"])
    np.testing.assert_array_equal(by_snr[2].per_image["psnr"], by_snr[4].per_image["psnr"])
    assert not np.array_equal(by_snr[0].per_image["psnr"], by_snr[2].per_image["psnr"])
    np.testing.assert_allclose(by_snr[2].task_outputs["t"]["v"], 2 * x.reshape(6, -1).mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(by_snr[0].task_outputs["t"]["v"], np.zeros(6))
