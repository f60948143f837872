"""The channel contract every linksim channel follows (AWGN, multi-hop chains, fading hops).

A channel is a Keras layer whose call returns named outputs::

    out = channel(x, snr_db, num_symbols=None)
    out["y"]       # [batch, S] tf.complex64, received symbols (known gains compensated)
    out["no"]      # tf.float32, scalar, [batch] or [batch, S]: noise variance per complex symbol to assume
    out["snr_db"]  # tf.float32, scalar or [batch]: the Es/N0 an SNR-aware decoder is told
    out["state"]   # dict, maybe empty: channel state (per-hop no, "relay_ok", fading, ...)

Receivers use only what the call returned; they never query the channel
afterwards and never test its type.  Scheme-specific behaviour (the
decode-and-forward regeneration, the constellation a relay carries) is bound
once with :meth:`Channel.bind` when the scheme is prepared.  A new channel (a
fading hop, say) is one file: subclass :class:`Channel`, register it with
``@CHANNELS.register("name")`` and it can be a scenario's channel or any hop
of a :class:`~linksim.channels.MultiHopChannel` (``hop: {type: name}``).
"""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["Channel", "symbol_mask", "apply_mask", "told_snr_db"]


def symbol_mask(num_symbols, x) -> tf.Tensor | None:
    """``[batch, S]`` tf.bool, True at the symbols an image uses (None when ``num_symbols`` is None).

    Input
    -----
    num_symbols : None or [batch] int
        Symbols used per image; positions ``>= num_symbols`` are unused.
    x : [batch, S] tensor
        Only its last dimension ``S`` is read.
    """
    if num_symbols is None:
        return None
    s = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
    return tf.sequence_mask(tf.cast(num_symbols, tf.int32), s)


def apply_mask(x, mask) -> tf.Tensor:
    """``x`` with the unused symbols (``mask`` False) set to zero; ``x`` itself when ``mask`` is None."""
    if mask is None:
        return x
    return x * tf.cast(mask, x.dtype)


def told_snr_db(no, mask=None) -> tf.Tensor:
    """The Es/N0 [dB] an SNR-aware receiver is told for noise variance ``no``.

    ``no`` scalar or ``[batch]``: ``-10 log10(no)``.  ``no`` per symbol, ``[batch, S]``
    (fading with known gains): the image's effective SNR ``10 log10(mean_s 1 / no_s)``
    over its used symbols (``mask`` ``[batch, S]`` bool, None: all), ``[batch]``.
    """
    no = tf.cast(no, tf.float32)
    if no.shape.rank is not None and no.shape.rank <= 1:
        return -10.0 * tf.math.log(no) / tf.math.log(10.0)
    inv = 1.0 / no
    if mask is None:
        mean = tf.reduce_mean(inv, axis=-1)
    else:
        m = tf.cast(mask, tf.float32)
        mean = tf.reduce_sum(inv * m, axis=-1) / tf.maximum(tf.reduce_sum(m, axis=-1), 1.0)
    return 10.0 * tf.math.log(mean) / tf.math.log(10.0)


