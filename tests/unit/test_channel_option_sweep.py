"""Channel sweeps over the options of a one-hop channel (``channel: {type: rayleigh, csi: [perfect, none]}``):
the chains, their columns and tags, validation, ``quick.channel_params`` and a tiny run through a test channel."""

import pandas as pd
import pytest
import yaml

from linksim.channel_sweep import (channel_variants, chain_count, is_sweep, row_variant_key, sweep_axes,
                                   swept_channel_options, variant_columns)
from tests.hostile.validate_helpers import validate_text
from tests.unit.test_channel_sweep import BASE

CSI = {"type": "rayleigh", "coherence": "image", "csi": ["perfect", "none"]}
TWO = {"type": "rayleigh", "k_factor": [0, 10], "coherence": "image", "csi": ["perfect", "pilots", "none"]}



# ------------------------------------------------------------------ the chains (no catalogue, no TensorFlow)
def test_a_swept_option_makes_one_chain_per_value():
    assert is_sweep(CSI) and swept_channel_options(CSI) == ["csi"]
    assert sweep_axes(CSI) == {"channel_csi": ["perfect", "none"]} and chain_count(CSI) == 2
    assert variant_columns(CSI) == ["hops", "channel_csi"]
    vs = channel_variants(CSI)
    assert [v.spec for v in vs] == [{"type": "rayleigh", "coherence": "image", "csi": "perfect"},
                                    {"type": "rayleigh", "coherence": "image", "csi": "none"}]
    assert [v.columns for v in vs] == [{"hops": 1, "channel_csi": "perfect"}, {"hops": 1, "channel_csi": "none"}]
    assert [v.tag for v in vs] == ["csi perfect", "csi none"]
    # results.csv gives the cells back as text, numbers or NaN
    assert row_variant_key({"hops": "1", "channel_csi": "none"}, variant_columns(CSI)) == vs[1].key


def test_two_swept_options_vary_in_the_order_written():
    assert swept_channel_options(TWO) == ["k_factor", "csi"] and chain_count(TWO) == 6
    assert variant_columns(TWO) == ["hops", "channel_k_factor", "channel_csi"]
    vs = channel_variants(TWO)
    assert [(v.spec["k_factor"], v.spec["csi"]) for v in vs] == [
        (0, "perfect"), (0, "pilots"), (0, "none"), (10, "perfect"), (10, "pilots"), (10, "none")]
    assert all(v.spec["coherence"] == "image" for v in vs)
    assert vs[5].tag == "k_factor 10, csi none" and vs[0].columns == {"hops": 1, "channel_k_factor": 0,
                                                                      "channel_csi": "perfect"}
    assert len({v.key for v in vs}) == len({v.tag for v in vs}) == 6
    assert row_variant_key({"hops": 1.0, "channel_k_factor": "10.0", "channel_csi": "pilots"},
                           variant_columns(TWO)) == vs[4].key


def test_a_channel_without_lists_is_one_chain_as_before():
    for ch in ({"type": "rayleigh", "csi": "perfect", "k_factor": 1.5}, {"type": "awgn"}):
        assert not is_sweep(ch) and sweep_axes(ch) == {} and swept_channel_options(ch) == []
        (v,) = channel_variants(ch)
        assert v.spec == ch and v.columns == {"hops": 1} and variant_columns(ch) == ["hops"]
    # a list of lists is one value, not a sweep
    taps = {"type": "rayleigh", "taps": [[1.0, 0.0], [0.5, 0.5]]}
    assert not is_sweep(taps) and channel_variants(taps)[0].spec == taps


