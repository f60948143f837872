"""Channel sweeps: a multihop channel whose ``hops`` or relay options are lists, or a
one-hop channel whose options are lists.

A scenario sweeps the SNR (``snr_db``), the rate (``rate``) and, with this module,
the channel itself::

    channel:
      type: multihop
      hops: [1, 2, 3, 4]          # a list: one chain per number of hops
      relay: qf
      relay_params: {bits: [2, 4, 6, 8]}   # a list: one chain per value of a relay option

    channel: {type: rayleigh, coherence: image, csi: [perfect, pilots, none]}
                                  # a one-hop channel: one chain per value of an option

Each combination is a *channel variant* (a *chain*). For ``multihop``: hops
outermost, then the relay options in the order written; a one-hop variant has no
relay, so the relay options do not apply to it and it appears once, whatever they
sweep (a list inside ``hop:`` is never swept). For any other channel: every option
but ``type`` (and ``hops`` / ``hop_snr_db``, which only a multihop channel takes)
whose value is a sweep list (:func:`is_sweep_list`), in the order written.

Every results row carries the variant's columns: ``hops`` (always), ``relay_<option>``
for each swept relay option (empty for a one-hop variant) and ``channel_<option>``
for each swept option of a one-hop channel. Plots split by variant
(``linksim.plotting``); resume and per-point seeds are per variant.

This module imports neither TensorFlow nor the channel layers: ``linksim validate``
and the plots use it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

__all__ = ["ChannelVariant", "channel_variants", "sweep_axes", "variant_columns", "row_variant_key", "is_sweep",
           "max_hops", "chain_count", "is_sweep_list", "format_value", "variant_tag", "swept_channel_options",
           "NOT_CHANNEL_OPTIONS", "CHANNEL_PREFIX"]

#: Results-column prefix of a swept option of a one-hop channel (``channel_csi``).
CHANNEL_PREFIX = "channel_"
#: Fields of a ``channel`` mapping that are never swept as a one-hop channel's options:
#: ``type``, and the multihop fields (``hops`` and ``relay_params`` follow the multihop
#: rules, which refuse them on another channel; ``hop_snr_db`` is a list of one value per hop).
NOT_CHANNEL_OPTIONS = ("type", "hops", "relay", "relay_params", "hop", "hop_snr_db")


@dataclass(frozen=True)
class ChannelVariant:
    """One chain of a channel sweep.

    Attributes
    ----------
    spec : dict
        The scenario's ``channel`` mapping with every swept field set to this
        variant's value (``hop_snr_db`` kept as written).
    columns : dict
        ``{"hops": h, "relay_<option>": value or None}`` of the swept fields of a
        multihop channel; ``{"hops": 1, "channel_<option>": value}`` of a one-hop one.
    """

    spec: dict
    columns: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        """What tells this variant's rows apart (the values of ``columns`` in order)."""
        return tuple(self.columns.values())

    @property
    def tag(self) -> str:
        """A short description for labels and seeds, e.g. ``3 hops, bits 4`` or ``csi none``."""
        return variant_tag(self.columns)


def variant_tag(columns: dict) -> str:
    """``3 hops, bits 4`` (a multihop chain), ``csi none, k_factor 10`` (a one-hop channel's options:
    its one hop is left out)."""
    one_hop_options = any(col.startswith(CHANNEL_PREFIX) for col in columns)
    parts = []
    for col, v in columns.items():
        if col.startswith(CHANNEL_PREFIX):
            parts.append(f"{col[len(CHANNEL_PREFIX):]} {format_value(v)}")
        elif v is None:
            continue
        elif col == "hops":
            if not one_hop_options:
                parts.append(f"{v} hop{'s' if v != 1 else ''}")
        else:
            parts.append(f"{col[len('relay_'):]} {format_value(v)}")
    return ", ".join(parts)


