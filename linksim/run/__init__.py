"""Running a scenario: set-up, the sweep and its rows, the run directory.

``setup``
    seeding, data loading, the rate grid, the channel and per-hop SNRs
    (:class:`~linksim.run.setup.HopSNR`), building and preparing schemes.
``evaluation``
    :func:`~linksim.run.evaluation.run_scenario`, :func:`~linksim.run.evaluation.train_scenario`,
    results rows (:func:`~linksim.run.evaluation.make_row`) and their aggregation over
    batches; task metrics through the task registry (:mod:`linksim.tasks.base`).
``directory``
    the run directory: resume, ``results.csv``, ``meta.json`` (provenance), example
    images, and :data:`~linksim.run.directory.REFERENCE`, the reference row's name.

Names are loaded on first use (``from linksim.run import run_scenario``), so that
reading a run directory (:mod:`linksim.plotting` uses :mod:`linksim.run.directory`)
does not import the evaluation.
"""

import importlib

_WHERE = {
    "REFERENCE": "directory", "RESULTS": "directory", "RunDirectory": "directory", "RunError": "directory",
    "slug": "directory", "versions": "directory", "default_run_dir": "directory", "read_results": "directory",
    "Aggregate": "evaluation", "make_row": "evaluation", "run_scenario": "evaluation",
    "train_scenario": "evaluation",
    "HopSNR": "setup", "build_scheme": "setup", "channel_uses_for": "setup", "channel_uses_list": "setup",
    "make_channel": "setup",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"linksim.run.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'linksim.run' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
