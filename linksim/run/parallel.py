"""Where a run's jobs (:class:`linksim.run.points.Job`) execute: in the run's process, in worker
processes on this machine (``linksim run --workers N``), or as Ray tasks on a cluster
(``--executor ray``).

Every executor offers :meth:`submit` (a job), :meth:`completed` (the jobs finished so
far, each with its result or the exception it raised; optionally waiting for one) and
:meth:`close` (cancelling what has not started, waiting for what runs).  The run
prepares each scheme itself (loading or training its model: training never runs in a
worker), submits the scheme's jobs, and turns outcomes into rows as they arrive.

Worker processes start with the ``spawn`` method (a fresh interpreter: no TensorFlow
state is forked) and each runs TensorFlow with :func:`worker_threads` threads (one by
default, the same for every worker of every run, so that results do not depend on the
number of workers: TensorFlow's float32 sums depend on the thread count).  ``workers=0``
evaluates in the run's own process with TensorFlow's default threads: faster to start,
but its float32 results may differ from worker runs in the last bits.  A worker builds its :class:`~linksim.run.points.Sweep`
(data, chains, tasks) once from a :func:`worker_spec` and keeps the schemes it prepared
for its later jobs.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import uuid

__all__ = ["SerialExecutor", "ProcessExecutor", "RayExecutor", "WorkerError", "WorkerUserError", "worker_spec", "usable_cores",
           "worker_threads", "worker_cores", "start_pool", "default_workers", "make_executor", "EXECUTORS",
           "WORKER_MEMORY"]

#: ``--executor`` values
EXECUTORS = ("local", "ray")

#: environment variables a worker takes from the run (a Ray worker on another node has its own environment)
_ENV_PREFIX = "LINKSIM_"


class WorkerError(RuntimeError):
    """An error raised in a worker that could not travel back as itself (the message keeps its text)."""


class WorkerUserError(WorkerError):
    """:class:`WorkerError` of an error that reports bad input (exit status 2, :mod:`linksim.errors`)."""

    user_error = True


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: memory a worker process needs at most for the shipped scenarios (TensorFlow, models, data), bytes
WORKER_MEMORY = 2 * 1024 ** 3


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def default_workers() -> int:
    """``--workers auto``: one worker per usable core, fewer if the free memory holds fewer
    (:data:`WORKER_MEMORY` each)."""
    cores = usable_cores() // worker_threads()
    mem = _available_memory()
    return max(1, min(cores, mem // WORKER_MEMORY) if mem else cores)


def worker_threads() -> int:
    """TensorFlow threads of each worker: ``$LINKSIM_WORKER_THREADS``, default 1.

    Floating-point sums in TensorFlow's kernels depend on how many threads share them, so
    every worker of every run uses the same number: a run with any number of workers, local
    or on Ray, then writes the same ``results.csv``.
    """
    value = os.environ.get("LINKSIM_WORKER_THREADS", "1")
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise WorkerUserError(f"LINKSIM_WORKER_THREADS must be a positive integer (got {value!r})")
    return n


def worker_spec(scenario, store, threads: int) -> dict:
    """What a worker needs to rebuild the run's sweep: the resolved scenario, the model store's folders,
    the plug-in files loaded, the ``LINKSIM_*`` environment and its thread count."""
    from linksim import registry

    return {"id": uuid.uuid4().hex, "scenario": scenario.data, "source": scenario.source,
            "store_roots": [str(r) for r in store.roots], "plugins": list(registry._PLUGINS),
            "env": {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIX)}, "threads": int(threads)}


# --------------------------------------------------------------------------- the worker side

_STATE: dict = {}          # {spec id: WorkerState}, one per process
_KEEP = contextlib.ExitStack()


#: thread-count variables of the numerical libraries a worker loads (numpy's BLAS, OpenMP)
_BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _init_process(threads: int, core_sets: list | None = None, counter=None) -> None:
    """A worker process's first step, before it imports numpy: its BLAS uses ``threads`` threads,
    and the worker keeps to its own cores (the next of ``core_sets``, :func:`worker_cores`).

    Without the first each worker's BLAS starts one busy-waiting thread per core, and two workers on
    two cores spend their time contending (measured: the main job 90 s instead of 77 s).
    """
    for name in _BLAS_THREADS:
        os.environ[name] = str(threads)
    if core_sets and counter is not None:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        if index < len(core_sets):
            with contextlib.suppress(OSError):  # a core taken away meanwhile: run where the system says
                os.sched_setaffinity(0, core_sets[index])


def worker_cores(workers: int, threads: int) -> list[set[int]] | None:
    """The cores each of ``workers`` worker processes keeps to, or None (they go where the system puts them).

    When the workers fill the usable cores exactly (``workers * threads``, two workers or more), worker ``i`` keeps
    to cores ``i * threads ... (i + 1) * threads - 1`` of this process's affinity. Unpinned, a worker waited
    off the CPU, most likely for its helper threads (TensorFlow's executor, x265's frame encoder) woken on
    the other worker's busy core: measured on ``awgn_sscc`` with 2 workers on 2 cores, the BPG jobs took
    24.6 s of wall time for 19.6 s of CPU (pinned: 20.0 / 19.5 s), and the run 69 s instead of 63 s.
    ``LINKSIM_PIN_WORKERS=0`` turns it off.
    """
    if os.environ.get("LINKSIM_PIN_WORKERS", "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    if not hasattr(os, "sched_setaffinity"):  # pragma: no cover - not Linux
        return None
    cores = sorted(os.sched_getaffinity(0))
    if workers < 2 or workers * threads != len(cores):   # cores to spare: the helper threads may use them
        return None
    return [set(cores[i * threads:(i + 1) * threads]) for i in range(workers)]


def _configure_threads(threads: int) -> None:
    """Limit TensorFlow to ``threads`` threads (before its runtime starts; later calls change nothing)."""
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # the runtime already started (a reused Ray worker): keep its threads
        pass


def worker_state(spec: dict):
    """This process's :class:`~linksim.run.points.WorkerState` for the run ``spec`` (built on first use)."""
    state = _STATE.get(spec["id"])
    if state is not None:
        return state
    _STATE.clear()
    os.environ.update(spec["env"])
    _configure_threads(spec["threads"])
    from linksim import registry
    from linksim.run.points import WorkerState, build_sweep
    from linksim.scenario import Scenario
    from linksim.store import ModelStore

    registry.load_plugins(spec["plugins"])
    store = ModelStore(spec["store_roots"])
    _KEEP.enter_context(store.sharing_loaded_models())
    sweep = build_sweep(Scenario(spec["scenario"], spec["source"]), store, progress=False, train_missing=False)
    state = _STATE[spec["id"]] = WorkerState(sweep)
    return state


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling with its message, else a :class:`WorkerError` with its text."""
    try:
        back = pickle.loads(pickle.dumps(exc))
        if str(back) == str(exc) and type(back) is type(exc):
            return exc
    except Exception:  # noqa: BLE001 - any exception that does not pickle
        pass
    from linksim.errors import is_user_error

    return (WorkerUserError if is_user_error(exc) else WorkerError)(f"{type(exc).__name__}: {exc}")


def run_in_worker(spec: dict, job):
    """Run ``job`` in this worker process (a process-pool task or a Ray task)."""
    from linksim.run.points import run_job

    try:
        return run_job(worker_state(spec), job)
    except Exception as exc:  # noqa: BLE001 - sent back to the run, which raises it
        raise _portable(exc) from None


def warm_up(spec: dict) -> int:
    """Build the worker's state before its first job (TensorFlow, data, tasks); returns the process id."""
    try:
        worker_state(spec)
    except Exception as exc:  # noqa: BLE001
        raise _portable(exc) from None
    return os.getpid()


