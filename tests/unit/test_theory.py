"""Closed-form BER of uncoded Gray square QAM (linksim.phy.theory), its numpy simulation, and the theory
lines of the ber_vs_snr plot."""

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linksim.phy.theory import (modulation_name, qam_ber_awgn, qam_ber_rayleigh, simulate_qam_ber,
                                theory_curve)

SNRS = np.array([-5.0, 0.0, 3.0, 7.5, 12.0, 20.0, 30.0])
UNCODED = {"type": "separation", "label": "uncoded", "codec": {"type": "jpeg"}, "channel_code": {"type": "none"}}


def _q(x):
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def test_qpsk_over_awgn_is_q_of_the_square_root_of_es_over_n0():
    g = 10 ** (SNRS / 10)
    want = [_q(math.sqrt(x)) for x in g]
    np.testing.assert_allclose(qam_ber_awgn(SNRS, 2), want, rtol=1e-12)
    np.testing.assert_allclose(qam_ber_awgn(SNRS, 2), [0.5 * math.erfc(math.sqrt(x / 2)) for x in g], rtol=1e-12)


def test_qpsk_over_rayleigh_with_perfect_csi_is_the_textbook_average():
    gb = 10 ** (SNRS / 10) / 2   # Eb/N0
    np.testing.assert_allclose(qam_ber_rayleigh(SNRS, 2), 0.5 * (1 - np.sqrt(gb / (1 + gb))), rtol=1e-12)


def test_sixteen_qam_is_the_known_three_term_sum():
    a = np.sqrt(10 ** (SNRS / 10) / 10)
    erfc = np.vectorize(math.erfc)
    np.testing.assert_allclose(qam_ber_awgn(SNRS, 4), (3 * erfc(a) + 2 * erfc(3 * a) - erfc(5 * a)) / 8, rtol=1e-12)


def test_sixteen_qam_at_high_snr_matches_the_nearest_neighbour_approximation():
    # (4 / log2 M)(1 - 1/sqrt M) Q(sqrt(3 Es / ((M - 1) N0))) = (3/4) Q(sqrt(Es / (5 N0))) for M = 16
    for snr in (16.0, 20.0):
        approx = 0.75 * _q(math.sqrt(10 ** (snr / 10) / 5))
        assert float(qam_ber_awgn(snr, 4)) == pytest.approx(approx, rel=0.03)


@pytest.mark.parametrize("m", [2, 4, 6, 8])
@pytest.mark.parametrize("curve", [qam_ber_awgn, qam_ber_rayleigh])
def test_ber_is_at_most_one_half_and_decreases_with_snr(curve, m):
    grid = np.linspace(-20, 40, 601)
    ber = curve(grid, m)
    assert ber.shape == grid.shape
    assert np.all(ber <= 0.5) and np.all(ber >= 0)
    assert np.all(np.diff(ber) <= 0)
    assert np.all(np.diff(ber)[ber[1:] > 1e-300] < 0)   # strictly, until it underflows (AWGN QPSK near 33 dB)
    assert float(curve(-60.0, m)) == pytest.approx(0.5, abs=1e-3)   # nothing gets through: a coin toss


def test_larger_constellations_err_more_at_the_same_es_over_n0():
    for curve in (qam_ber_awgn, qam_ber_rayleigh):
        bers = [float(curve(15.0, m)) for m in (2, 4, 6, 8)]
        assert bers == sorted(bers)


def test_bad_bits_per_symbol_are_refused():
    for bad in (1, 3, 5, 10, True):
        with pytest.raises(ValueError, match="num_bits_per_symbol"):
            qam_ber_awgn(10.0, bad)
    with pytest.raises(ValueError, match="fading"):
        simulate_qam_ber(10.0, 2, 100, seed=0, fading="rician")


def test_modulation_names():
    assert [modulation_name(m) for m in (2, 4, 6, 8)] == ["QPSK", "16-QAM", "64-QAM", "256-QAM"]


# The simulation sends N_BITS = 2**22 bits (N_BITS / m symbols), ~0.2 s per point. Its standard deviation is at
# most sqrt(p / n_symbols): the binomial sqrt(p (1 - p) / N_BITS) inflated by sqrt(m) because the bits of one
# symbol may err together (errors per symbol <= m, so Var <= p / n_symbols). The test allows 5 of those (QPSK at
# p = 2e-3: 1.5 % sd, 7.7 % tolerance; 16-QAM at p = 2e-3: 2.2 % sd, 11 % tolerance). Seeded, so deterministic.
N_BITS = 2 ** 22


@pytest.mark.parametrize("m, fading, snrs", [
    (2, "none", (2.0, 6.0, 9.0)),        # BER 0.10, 0.023, 0.0024
    (2, "rayleigh", (5.0, 15.0, 25.0)),  # BER 0.11, 0.015, 0.0016
    (4, "none", (8.0, 12.0, 16.0)),      # BER 0.098, 0.028, 0.0018
    (4, "rayleigh", (10.0, 20.0, 28.0)),  # BER 0.12, 0.019, 0.0031
])
def test_the_numpy_simulation_matches_the_closed_form(m, fading, snrs):
    closed = qam_ber_awgn if fading == "none" else qam_ber_rayleigh
    for i, snr in enumerate(snrs):
        p = float(closed(snr, m))
        assert 1e-3 <= p <= 1.5e-1
        sim = simulate_qam_ber(snr, m, N_BITS, seed=100 * m + i, fading=fading)
        sd = math.sqrt(p / (N_BITS / m))
        assert abs(sim - p) <= 5 * sd, (snr, sim, p, (sim - p) / sd)