class Channel(keras.layers.Layer):
    """Base class of every channel: ``call(x, snr_db, num_symbols=None) -> dict``.

    Subclasses implement :meth:`call` and, where they have scheme-specific
    parts, :meth:`bind`; :meth:`describe` gives JSON-able facts for run metadata.

    Input
    -----
    x : [batch, S], tf.complex64
        Symbols of unit average energy over the used symbols.
    snr_db : float, list of floats, tf.float32 scalar, [batch], [hops] or [hops, batch]
        Es/N0 in dB (per hop for a chain, see :func:`~linksim.channels.hop_snrs`).
    num_symbols : None or [batch], int32
        Symbols used per image (variable-length transmission); the symbols at
        positions ``>= num_symbols`` are zero and stay zero at the output.

    Output
    ------
    dict with
        ``y`` : [batch, S], tf.complex64, the received symbols (gains compensated);
        ``no`` : tf.float32, scalar, [batch] or [batch, S] (per symbol: fading with
        known gains), the noise variance per complex symbol the receiver should assume;
        ``snr_db`` : tf.float32, scalar or [batch], the Es/N0 an SNR-aware decoder
        is told (:func:`told_snr_db`: ``-10 log10(no)``, or an image's effective SNR);
        ``state`` : dict, the channel state (may be empty), e.g. ``hop_no``,
        ``segment_no`` (lists of tf.float32) and ``relay_ok`` ([batch, ...] tf.bool,
        whether the regenerating relays decoded each block correctly).
    """

    #: Whether gradients flow from ``y`` to ``x`` (False: a JSCC model cannot train through it).
    differentiable = True

    def build(self, *args, **kwargs):
        # Channels have no weights; marking them built spares Keras a symbolic trace of ``call``.
        self.built = True

    def __call__(self, x, *args, **kwargs):
        # Keras 3 takes only tensors positionally: pass snr_db (maybe a Python number or list) by keyword.
        if args:
            if "snr_db" in kwargs or len(args) > 2 or (len(args) == 2 and "num_symbols" in kwargs):
                raise TypeError(f"{type(self).__name__} takes (x, snr_db, num_symbols=None); "
                                f"got {1 + len(args)} positional arguments")
            kwargs["snr_db"] = args[0]
            if len(args) == 2:
                kwargs["num_symbols"] = args[1]
        return super().__call__(x, **kwargs)

    def call(self, x, snr_db, num_symbols=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def bind(self, regenerate=None, **facts) -> "Channel":
        """The channel to use for one scheme, with its scheme-specific parts bound.

        Parameters
        ----------
        regenerate : callable ``(y, no) -> x_next`` or ``-> {"x": x_next, "ok": [batch, ...] bool}``, or None
            The scheme's decode and re-encode, called by decode-and-forward relays.
        **facts
            What the transmitter sends, e.g. ``constellation`` ([M] complex, the
            points of its modulation).  Facts a channel does not use are ignored.

        Output
        ------
        Channel
            ``self`` when nothing changes (the default: a channel without
            scheme-specific parts), otherwise a bound copy.
        """
        return self

    def compiled(self, jit_compile: bool = False):
        """This channel as a ``tf.function`` ``(x, snr_db) -> (y, told snr_db)``, made once per channel object
        and ``jit_compile``.

        Schemes that share the channel (:meth:`bind` returned it) share its traces: a channel sweep traces
        each chain once per process instead of once into every scheme's compiled call (measured on
        ``dhd_multihop_qf``: a QF chain's trace about 0.5 s, a JSCC model's about 0.4 s). One trace per input
        shape, not ``reduce_retracing``: a chain told a scalar SNR and one per hop would be relaxed to an SNR of
        unknown rank, which a chain cannot split into its hops.
        """
        fns = self.__dict__.get("_linksim_compiled")
        if fns is None:
            fns = {}
            object.__setattr__(self, "_linksim_compiled", fns)   # not a Keras-tracked attribute
        if jit_compile not in fns:
            def run(x, snr_db):
                out = self(x, snr_db)
                return out["y"], out["snr_db"]
            fns[jit_compile] = tf.function(run, jit_compile=jit_compile)   # a trace per shape (see above)
        return fns[jit_compile]

    def pilot_channel_uses(self, num_symbols: int) -> int:
        """Channel uses per image the channel adds to a transmission of ``num_symbols`` symbols
        (pilots for channel estimation; 0 by default).  The run reports them per image."""
        return 0

    def describe(self) -> dict:
        """JSON-able facts for run metadata: ``type``, ``hops``, ``relays``, ``hop_types``."""
        name = registered_name(type(self))
        return {"type": name, "hops": 1, "relays": [], "hop_types": [name]}


def registered_name(cls) -> str:
    """The channel registry's name of ``cls`` (its class name when it is not registered)."""
    from linksim.registry import CHANNELS

    for n in CHANNELS.names():
        if CHANNELS.get(n) is cls:
            return n
    return cls.__name__