# --------------------------------------------------------------------------- executors

class SerialExecutor:
    """Runs each job at once, in the run's process, with the run's prepared schemes (``workers=0``)."""

    workers = 0

    def __init__(self, state):
        self.state = state
        self._done: list = []

    def submit(self, job) -> None:
        from linksim.run.points import run_job

        self._done.append((job, run_job(self.state, job)))  # an error raises here, in the run's process

    def completed(self, wait: bool = False) -> list:
        out, self._done = self._done, []
        return out

    def pending(self) -> int:
        return 0

    def close(self, cancel: bool = False) -> None:
        pass


def start_pool(workers: int, threads: int):
    """A pool of ``workers`` spawned processes, each with ``threads`` threads and, when they fill the
    cores, its own cores (:func:`worker_cores`)."""
    import concurrent.futures as cf
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_process,
                                  initargs=(threads, worker_cores(workers, threads), ctx.Value("i", 0)))


class ProcessExecutor:
    """``workers`` spawned worker processes on this machine (:class:`concurrent.futures.ProcessPoolExecutor`)."""

    def __init__(self, spec: dict, workers: int):
        import concurrent.futures as cf

        self.spec, self.workers = spec, int(workers)
        self._cf = cf
        self._pool = None   # started with the first job: a resumed run with nothing left starts no process
        self._futures: dict = {}
        self._warm: list = []

    def submit(self, job) -> None:
        if self._pool is None:
            self._pool = start_pool(self.workers, self.spec["threads"])
            self._warm = [self._pool.submit(warm_up, self.spec) for _ in range(self.workers)]
        self._futures[self._pool.submit(run_in_worker, self.spec, job)] = job

    def completed(self, wait: bool = False) -> list:
        for f in [f for f in self._warm if f.done()]:
            self._warm.remove(f)
            f.result()  # a worker that cannot start (e.g. a missing model file) fails the run now
        if not self._futures:
            return []
        done, _ = self._cf.wait(list(self._futures), timeout=None if wait else 0,
                                return_when=self._cf.FIRST_COMPLETED)
        out = []
        for f in done:
            job = self._futures.pop(f)
            if not f.cancelled():
                out.append((job, f.exception() or f.result()))
        return out

    def pending(self) -> int:
        return len(self._futures)

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)