def test_multihop_sweeps_are_unchanged():
    ch = {"type": "multihop", "hops": [1, 2], "relay": "qf", "relay_params": {"bits": [2, 4]},
          "hop": {"type": "rayleigh", "csi": ["perfect", "none"]}}
    # a list inside hop: is not swept, nor is a multihop field that takes a list (relay per relay)
    assert swept_channel_options(ch) == [] and variant_columns(ch) == ["hops", "relay_bits"]
    assert [v.columns for v in channel_variants(ch)] == [{"hops": 1, "relay_bits": None},
                                                         {"hops": 2, "relay_bits": 2}, {"hops": 2, "relay_bits": 4}]
    assert channel_variants(ch)[1].spec["hop"] == {"type": "rayleigh", "csi": ["perfect", "none"]}
    fixed = {"type": "multihop", "hops": 3, "relay": ["af", "df"]}
    assert not is_sweep(fixed) and channel_variants(fixed)[0].columns == {"hops": 3}
    assert [v.tag for v in channel_variants(ch)] == ["1 hop", "2 hops, bits 2", "2 hops, bits 4"]


def test_multihop_fields_of_another_channel_are_not_its_options():
    # hops / relay_params as lists on a one-hop channel keep the multihop rules (validation refuses them)
    ch = {"type": "rayleigh", "hops": [1, 2], "hop_snr_db": ["sweep", 10], "csi": ["perfect", "none"]}
    assert swept_channel_options(ch) == ["csi"]


# ------------------------------------------------------------------ validation


def test_a_csi_and_k_factor_sweep_validates(capsys, tmp_path):
    rc, err = validate_text(capsys, tmp_path, BASE + "channel: {type: rayleigh, coherence: image, "
                                                     "csi: [perfect, pilots, none], k_factor: [0, 1, 10]}\n")
    assert rc == 0, err


@pytest.mark.parametrize("channel, field, words", [
    ("{type: rayleigh, csi: [perfect, bogus]}", "channel.csi[1]", "(got 'bogus')"),
    ("{type: rayleigh, k_factor: [0, 1, -1]}", "channel.k_factor[2]", ">= 0"),
    ("{type: rayleigh, csi: [perfect, none, perfect]}", "channel.csi[2]", "twice (items 0 and 2)"),
    ("{type: rayleigh, k_factor: [1, 1.0]}", "channel.k_factor[1]", "twice"),
    ("{type: rayleigh, coherence: symbol, csi: [perfect, pilots]}", "channel.pilots", "in the chain csi pilots"),
    ("{type: rayleigh, csi: [perfect, none], hops: [1, 2]}", "channel.hops", "only a multihop channel"),
])
def test_bad_option_sweeps_name_the_field(capsys, tmp_path, channel, field, words):
    rc, err = validate_text(capsys, tmp_path, BASE + f"channel: {channel}\n")
    assert rc == 2 and f"field '{field}'" in err and words in err, err


def test_an_unknown_swept_option_names_the_option_not_an_item(capsys, tmp_path):
    rc, err = validate_text(capsys, tmp_path, BASE + "channel: {type: awgn, foo: [1, 2]}\n")
    assert rc == 2 and "field 'channel.foo'" in err and "takes no options" in err, err


def test_a_huge_option_sweep_is_refused(capsys, tmp_path):
    text = BASE + f"channel: {{type: rayleigh, k_factor: {list(range(400))}, pilots: {list(range(1, 400))}}}\n"
    rc, err = validate_text(capsys, tmp_path, text)
    assert rc == 2 and "159,600 chains" in err and "limit" in err, err


def test_train_channel_is_one_chain(capsys, tmp_path):
    text = BASE.replace("schemes: [{type: linear}]", "schemes:\n  - type: deepjscc\n    snr_train_db: 10\n"
                                                     "    train_channel: {type: rayleigh, csi: [perfect, none]}")
    rc, err = validate_text(capsys, tmp_path, text)
    assert rc == 2 and "field 'schemes[0].train_channel'" in err and "one chain" in err, err


