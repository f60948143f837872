"""Channel sweeps (``channel.hops`` and relay options as lists): the chains, their keys, validation."""

import pytest

from linksim.channel_sweep import (channel_variants, is_sweep, max_hops, row_variant_key, sweep_axes,
                                   variant_columns)
from tests.hostile.validate_helpers import validate_text

QF_SWEEP = {"type": "multihop", "hops": [1, 2, 3], "relay": "qf", "relay_params": {"bits": [2, 4], "clip": 3.0}}


def test_one_chain_when_nothing_is_swept():
    ch = {"type": "multihop", "hops": 2, "relay": "df"}
    assert not is_sweep(ch) and sweep_axes(ch) == {}
    (v,) = channel_variants(ch)
    assert v.spec == ch and v.columns == {"hops": 2} and v.tag == "2 hops"
    assert channel_variants({"type": "awgn"})[0].columns == {"hops": 1}


def test_hops_and_relay_option_sweep_in_order_with_one_one_hop_chain():
    assert is_sweep(QF_SWEEP) and sweep_axes(QF_SWEEP) == {"hops": [1, 2, 3], "relay_bits": [2, 4]}
    vs = channel_variants(QF_SWEEP)
    # a one-hop chain has no relay: it appears once, without relay options
    assert [v.columns for v in vs] == [{"hops": 1, "relay_bits": None}, {"hops": 2, "relay_bits": 2},
                                       {"hops": 2, "relay_bits": 4}, {"hops": 3, "relay_bits": 2},
                                       {"hops": 3, "relay_bits": 4}]
    assert vs[0].spec == {"type": "multihop", "hops": 1}
    assert vs[2].spec == {"type": "multihop", "hops": 2, "relay": "qf", "relay_params": {"bits": 4, "clip": 3.0}}
    assert [v.tag for v in vs[:2]] == ["1 hop", "2 hops, bits 2"]
    assert variant_columns(QF_SWEEP) == ["hops", "relay_bits"] and max_hops(QF_SWEEP) == 3
    assert len({v.key for v in vs}) == len(vs)


def test_row_keys_read_back_from_the_results_table():
    cols = ["hops", "relay_bits"]
    # results.csv cells come back as strings, floats or NaN
    assert row_variant_key({"hops": "2", "relay_bits": "4.0"}, cols) == (2, 4)
    assert row_variant_key({"hops": 1.0, "relay_bits": float("nan")}, cols) == (1, None)
    assert row_variant_key({"hops": 1, "relay_bits": ""}, cols) == (1, None)
    assert row_variant_key({"hops": 3}, cols) == (3, None)
    assert row_variant_key({"hops": 2, "relay_bits": 2}, cols) == channel_variants(QF_SWEEP)[1].key


BASE = """\
name: sweep
dataset: {name: embedded, test_size: 8}
snr_db: [0, 10]
rate: {channel_uses: 486}
schemes: [{type: linear}]
metrics: [psnr]
"""


def test_a_valid_sweep_validates(capsys, tmp_path):
    rc, err = validate_text(capsys, tmp_path, BASE + "channel: {type: multihop, hops: [1, 2, 4], relay: qf, "
                                                     "relay_params: {bits: [2, 8]}}\n")
    assert rc == 0, err


@pytest.mark.parametrize("channel, field, words", [
    ("{type: multihop, hops: [1, 2, 2], relay: df}", "channel.hops", "non-unique"),
    ("{type: multihop, hops: [0, 2], relay: df}", "channel.hops[0]", ">= 1"),
    ("{type: multihop, hops: [2, 3], relay: [df, df]}", "channel.relay", "one relay name for every relay"),
    ("{type: multihop, hops: [2, 3], relay: qf, relay_params: {bits: [2, 40]}}", "channel.relay_params.bits",
     "1..16"),
    ("{type: multihop, hops: [2, 3], relay: qf, relay_params: {qf: {bits: [2, 4]}}}", "channel.relay_params",
     "keyed by relay name"),
    ("{type: multihop, hops: [2, 3], relay: af, hop_snr_db: [sweep, 10]}", "channel.hop_snr_db",
     "fixed number of hops"),
    ("{type: multihop, hops: [2, 3], relay: qf}", "channel.relay_params", "needs the option bits"),
])
def test_bad_sweeps_name_the_field(capsys, tmp_path, channel, field, words):
    rc, err = validate_text(capsys, tmp_path, BASE + f"channel: {channel}\n")
    assert rc == 2 and f"field '{field}'" in err and words in err, err


def test_per_hop_snr_lists_need_a_fixed_number_of_hops(capsys, tmp_path):
    text = BASE.replace("snr_db: [0, 10]", "snr_db: [[0, 10], [10, 10]]")
    rc, err = validate_text(capsys, tmp_path, text + "channel: {type: multihop, hops: [2, 3], relay: df}\n")
    assert rc == 2 and "field 'snr_db[0]'" in err and "fixed number of hops" in err, err


TRAIN = """\
name: tc
dataset: {name: embedded, test_size: 8}
snr_db: [0, 10]
rate: {channel_uses: 486}
metrics: [psnr]
schemes:
  - type: deepjscc
    snr_train_db: 10
    train_channel: %s
"""