def format_value(v) -> str:
    """A swept value as labels and seeds show it: ``4``, ``0.1234561`` (12 significant digits), ``measured``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return format(v, ".12g")


def is_sweep_list(v) -> bool:
    """A relay option's (or a one-hop channel option's) value that sweeps it: a non-empty list of
    single values (numbers, names).

    A list of lists is one value (a QF ``constellation`` of ``[re, im]`` points), not a sweep.
    """
    return isinstance(v, list) and bool(v) and all(x is None or isinstance(x, (str, int, float)) for x in v)


def _swept_relay_options(ch: dict) -> list[str]:
    params = ch.get("relay_params")
    if not isinstance(params, dict):
        return []
    return [k for k, v in params.items() if is_sweep_list(v)]


def swept_channel_options(ch: dict) -> list[str]:
    """The swept options of a one-hop (not ``multihop``) channel, in the order written.

    Every field but :data:`NOT_CHANNEL_OPTIONS` whose value is a sweep list
    (:func:`is_sweep_list`); none for a ``multihop`` channel (its own rules: ``hops``
    and ``relay_params``).
    """
    if not isinstance(ch, dict) or ch.get("type") == "multihop":
        return []
    return [k for k, v in ch.items() if k not in NOT_CHANNEL_OPTIONS and is_sweep_list(v)]


def chain_count(ch: dict) -> int:
    """How many chains :func:`channel_variants` makes, computed without making them (an upper bound)."""
    hops = ch.get("hops")
    n = len(hops) if isinstance(hops, list) else 1
    for opt in _swept_relay_options(ch):
        n *= len(ch["relay_params"][opt])
    for opt in swept_channel_options(ch):
        n *= len(ch[opt])
    return n


def is_sweep(ch: dict) -> bool:
    """Whether the ``channel`` mapping sweeps its hops, a relay option or an option of a one-hop channel."""
    return isinstance(ch.get("hops"), list) or bool(_swept_relay_options(ch)) or bool(swept_channel_options(ch))


def sweep_axes(ch: dict) -> dict[str, list]:
    """``{column: values}`` of the swept fields (``hops``, ``relay_<option>``, ``channel_<option>``),
    in the order they vary."""
    axes = {}
    if isinstance(ch.get("hops"), list):
        axes["hops"] = list(ch["hops"])
    for opt in _swept_relay_options(ch):
        axes[f"relay_{opt}"] = list(ch["relay_params"][opt])
    for opt in swept_channel_options(ch):
        axes[CHANNEL_PREFIX + opt] = list(ch[opt])
    return axes


def variant_columns(ch: dict) -> list[str]:
    """The results columns that tell the variants apart: ``hops``, ``relay_<option>`` per swept relay
    option and ``channel_<option>`` per swept option of a one-hop channel."""
    return (["hops"] + [f"relay_{opt}" for opt in _swept_relay_options(ch)]
            + [CHANNEL_PREFIX + opt for opt in swept_channel_options(ch)])


def max_hops(ch: dict) -> int:
    """The most hops of any variant (for memory estimates)."""
    hops = ch.get("hops", 2 if ch.get("type") == "multihop" else 1)
    return max(hops) if isinstance(hops, list) and hops else hops if isinstance(hops, int) else 1


def channel_variants(ch: dict) -> list[ChannelVariant]:
    """Every chain of the ``channel`` mapping; one variant when nothing is swept.

    The ``columns`` of a variant hold its ``hops``, the value of every swept relay
    option (None for a one-hop chain, which has no relay) and of every swept option of
    a one-hop channel (:func:`swept_channel_options`).
    """
    default_hops = 2 if ch.get("type") == "multihop" else 1
    hops_list = ch["hops"] if isinstance(ch.get("hops"), list) else [ch.get("hops", default_hops)]
    opts = _swept_relay_options(ch)
    values = [ch["relay_params"][o] for o in opts]
    copts = swept_channel_options(ch)
    cvalues = list(itertools.product(*[ch[o] for o in copts]))  # [()] when none is swept
    out, seen = [], set()
    for hops in hops_list:
        combos = [(None,) * len(opts)] if hops == 1 and opts else list(itertools.product(*values)) or [()]
        for combo, ccombo in itertools.product(combos, cvalues):
            spec = dict(ch)
            if isinstance(ch.get("hops"), list):
                spec["hops"] = hops
            if hops == 1 and (opts or isinstance(ch.get("hops"), list)):  # a swept one-hop chain has no relay
                spec.pop("relay_params", None)
                spec.pop("relay", None)
            elif opts:
                spec["relay_params"] = {**ch["relay_params"], **dict(zip(opts, combo))}
            spec.update(zip(copts, ccombo))
            columns = {"hops": hops, **{f"relay_{o}": v for o, v in zip(opts, combo)},
                       **{CHANNEL_PREFIX + o: v for o, v in zip(copts, ccombo)}}
            key = repr(tuple(columns.values()))
            if key in seen:
                continue
            seen.add(key)
            out.append(ChannelVariant(spec, columns))
    return out


def _norm(v):
    """A results-table cell as a variant-key value: None for empty, an int for a whole number."""
    if v is None:
        return None
    if isinstance(v, str):
        v = v.strip()
        if not v:
            return None
        try:
            v = float(v)
        except ValueError:
            return v
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        if isinstance(v, float) and math.isnan(v):
            return None
        return int(v) if float(v).is_integer() else float(v)
    return v


def row_variant_key(row: dict, columns: list[str]) -> tuple:
    """The variant key of a results row (as :attr:`ChannelVariant.key`)."""
    return tuple(_norm(row.get(c)) for c in columns)