def test_quick_channel_params_shrink_the_sweep(capsys, tmp_path):
    from linksim.scenario import load_scenario

    text = BASE + ("channel: {type: rayleigh, coherence: image, csi: [perfect, pilots, none], k_factor: [0, 10]}\n"
                   "quick: {channel_params: {csi: [perfect, none]}}\n")
    rc, err = validate_text(capsys, tmp_path, text)
    assert rc == 0, err
    scen = load_scenario(tmp_path / "s.yaml")
    assert len(channel_variants(scen.data["channel"])) == 6
    q = scen.quick()
    assert [v.tag for v in channel_variants(q.data["channel"])] == [
        "csi perfect, k_factor 0", "csi perfect, k_factor 10", "csi none, k_factor 0", "csi none, k_factor 10"]
    assert scen.data["channel"]["csi"] == ["perfect", "pilots", "none"]  # the full scenario is untouched
    for quick, field, words in (
            ("{channel_params: {csi: [perfect, nope]}}", "quick.channel_params.csi[1]", "(got 'nope')"),
            ("{channel_params: {csi: nope}}", "quick.channel_params.csi", "(got 'nope')"),
            ("{channel_params: {type: awgn}}", "quick.channel_params.type", "cannot be replaced"),
            ("{channel_params: {csi: [none, none]}}", "quick.channel_params.csi[1]", "twice"),
            ("{channel_params: [csi]}", "quick.channel_params", "object"),
            ("{hops: [1]}", "quick.hops", "multihop")):
        rc, err = validate_text(capsys, tmp_path, text.replace("{channel_params: {csi: [perfect, none]}}", quick))
        assert rc == 2 and f"field '{field}'" in err and words in err, (quick, err)
    # a single value replaces a swept option: one chain at smoke size
    rc, err = validate_text(capsys, tmp_path, text.replace("[perfect, none]}}", "perfect, k_factor: 0}}"))
    assert rc == 0, err
    assert len(channel_variants(load_scenario(tmp_path / "s.yaml").quick().data["channel"])) == 1


def test_quick_channel_params_are_for_a_one_hop_channel(capsys, tmp_path):
    rc, err = validate_text(capsys, tmp_path, BASE + "channel: {type: multihop, hops: [1, 2], relay: af}\n"
                                                     "quick: {channel_params: {hops: 1}}\n")
    assert rc == 2 and "field 'quick.channel_params'" in err and "quick.hops" in err, err


# ------------------------------------------------------------------ a run through a test channel (a plug-in)
@pytest.fixture
def scaled_awgn():
    """A one-hop channel registered for the test (and removed after): AWGN whose noise is ``gain`` times larger."""
    from sionna.phy.channel import AWGN

    from linksim.channels.awgn import no_to_snr_db, snr_db_to_no
    from linksim.channels.base import Channel, apply_mask, symbol_mask
    from linksim.registry import CHANNELS

    class ScaledAWGN(Channel):
        """AWGN with ``gain`` times the noise variance of the SNR (a test channel)."""

        def __init__(self, gain: float = 1.0, **kwargs):
            super().__init__(**kwargs)
            if isinstance(gain, bool) or not isinstance(gain, (int, float)) or gain <= 0:
                raise ValueError(f"gain must be a number > 0, got {gain!r}")
            self.gain = float(gain)
            self._awgn = AWGN()

        def call(self, x, snr_db, num_symbols=None):
            no = snr_db_to_no(snr_db) * self.gain
            y = apply_mask(self._awgn(x, no), symbol_mask(num_symbols, x))
            return {"y": y, "no": no, "snr_db": no_to_snr_db(no), "state": {}}

    name = "test_scaled_awgn"
    CHANNELS.register(name)(ScaledAWGN)
    try:
        yield name
    finally:
        CHANNELS._entries.pop(name, None)


SCENARIO = {
    "name": "option_sweep", "seed": 5,
    "dataset": {"name": "embedded", "test_size": 8},
    "channel": {"type": "test_scaled_awgn", "gain": [1.0, 10.0]},
    "snr_db": [0, 20], "rate": {"channel_uses": 392},
    "schemes": [{"type": "uncoded", "label": "Uncoded"}],
    "metrics": ["psnr"],
    "plots": ["psnr_vs_snr", "table"],
    "evaluation": {"example_images": 2},
    "quick": {"channel_params": {"gain": [10.0]}, "snr_db": [20]},
}


def _write(tmp_path, scen=SCENARIO):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(scen, sort_keys=False))
    return p