@pytest.mark.parametrize("value, field, words", [
    ("{type: multihop, hops: 2, relay: qf, relay_params: {bits: 4}}", None, ""),
    ("{type: nosuch}", "schemes[0].train_channel.type", "must be a channel"),
    ("{type: multihop, hops: [2, 3], relay: df}", "schemes[0].train_channel", "one chain"),
    ("{type: multihop, hops: 2, relay: qf}", "schemes[0].train_channel", "bits"),
    ("{type: multihop, hops: 2, relay: af, hop_snr_db: [sweep, 10]}", "schemes[0].train_channel.hop_snr_db",
     "snr_train_db"),
    ("sideways", "schemes[0].train_channel", "awgn, scenario"),
])
def test_train_channel_mapping_is_checked(capsys, tmp_path, value, field, words):
    rc, err = validate_text(capsys, tmp_path, TRAIN % value)
    if field is None:
        assert rc == 0, err
    else:
        assert rc == 2 and f"field '{field}" in err and words in err, err


def test_default_plots_follow_the_listed_metrics(capsys, tmp_path):
    # metrics [psnr] without plots: the default plots of other metrics are left out, not an error
    rc, err = validate_text(capsys, tmp_path, BASE)
    assert rc == 0, err
    from linksim.scenario import load_scenario

    p = tmp_path / "s.yaml"
    assert load_scenario(p).data["plots"] == ["psnr_vs_snr"]


def test_a_constellation_list_is_one_value_not_a_sweep(capsys, tmp_path):
    ch = {"type": "multihop", "hops": 2, "relay": "qf",
          "relay_params": {"bits": 2, "constellation": [[1, 1], [-1, -1], [1, -1], [-1, 1]]}}
    assert not is_sweep(ch)
    rc, err = validate_text(capsys, tmp_path, BASE + "channel: {type: multihop, hops: [1, 2], relay: qf, relay_params: "
                                                     "{bits: [2, 4], constellation: [[1, 1], [-1, -1], [1, -1], [-1, 1]]}}\n")
    assert rc == 0, err


def test_text_valued_and_per_mode_relay_options_with_a_hops_sweep(capsys, tmp_path):
    rc, err = validate_text(capsys, tmp_path, BASE + "channel: {type: multihop, hops: [1, 2], relay: af, "
                                                     "relay_params: {gain: [fixed, measured]}}\n")
    assert rc == 0, err
    assert [v.tag for v in channel_variants({"type": "multihop", "hops": [1, 2], "relay": "af",
                                             "relay_params": {"gain": ["fixed", "measured"]}})] == \
        ["1 hop", "2 hops, gain fixed", "2 hops, gain measured"]
    rc, err = validate_text(capsys, tmp_path, BASE + "channel: {type: multihop, hops: [2, 3], relay: qf, "
                                                     "relay_params: {qf: {bits: 4}}}\n")
    assert rc == 0, err


def test_a_huge_sweep_is_refused_before_its_chains_are_made(capsys, tmp_path):
    many = "[" + ", ".join(str(i) for i in range(1, 17)) + "]"
    text = BASE + (f"channel: {{type: multihop, hops: {list(range(1, 65))}, relay: qf, "
                   f"relay_params: {{bits: {many}, clip: {[0.1 * i for i in range(1, 101)]}}}}}\n")
    rc, err = validate_text(capsys, tmp_path, text)
    assert rc == 2 and "102,400 chains" in err and "limit" in err, err


@pytest.mark.parametrize("extra, field, words", [
    ("train_channel: {type: multihop, hops: 2, relay: df}", "schemes[0].train_channel.relay", "decode-and-forward"),
    ("train_channel: {type: multihop, hops: 2, relay: af}\n    snr_train_db: [0, 20]", "schemes[0].snr_train_db",
     "not a range"),
])
def test_train_channel_cross_checks(capsys, tmp_path, extra, field, words):
    text = BASE.replace("schemes: [{type: linear}]", "schemes:\n  - type: deepjscc\n    " + extra)
    rc, err = validate_text(capsys, tmp_path, text)
    assert rc == 2 and f"field '{field}'" in err and words in err, err


def test_chain_tags_keep_close_values_apart():
    vs = channel_variants({"type": "multihop", "hops": 2, "relay": "qf",
                           "relay_params": {"bits": 4, "clip": [0.1234561, 0.1234562]}})
    assert len({v.tag for v in vs}) == 2


def test_quick_hops_and_relay_params_shrink_the_sweep(capsys, tmp_path):
    from linksim.scenario import load_scenario

    text = BASE + ("channel: {type: multihop, hops: [1, 2, 3, 4], relay: qf, relay_params: {bits: [2, 4, 6, 8]}}\n"
                   "quick: {hops: [1, 4], relay_params: {bits: [2, 8]}}\n")
    rc, err = validate_text(capsys, tmp_path, text)
    assert rc == 0, err
    q = load_scenario(tmp_path / "s.yaml").quick()
    assert [v.columns for v in channel_variants(q.data["channel"])] == [
        {"hops": 1, "relay_bits": None}, {"hops": 4, "relay_bits": 2}, {"hops": 4, "relay_bits": 8}]
    rc, err = validate_text(capsys, tmp_path, text.replace("bits: [2, 8]}}", "bits: [2, 80]}}"))
    assert rc == 2 and "field 'quick.relay_params.bits'" in err, err
    rc, err = validate_text(capsys, tmp_path, BASE + "quick: {hops: [1, 2]}\n")
    assert rc == 2 and "field 'quick.hops'" in err and "multihop" in err, err
