"""Transmission schemes: transmitter/receiver pairs registered by scenario name.

- ``separation`` (alias ``sscc``): image codec + channel code + QAM, :mod:`linksim.schemes.separation`;
- ``deepjscc``: DeepJSCC (Bourtsoulatze et al. 2019), :mod:`linksim.schemes.deepjscc`.
"""

from linksim.schemes.base import BatchResult, Scheme, SchemeContext, fallback_image
from linksim.schemes.deepjscc import DeepJSCC, DeepJSCCScheme
from linksim.schemes.separation import SeparationReceiver, SeparationScheme, SeparationTransmitter

__all__ = ["Scheme", "SchemeContext", "BatchResult", "fallback_image", "SeparationScheme",
           "SeparationTransmitter", "SeparationReceiver", "DeepJSCC", "DeepJSCCScheme"]
