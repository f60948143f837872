"""Channels: one contract (:class:`Channel`), AWGN, and multi-hop relay chains (AF, DF, QF relays).

Every module of this package is imported before a registry is read
(:func:`linksim.registry._load_builtin_components`), so a new channel (a fading
hop, say) is one new file that registers itself with ``@CHANNELS.register(name)``.
"""

from linksim.channels.awgn import AWGNChannel, no_to_snr_db, snr_db_to_no
from linksim.channels.base import Channel, told_snr_db
from linksim.channels.fading import RayleighFadingChannel
from linksim.channels.relay import (AmplifyAndForwardRelay, DecodeAndForwardRelay, MultiHopChannel,
                                    QuantizeAndForwardRelay, af_effective_snr, hop_snrs)

__all__ = ["Channel", "told_snr_db", "RayleighFadingChannel", "AWGNChannel", "snr_db_to_no", "no_to_snr_db",
           "AmplifyAndForwardRelay", "DecodeAndForwardRelay", "QuantizeAndForwardRelay", "MultiHopChannel", "af_effective_snr", "hop_snrs"]
