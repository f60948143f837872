"""Channels: one contract (:class:`Channel`), AWGN, and multi-hop relay chains (amplify-, decode-, quantize-and-forward)."""

from linksim.channels.awgn import AWGNChannel, no_to_snr_db, snr_db_to_no
from linksim.channels.base import Channel
from linksim.channels.relay import (AmplifyAndForwardRelay, DecodeAndForwardRelay, MultiHopChannel,
                                    QuantizeAndForwardRelay, af_effective_snr, hop_snrs)

__all__ = ["Channel", "AWGNChannel", "snr_db_to_no", "no_to_snr_db", "AmplifyAndForwardRelay",
           "DecodeAndForwardRelay", "QuantizeAndForwardRelay", "MultiHopChannel", "af_effective_snr", "hop_snrs"]
