"""Sionna-backed digital PHY: LDPC codes, QAM, and the coded link that joins them."""

from linksim.phy.codes import LDPC5G, ChannelCode, IdealCode, LDPC80211n
from linksim.phy.link import DigitalLink
from linksim.phy.modulation import QAM

__all__ = ["ChannelCode", "LDPC80211n", "LDPC5G", "IdealCode", "QAM", "DigitalLink"]
