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
"""

from linksim.run.directory import REFERENCE, RESULTS, RunDirectory, RunError, slug, versions
from linksim.run.evaluation import Aggregate, make_row, run_scenario, train_scenario
from linksim.run.setup import HopSNR, build_scheme, channel_uses_for, channel_uses_list, make_channel

__all__ = ["run_scenario", "train_scenario", "RunError", "RunDirectory", "REFERENCE", "RESULTS", "HopSNR",
           "Aggregate", "make_row", "build_scheme", "make_channel", "channel_uses_for", "channel_uses_list",
           "versions", "slug"]
