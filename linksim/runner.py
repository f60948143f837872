"""Compatibility names: the runner now lives in :mod:`linksim.run`.

``linksim.runner`` re-exports what scripts and tests imported from it; new code
imports from :mod:`linksim.run` (``setup``, ``evaluation``, ``directory``).
"""

from linksim.run.directory import REFERENCE, RunError, slug, versions
from linksim.run.evaluation import run_scenario, train_scenario
from linksim.run.setup import HopSNR, channel_uses_for, channel_uses_list, make_channel

__all__ = ["RunError", "run_scenario", "train_scenario", "channel_uses_for", "channel_uses_list", "versions",
           "HopSNR", "REFERENCE", "make_channel", "slug"]