def test_plugin_channel_option_sweep_validates_names_and_values_once(scaled_awgn, capsys, tmp_path):
    text = yaml.safe_dump({**SCENARIO, "channel": {"type": scaled_awgn, "gain": [1.0, 2.0], "bogus": [1, 2]}})
    rc, err = validate_text(capsys, tmp_path, text)
    assert rc == 2 and "field 'channel.bogus'" in err and "has no option(s) bogus" in err, err
    text = yaml.safe_dump({**SCENARIO, "channel": {"type": scaled_awgn, "gain": [2, 2.0]}})
    rc, err = validate_text(capsys, tmp_path, text)
    assert rc == 2 and "field 'channel.gain[1]'" in err and "twice" in err, err
    text = yaml.safe_dump({**SCENARIO, "quick": {"channel_params": {"nope": 1}}})
    rc, err = validate_text(capsys, tmp_path, text)
    assert rc == 2 and "field 'quick.channel_params.nope'" in err and "has no option(s) nope" in err, err


def test_a_run_has_one_row_per_chain_resumes_and_plots(scaled_awgn, tmp_path, capsys):
    from linksim.cli import main
    from linksim.plotting import _chains, _rate_note
    from linksim.run.evaluation import run_scenario
    from linksim.scenario import load_scenario

    path = _write(tmp_path)
    out = tmp_path / "run"
    df = run_scenario(load_scenario(path), out, progress=False)
    assert len(df) == 2 * 2  # 2 chains x 2 SNRs
    assert "channel_gain" in df.columns and set(df["hops"]) == {1}
    assert sorted(df["channel_gain"]) == [1.0, 1.0, 10.0, 10.0] and set(df["relay"]) == {"none"}
    psnr = df.set_index(["channel_gain", "snr_db"])["psnr_db"]
    assert psnr[(1.0, 20.0)] > psnr[(10.0, 20.0)] + 1.0  # ten times the noise hurts
    scenario = yaml.safe_load((out / "scenario.yaml").read_text())
    assert [t for t, _ in _chains(df, scenario)] == ["gain 1", "gain 10"]
    assert all(len(g) == 2 for _, g in _chains(df, scenario))
    assert _rate_note(scenario, df)  # a one-hop channel: no multihop part, no crash
    assert (out / "psnr_vs_snr.png").stat().st_size > 10_000
    assert "| scheme | hops | channel_gain |" in (out / "table.md").read_text()
    import json

    meta = json.loads((out / "meta.json").read_text())
    assert [c["channel_gain"] for c in meta["chains"]] == [1.0, 10.0]
    # resume: nothing recomputed
    before = (out / "results.csv").read_text()
    df2 = run_scenario(load_scenario(path), out, progress=False, plots=False)
    assert len(df2) == len(df) and (out / "results.csv").read_text() == before
    # a lost chain is recomputed alone, with the same numbers (a point's seed is its scheme, chain and SNR)
    lines = before.splitlines()
    col = lines[0].split(",").index("channel_gain")
    kept = [r for r in lines[1:] if float(r.split(",")[col]) != 10.0]
    assert len(kept) == 2
    (out / "results.csv").write_text("\n".join([lines[0]] + kept) + "\n")
    df3 = run_scenario(load_scenario(path), out, progress=False, plots=False)
    key = ["channel_gain", "snr_db"]
    pd.testing.assert_series_equal(df.sort_values(key).reset_index(drop=True)["psnr_db"],
                                   df3.sort_values(key).reset_index(drop=True)["psnr_db"])
    # the CLI summary names the chain; --quick runs the quick.channel_params chain only
    capsys.readouterr()
    assert main(["run", str(path), "--quick", "--out", str(tmp_path / "quick"), "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert summary.splitlines()[0].split()[:4] == ["scheme", "hops", "channel_gain", "snr_db"], summary
    q = pd.read_csv(tmp_path / "quick" / "results.csv")
    assert list(q["channel_gain"]) == [10.0] and list(q["snr_db"]) == [20.0]