def test_the_simulation_is_seeded_and_error_free_without_noise():
    assert simulate_qam_ber(5.0, 4, 10_000, seed=3) == simulate_qam_ber(5.0, 4, 10_000, seed=3)
    for m in (2, 4, 6, 8):
        assert simulate_qam_ber(200.0, m, 8_000, seed=1) == 0.0
        assert simulate_qam_ber(200.0, m, 8_000, seed=1, fading="rayleigh") < 1e-3   # only the deepest fades


def test_the_theory_module_imports_without_tensorflow():
    # linksim/phy/__init__.py loads Sionna; the module itself must not: load its file on its own
    path = Path(__file__).resolve().parents[2] / "linksim" / "phy" / "theory.py"
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('theory', {str(path)!r})\n"
            "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
            "assert float(mod.qam_ber_awgn(10.0, 2)) > 0\n"
            "assert 'tensorflow' not in sys.modules and 'sionna' not in sys.modules, 'tensorflow loaded'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert importlib.util.find_spec("linksim.phy.theory") is not None


# ---------------------------------------------------------------- theory_curve


def _scheme(m=None, code=("none",), kind="separation"):
    s = {"type": kind, "label": "s", "codec": {"type": "jpeg"}}
    if code:
        s["channel_code"] = {"type": code[0]}
    if m is not None:
        s["modulation"] = {"type": "qam", "num_bits_per_symbol": m}
    return s


def test_theory_curve_labels_awgn_and_rayleigh_with_perfect_csi():
    assert theory_curve(_scheme(2), {"type": "awgn"})[0] == "QPSK theory (AWGN)"
    assert theory_curve(_scheme(2), None)[0] == "QPSK theory (AWGN)"
    assert theory_curve(_scheme(kind="sscc"), {"type": "awgn"})[0] == "16-QAM theory (AWGN)"   # default 16-QAM
    assert theory_curve(_scheme(6), {"type": "rayleigh"})[0] == "64-QAM theory (Rayleigh, perfect CSI)"
    for coherence in ("image", "symbol", 8):
        ch = {"type": "rayleigh", "coherence": coherence, "csi": "perfect", "k_factor": 0.0}
        assert theory_curve(_scheme(4), ch)[0] == "16-QAM theory (Rayleigh, perfect CSI)"
    label, f = theory_curve(_scheme(8), {"type": "awgn"})
    assert label == "256-QAM theory (AWGN)"
    np.testing.assert_array_equal(f(np.array([0.0, 10.0])), qam_ber_awgn(np.array([0.0, 10.0]), 8))
    _, f = theory_curve(_scheme(2), {"type": "rayleigh"})
    assert float(f(10.0)) == float(qam_ber_rayleigh(10.0, 2))


def test_theory_curve_treats_a_one_hop_chain_as_its_hop():
    assert theory_curve(_scheme(2), {"type": "multihop", "hops": 1})[0] == "QPSK theory (AWGN)"
    one = {"type": "multihop", "hops": 1, "hop": {"type": "rayleigh", "coherence": "symbol"}}
    assert theory_curve(_scheme(2), one)[0] == "QPSK theory (Rayleigh, perfect CSI)"


@pytest.mark.parametrize("scheme, channel", [
    (_scheme(2, code=("ldpc_80211n",)), {"type": "awgn"}),                       # coded
    (_scheme(2, code=("ideal",)), {"type": "awgn"}),
    (_scheme(2, code=None), {"type": "awgn"}),                                   # the default code is LDPC
    ({"type": "deepjscc", "label": "d"}, {"type": "awgn"}),                       # not a separation scheme
    (_scheme(2), {"type": "multihop", "hops": 2, "relay": "df"}),                # more than one hop
    (_scheme(2), {"type": "multihop"}),                                          # default two hops
    (_scheme(2), {"type": "multihop", "hops": [1, 2]}),                          # a sweep, not one chain
    (_scheme(2), {"type": "rayleigh", "csi": "none"}),
    (_scheme(2), {"type": "rayleigh", "csi": "pilots", "pilots": 4}),
    (_scheme(2), {"type": "rayleigh", "k_factor": 3.0}),                         # Rician
    (_scheme(2), {"type": "rayleigh", "csi": ["perfect", "none"]}),              # swept
    (_scheme(2), {"type": "multihop", "hops": 1, "hop": {"type": "rayleigh", "csi": "none"}}),
    (_scheme(2), {"type": "some_other_channel"}),
])
def test_theory_curve_is_none_without_a_closed_form(scheme, channel):
    assert theory_curve(scheme, channel) is None