class RayExecutor:
    """Jobs as Ray tasks on a Ray cluster (``ray.init(address)``; a local one when no address is known).

    ``address``: ``--ray-address``; otherwise Ray's own rule (the ``RAY_ADDRESS``
    environment variable, else a new local cluster).  Each task asks for
    ``cpus_per_task`` CPUs and runs TensorFlow with as many threads.
    """

    def __init__(self, spec: dict, address: str | None = None, cpus_per_task: int = 1):
        from linksim.run.directory import RunError

        try:
            import ray
        except ImportError:
            raise RunError("--executor ray needs Ray: pip install \"linksim[ray]\"") from None
        self._ray = ray
        self._own = not ray.is_initialized()
        problem = _unreachable(address or os.environ.get("RAY_ADDRESS")) if self._own else None
        if problem:
            raise RunError(f"--executor ray: cannot reach a Ray cluster at {address or os.environ['RAY_ADDRESS']}: "
                           f"{problem} (start one with `ray start --head`, or leave --ray-address out for a local "
                           f"one)")
        if self._own:
            kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            try:
                ray.init(address=address, **kwargs) if address else ray.init(**kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise RunError(f"--executor ray: cannot reach a Ray cluster at "
                               f"{address or os.environ.get('RAY_ADDRESS') or '(local)'}: {exc}") from None
        spec = {**spec, "threads": int(cpus_per_task)}
        self._spec = ray.put(spec)
        self._task = ray.remote(num_cpus=cpus_per_task, max_retries=0)(run_in_worker)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // int(cpus_per_task))
        self._futures: dict = {}

    def submit(self, job) -> None:
        self._futures[self._task.remote(self._spec, job)] = job

    def completed(self, wait: bool = False) -> list:
        if not self._futures:
            return []
        done, _ = self._ray.wait(list(self._futures), num_returns=1, timeout=None if wait else 0)
        out = []
        for ref in done:
            job = self._futures.pop(ref)
            try:
                out.append((job, self._ray.get(ref)))
            except self._ray.exceptions.TaskCancelledError:
                pass
            except self._ray.exceptions.RayTaskError as exc:
                inner = getattr(exc, "cause", None)
                out.append((job, inner if isinstance(inner, BaseException) else WorkerError(str(exc))))
        return out

    def pending(self) -> int:
        return len(self._futures)

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._futures:
                with contextlib.suppress(Exception):
                    self._ray.cancel(ref)
        self._futures.clear()
        if self._own:
            self._ray.shutdown()


def _unreachable(address: str | None, timeout: float = 5.0) -> str | None:
    """Why nothing answers at a ``HOST:PORT`` cluster address (None when something does, or for other
    forms: ``auto``, ``ray://...``, which Ray checks itself). Ray would retry for minutes."""
    if not address or "://" in address or ":" not in address:
        return None
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except ValueError:
        return f"the port {port!r} is not a number"
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def make_executor(kind: str, workers: int, state, spec_fn, ray_address: str | None = None):
    """The executor of a run: in-process (``local``, ``workers=0``), worker processes, or Ray.

    ``spec_fn(threads)`` builds the :func:`worker_spec` (only when workers are used).
    """
    if kind == "ray":
        return RayExecutor(spec_fn(worker_threads()), ray_address, cpus_per_task=worker_threads())
    if kind != "local":
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)} (got {kind!r})")
    if int(workers) < 1:
        return SerialExecutor(state)
    return ProcessExecutor(spec_fn(worker_threads()), workers)
