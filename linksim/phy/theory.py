"""Closed-form bit error rates of uncoded Gray-labelled square QAM, and an independent numpy check.

What the uncoded separation scheme (``channel_code: {type: none}``: bits straight to
QAM, hard decisions) should measure, drawn as theory curves in the ``ber_vs_snr`` plot:

- :func:`qam_ber_awgn`: the exact BER of Gray-labelled square M-QAM with
  nearest-point detection over AWGN, the sum of erfc terms of Cho and Yoon [1]_;
- :func:`qam_ber_rayleigh`: its exact average over Rayleigh fading with perfect CSI
  (coherent detection, ``E|h|^2 = 1``): each ``erfc(sqrt(c g))`` averaged over an
  exponential SNR ``g`` of mean ``gbar`` is ``1 - sqrt(c gbar / (1 + c gbar))``
  ([2]_, eq. 5.6 and section 8.2.4);
- :func:`simulate_qam_ber`: a Monte-Carlo simulation in numpy with its own Gray
  labelling and detector (no Sionna), to check the two above;
- :func:`theory_curve`: which curve, if any, belongs to a scenario's scheme and channel.

Signal conventions (``DESIGN.md``): complex baseband, unit average symbol energy,
``esno_db`` is Es/N0 in dB (per hop), ``N0 = 10**(-esno_db / 10)``; Eb/N0 = Es/N0 / log2(M).

This module imports numpy and the standard library only.

References
----------
.. [1] K. Cho and D. Yoon, "On the general BER expression of one- and two-dimensional
   amplitude modulations", IEEE Trans. Commun., vol. 50, no. 7, pp. 1074-1080, July 2002.
.. [2] M. K. Simon and M.-S. Alouini, "Digital Communication over Fading Channels",
   2nd ed., Wiley, 2005.
.. [3] J. G. Proakis and M. Salehi, "Digital Communications", 5th ed., McGraw-Hill, 2008
   (QPSK over AWGN and Rayleigh fading, the nearest-neighbour approximation of M-QAM).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

__all__ = ["qam_ber_awgn", "qam_ber_rayleigh", "modulation_name", "simulate_qam_ber", "theory_curve",
           "ALLOWED_BITS"]

#: ``num_bits_per_symbol`` of the square QAMs: QPSK, 16-, 64- and 256-QAM.
ALLOWED_BITS = (2, 4, 6, 8)

_erfc = np.vectorize(math.erfc, otypes=[float])


def _check_bits(num_bits_per_symbol) -> int:
    if isinstance(num_bits_per_symbol, bool) or num_bits_per_symbol not in ALLOWED_BITS:
        raise ValueError(f"num_bits_per_symbol must be one of {', '.join(map(str, ALLOWED_BITS))} "
                         f"(square QAM), got {num_bits_per_symbol!r}")
    return int(num_bits_per_symbol)


def _cho_yoon_terms(num_bits_per_symbol: int) -> list[tuple[float, float]]:
    """``[(weight, c)]`` with BER = sum of ``weight * erfc(sqrt(c * Es/N0))`` (Cho and Yoon [1]_, eq. 14-16).

    For square M-QAM (I = J = sqrt(M)), P_b = (1 / log2 I) sum_{k=1}^{log2 I} P_I(k) with
    P_I(k) = (1/I) sum_{i=0}^{(1 - 2^-k) I - 1} (-1)^floor(i 2^(k-1) / I)
    (2^(k-1) - floor(i 2^(k-1) / I + 1/2)) erfc((2i + 1) sqrt(3 Es/N0 / (2 (M - 1)))).
    Terms with the same ``c`` are merged.
    """
    m = _check_bits(num_bits_per_symbol)
    M = 2 ** m
    I = 2 ** (m // 2)  # noqa: E741 (the paper's name)
    bits_per_dim = m // 2
    weights: dict[int, float] = {}
    for k in range(1, bits_per_dim + 1):
        for i in range(int((1 - 2.0 ** -k) * I)):
            q = (i * 2 ** (k - 1)) // I
            w = (-1) ** q * (2 ** (k - 1) - math.floor(i * 2 ** (k - 1) / I + 0.5))
            weights[i] = weights.get(i, 0.0) + w / (I * bits_per_dim)
    return [(w, (2 * i + 1) ** 2 * 3.0 / (2.0 * (M - 1))) for i, w in sorted(weights.items()) if w != 0]


def qam_ber_awgn(esno_db, num_bits_per_symbol: int) -> np.ndarray:
    """Exact BER of Gray-labelled square M-QAM with nearest-point detection over AWGN.

    The sum of erfc terms of Cho and Yoon [1]_ (binary-reflected Gray labelling of
    each real dimension, as Sionna's ``Mapper("qam", m)``). QPSK gives
    ``Q(sqrt(Es/N0)) = 0.5 erfc(sqrt(Es / (2 N0)))``; 16-QAM gives
    ``(3 erfc(a) + 2 erfc(3a) - erfc(5a)) / 8`` with ``a = sqrt(Es / (10 N0))``.

    Parameters
    ----------
    esno_db : float or array_like
        Es/N0 in dB (energy per symbol over noise spectral density).
    num_bits_per_symbol : {2, 4, 6, 8}
        QPSK, 16-QAM, 64-QAM, 256-QAM.

    Output
    ------
    ber : numpy.ndarray of float
        Bit error probability, same shape as ``esno_db`` (a 0-d array for a scalar).

    Raises
    ------
    ValueError
        If ``num_bits_per_symbol`` is not one of the above.
    """
    terms = _cho_yoon_terms(num_bits_per_symbol)
    g = 10.0 ** (np.asarray(esno_db, dtype=float) / 10.0)
    return sum(w * _erfc(np.sqrt(c * g)) for w, c in terms)


def qam_ber_rayleigh(esno_db, num_bits_per_symbol: int) -> np.ndarray:
    """Exact BER of Gray square M-QAM over flat Rayleigh fading with perfect CSI (coherent detection).

    The average of :func:`qam_ber_awgn` over the instantaneous Es/N0 ``g = |h|^2 Es/N0``
    with ``h ~ CN(0, 1)`` (``g`` exponential with mean ``gbar`` = Es/N0): each term
    ``erfc(sqrt(c g))`` becomes ``1 - sqrt(c gbar / (1 + c gbar))`` ([2]_, eq. 5.6 with
    the exponential PDF), computed as ``1 / ((1 + x)(1 + sqrt(x / (1 + x))))``, ``x = c gbar``,
    free of cancellation at high SNR. QPSK gives ``0.5 (1 - sqrt(gb / (1 + gb)))`` with
    ``gb = Eb/N0 = Es/N0 / 2`` ([3]_). The fading's coherence time does not matter to the
    average BER of uncoded symbols.

    Parameters
    ----------
    esno_db : float or array_like
        Average Es/N0 in dB (``E|h|^2 = 1``).
    num_bits_per_symbol : {2, 4, 6, 8}
        QPSK, 16-QAM, 64-QAM, 256-QAM.

    Output
    ------
    ber : numpy.ndarray of float
        Average bit error probability, same shape as ``esno_db``.

    Raises
    ------
    ValueError
        If ``num_bits_per_symbol`` is not one of the above.
    """
    terms = _cho_yoon_terms(num_bits_per_symbol)
    gbar = 10.0 ** (np.asarray(esno_db, dtype=float) / 10.0)
    out = np.zeros_like(gbar)
    for w, c in terms:
        x = c * gbar
        out = out + w / ((1.0 + x) * (1.0 + np.sqrt(x / (1.0 + x))))
    return out


def modulation_name(num_bits_per_symbol: int) -> str:
    """The usual name of a square QAM.

    Parameters
    ----------
    num_bits_per_symbol : {2, 4, 6, 8}

    Output
    ------
    name : str
        ``"QPSK"``, ``"16-QAM"``, ``"64-QAM"`` or ``"256-QAM"``.
    """
    m = _check_bits(num_bits_per_symbol)
    return "QPSK" if m == 2 else f"{2 ** m}-QAM"


def _gray_pam(bits_per_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, inverse)``: the binary-reflected Gray label of each PAM level index (levels
    ``-(L-1), ..., L-1`` in steps of 2, ``L = 2**bits_per_dim``) and the level index of each label."""
    idx = np.arange(2 ** bits_per_dim)
    labels = idx ^ (idx >> 1)
    inverse = np.empty_like(labels)
    inverse[labels] = idx
    return labels, inverse


def simulate_qam_ber(esno_db: float, num_bits_per_symbol: int, num_bits: int, seed: int,
                     fading: str = "none", chunk_symbols: int = 1 << 18) -> float:
    """Monte-Carlo BER of uncoded Gray square QAM, in numpy alone (independent of Sionna and of the
    closed forms).

    Each symbol carries ``m`` uniform random bits, ``m/2`` per real dimension, mapped by
    binary-reflected Gray labelling to the PAM levels ``-(L-1), ..., L-1`` (``L = 2**(m/2)``),
    scaled to unit average symbol energy (``sqrt(2 (M - 1) / 3)``). The channel is
    ``y = h x + n`` with ``n ~ CN(0, N0)``, ``N0 = 10**(-esno_db/10)``, and ``h = 1``
    (``fading="none"``) or i.i.d. ``CN(0, 1)`` per symbol (``"rayleigh"``). The receiver knows
    ``h`` (perfect CSI), equalises ``y / h`` and decides each dimension for the nearest
    level, then reads its Gray label.

    Parameters
    ----------
    esno_db : float
        Es/N0 in dB.
    num_bits_per_symbol : {2, 4, 6, 8}
        QPSK, 16-QAM, 64-QAM, 256-QAM.
    num_bits : int
        Bits to send (rounded up to whole symbols).
    seed : int
        Seed of ``numpy.random.default_rng``.
    fading : {"none", "rayleigh"}
        AWGN alone, or Rayleigh block fading of one symbol per block with perfect CSI.
    chunk_symbols : int
        Symbols drawn at a time (bounds the memory).

    Output
    ------
    ber : float
        Bit errors over bits sent.

    Raises
    ------
    ValueError
        For a ``num_bits_per_symbol``, ``num_bits`` or ``fading`` out of range.
    """
    m = _check_bits(num_bits_per_symbol)
    if fading not in ("none", "rayleigh"):
        raise ValueError(f"fading must be 'none' or 'rayleigh', got {fading!r}")
    if int(num_bits) < 1:
        raise ValueError(f"num_bits must be a positive integer, got {num_bits!r}")
    rng = np.random.default_rng(seed)
    bpd = m // 2
    L = 2 ** bpd
    labels, inverse = _gray_pam(bpd)
    scale = math.sqrt(2.0 * (2 ** m - 1) / 3.0)   # E|x|^2 = 2 (L^2 - 1) / 3 = 2 (M - 1) / 3 before scaling
    no = 10.0 ** (-float(esno_db) / 10.0)
    n_sym = -(-int(num_bits) // m)
    errors = 0
    done = 0
    while done < n_sym:
        n = min(chunk_symbols, n_sym - done)
        lab = rng.integers(0, L, size=(2, n))               # the Gray labels of the I and Q dimensions
        x = ((2 * inverse[lab] - (L - 1)) / scale)
        s = x[0] + 1j * x[1]
        noise = math.sqrt(no / 2.0) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
        if fading == "rayleigh":
            h = math.sqrt(0.5) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
            r = (h * s + noise) / h                          # zero-forcing with perfect CSI
        else:
            r = s + noise
        z = np.stack([r.real, r.imag]) * scale
        idx = np.clip(np.rint((z + (L - 1)) / 2.0), 0, L - 1).astype(np.int64)   # nearest level
        diff = labels[idx] ^ lab
        errors += int(sum(((diff >> b) & 1).sum() for b in range(bpd)))
        done += n
    return errors / (n_sym * m)


def _as_spec(spec) -> Optional[dict]:
    """A component spec as a mapping: ``"name"`` -> ``{"type": "name"}``; None stays None."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return {"type": spec}
    return spec if isinstance(spec, dict) else None


def _one_hop(channel) -> Optional[dict]:
    """The hop channel mapping of ``channel`` (missing: AWGN); a one-hop multihop chain is its hop;
    None for anything else (more hops, a sweep, a list of hops)."""
    if channel is None:
        return {"type": "awgn"}
    ch = _as_spec(channel)
    if ch is None:
        return None
    if ch.get("type", "awgn") == "multihop":
        if ch.get("hops", 2) != 1 or isinstance(ch.get("hops"), bool):
            return None
        hop = ch.get("hop")
        if isinstance(hop, list) and len(hop) == 1:
            hop = hop[0]
        return _one_hop(hop) if hop is None or isinstance(hop, (dict, str)) else None
    return ch


def theory_curve(scheme_spec: dict, channel_spec) -> Optional[tuple[str, Callable]]:
    """The closed-form BER curve of a scenario's scheme on its channel, when there is one.

    A curve exists for an uncoded separation scheme (``type`` ``separation`` or ``sscc``,
    ``channel_code: {type: none}``, ``modulation: {type: qam, num_bits_per_symbol: m}``; no
    modulation means the scheme's default 16-QAM) on

    - ``{type: awgn}`` (or no channel): :func:`qam_ber_awgn`, label e.g. ``"QPSK theory (AWGN)"``;
    - ``{type: rayleigh}`` with ``csi: perfect`` and ``k_factor: 0`` (the defaults), any
      ``coherence``: :func:`qam_ber_rayleigh`, label e.g. ``"16-QAM theory (Rayleigh, perfect CSI)"``;
    - a ``multihop`` channel with ``hops: 1``: as its ``hop`` (no ``hop``: AWGN).

    Parameters
    ----------
    scheme_spec : dict
        One entry of a scenario's ``schemes`` (as in the YAML).
    channel_spec : dict or None
        A scenario's ``channel`` mapping (of one chain of a channel sweep).

    Output
    ------
    curve : (str, callable) or None
        ``(label, f)`` with ``f(esno_db) -> ber`` (arrays in and out), or None when no
        closed form applies (coded schemes, other modulations or channels, more hops,
        csi ``pilots`` or ``none``, a Rician ``k_factor > 0``, swept values).
    """
    if not isinstance(scheme_spec, dict) or scheme_spec.get("type") not in ("separation", "sscc"):
        return None
    code = _as_spec(scheme_spec.get("channel_code"))
    if code is None or code.get("type") != "none":
        return None
    mod = _as_spec(scheme_spec.get("modulation")) or {"type": "qam", "num_bits_per_symbol": 4}
    m = mod.get("num_bits_per_symbol", 4)
    if mod.get("type") != "qam" or isinstance(m, bool) or m not in ALLOWED_BITS:
        return None
    hop = _one_hop(channel_spec)
    if hop is None:
        return None
    name = modulation_name(m)
    kind = hop.get("type", "awgn")
    if kind == "awgn":
        return f"{name} theory (AWGN)", lambda esno_db: qam_ber_awgn(esno_db, m)
    if kind == "rayleigh":
        csi, k = hop.get("csi", "perfect"), hop.get("k_factor", 0)
        if csi != "perfect" or isinstance(k, (bool, list)) or not isinstance(k, (int, float)) or k != 0:
            return None
        if isinstance(hop.get("coherence"), list):   # a swept option: not one chain
            return None
        return f"{name} theory (Rayleigh, perfect CSI)", lambda esno_db: qam_ber_rayleigh(esno_db, m)
    return None
