"""Transmission schemes: transmitter/receiver pairs registered by scenario name.

- ``separation`` (alias ``sscc``): image codec + channel code + QAM, :mod:`linksim.schemes.separation`;
- ``jscc``: a JSCC scheme composed of an architecture (``ARCHITECTURES``) and training stages
  of losses (``LOSSES``), :mod:`linksim.schemes.jscc`;
- ``deepjscc``: DeepJSCC (Bourtsoulatze et al. 2019), :mod:`linksim.schemes.deepjscc`;
- ``sdjscc``, ``sdjscc_nogsw``: SD-JSCC (Sun et al.) and its ablation without GSW, :mod:`linksim.schemes.sdjscc`;
- ``uncoded``, ``linear``: the analog references (no training; LMMSE receivers), :mod:`linksim.schemes.analog`
  (API: :class:`UncodedCode`, :class:`LinearCode`).
"""

from linksim.schemes.base import BatchResult, Scheme, SchemeContext, fallback_image
from linksim.schemes.jscc import JSCCArchitecture, JSCCScheme, TrainingStage
from linksim.schemes.deepjscc import DeepJSCC, DeepJSCCArchitecture, DeepJSCCScheme
from linksim.schemes.sdjscc import SDJSCCNoGSWScheme, SDJSCCScheme
from linksim.schemes.analog import (LinearCode, LinearScheme, UncodedCode, UncodedScheme,
                                    linear_power_allocation)
from linksim.schemes.separation import SeparationReceiver, SeparationScheme, SeparationTransmitter

__all__ = ["Scheme", "SchemeContext", "BatchResult", "fallback_image", "SeparationScheme",
           "SeparationTransmitter", "SeparationReceiver", "DeepJSCC", "DeepJSCCScheme",
           "DeepJSCCArchitecture", "JSCCScheme", "JSCCArchitecture", "TrainingStage", "SDJSCCScheme", "SDJSCCNoGSWScheme",
           "UncodedCode", "LinearCode", "UncodedScheme", "LinearScheme", "linear_power_allocation"]