# ---------------------------------------------------------------- the ber_vs_snr plot


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot closes (it closes every figure it draws)."""
    import linksim.plotting as plotting

    seen, close = [], plotting.plt.close

    def keep(fig=None):
        seen.append(fig)
        close(fig)

    monkeypatch.setattr(plotting.plt, "close", keep)
    return seen


def _rows(label, snrs, bers, **extra):
    return pd.DataFrame({"scheme": label, "snr_db": snrs, "ber": bers, "scheme_type": "SeparationScheme", **extra})


def test_the_ber_plot_draws_the_theory_dotted_in_the_schemes_colour(tmp_path, figures):
    from linksim.plotting import PLOTS

    snrs = [0.0, 4.0, 8.0, 16.0]   # QPSK theory: 0.16 ... 1.4e-10
    df = pd.concat([_rows("qpsk uncoded", snrs, qam_ber_awgn(np.array(snrs), 2)),
                    _rows("ldpc", snrs, [1e-1, 1e-2, 0.0, 0.0])], ignore_index=True)
    scenario = {"name": "t", "channel": {"type": "awgn"},
                "schemes": [{**UNCODED, "label": "qpsk uncoded", "modulation": {"type": "qam",
                                                                                "num_bits_per_symbol": 2}},
                            {"type": "separation", "label": "ldpc", "channel_code": {"type": "ldpc_80211n"}}]}
    path = PLOTS.get("ber_vs_snr")(df, scenario, tmp_path)
    assert path == tmp_path / "ber_vs_snr.png" and path.stat().st_size > 0
    (fig,) = figures
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    theory = lines["QPSK theory (AWGN)"]
    assert theory.get_linestyle() == ":" and theory.get_color() == lines["qpsk uncoded"].get_color()
    x, y = theory.get_data()
    assert x.min() == 0.0 and x.max() == 16.0 and len(x) > 100          # a dense grid over the SNR range
    np.testing.assert_allclose(y[np.isfinite(y)], qam_ber_awgn(x, 2)[np.isfinite(y)])
    assert np.isnan(y[qam_ber_awgn(x, 2) < 1e-7]).all() and np.isnan(y).any()   # below 1e-7 not drawn
    assert sum("theory" in lab for lab in lines) == 1                     # none for the coded scheme
    assert "closed-form BER" in PLOTS.get("ber_vs_snr").__doc__


def test_the_ber_plot_has_no_theory_line_for_coded_schemes(tmp_path, figures):
    from linksim.plotting import PLOTS

    df = _rows("ldpc", [0.0, 5.0], [1e-1, 1e-3])
    scenario = {"name": "t", "schemes": [{"type": "separation", "label": "ldpc"}]}
    assert PLOTS.get("ber_vs_snr")(df, scenario, tmp_path).exists()
    assert [line.get_label() for line in figures[0].axes[0].get_lines()] == ["ldpc"]


def test_each_chain_of_a_channel_sweep_gets_its_own_theory(tmp_path, figures):
    from linksim.plotting import PLOTS

    snrs = [5.0, 15.0, 25.0]
    ray = qam_ber_rayleigh(np.array(snrs), 4)
    df = pd.concat([_rows("u", snrs, ray, hops=1), _rows("u", snrs, 2 * ray, hops=2)], ignore_index=True)
    scenario = {"name": "t", "schemes": [{**UNCODED, "label": "u"}],
                "channel": {"type": "multihop", "hops": [1, 2], "relay": "af", "hop": {"type": "rayleigh"}}}
    assert PLOTS.get("ber_vs_snr")(df, scenario, tmp_path).exists()
    one_hop, two_hops = figures[0].axes[:2]
    assert one_hop.get_title() == "1 hop" and two_hops.get_title() == "2 hops"
    assert "16-QAM theory (Rayleigh, perfect CSI)" in [line.get_label() for line in one_hop.get_lines()]
    assert not any("theory" in line.get_label() for line in two_hops.get_lines())   # no closed form for 2 hops


def test_a_swept_csi_has_the_theory_only_in_the_perfect_csi_panel(tmp_path, figures):
    # a one-hop channel's options swept (linksim.channel_sweep): one panel per csi value
    from linksim.plotting import PLOTS

    snrs = [5.0, 15.0, 25.0]
    ray = qam_ber_rayleigh(np.array(snrs), 2)
    df = pd.concat([_rows("u", snrs, ray, hops=1, channel_csi="perfect"),
                    _rows("u", snrs, 3 * ray, hops=1, channel_csi="none")], ignore_index=True)
    scenario = {"name": "t", "schemes": [{**UNCODED, "label": "u", "modulation": {"type": "qam",
                                                                                 "num_bits_per_symbol": 2}}],
                "channel": {"type": "rayleigh", "coherence": "symbol", "csi": ["perfect", "none"]}}
    assert PLOTS.get("ber_vs_snr")(df, scenario, tmp_path).exists()
    perfect, none = figures[0].axes[:2]
    assert perfect.get_title() == "csi perfect" and none.get_title() == "csi none"
    assert "QPSK theory (Rayleigh, perfect CSI)" in [line.get_label() for line in perfect.get_lines()]
    assert not any("theory" in line.get_label() for line in none.get_lines())
