"""Channels: AWGN (more, e.g. multi-hop relay chains, register here too)."""

from linksim.channels.awgn import AWGNChannel, snr_db_to_no

__all__ = ["AWGNChannel", "snr_db_to_no"]
