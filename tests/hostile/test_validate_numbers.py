"""Hostile *numbers* in scenario files: NaN and infinity anywhere, grids and sizes no machine can hold,
seeds outside what the generators take.  Each: exit 2 and a message naming the file, line and field."""

import time

import pytest

from linksim import limits
from validate_helpers import validate_text as validate

GOOD = """\
name: hostile
seed: 7
dataset: {name: embedded, test_size: 8}
snr_db: [0, 10]
rate: {channel_uses: 486}
schemes:
  - {type: separation, codec: {type: webp}}
"""

MULTIHOP = GOOD + "channel: {type: multihop, hops: 2, relay: qf, relay_params: {bits: 3}}\n"
JSCC = GOOD.replace("{type: separation, codec: {type: webp}}", "{type: deepjscc}")


@pytest.mark.parametrize("text, field", [
    (GOOD.replace("[0, 10]", "[0, .nan]"), "snr_db[1]"),
    (GOOD.replace("[0, 10]", "[.inf]"), "snr_db[0]"),
    (GOOD.replace("[0, 10]", "[-.inf, 0]"), "snr_db[0]"),
    (GOOD.replace("[0, 10]", "{start: 0, stop: 10, step: .nan}"), "snr_db.step"),
    (GOOD.replace("[0, 10]", "{start: -.inf, stop: 10, step: 1}"), "snr_db.start"),
    (GOOD.replace("[0, 10]", "[[0, .nan]]"), "snr_db[0][1]"),
    (GOOD.replace("channel_uses: 486", "bandwidth_ratio: .nan"), "rate.bandwidth_ratio"),
    (JSCC.replace("{type: deepjscc}", "{type: deepjscc, snr_train_db: .inf}"), "schemes[0].snr_train_db"),
    (JSCC.replace("{type: deepjscc}", "{type: deepjscc, learning_rate: .nan}"), "schemes[0].learning_rate"),
    (MULTIHOP.replace("{bits: 3}", "{bits: 3, clip: .inf}"), "channel.relay_params.clip"),
    (MULTIHOP.replace("hops: 2,", "hops: 2, hop_snr_db: [sweep, .nan],"), "channel.hop_snr_db[1]"),
    (GOOD + "quick: {snr_db: [.nan]}\n", "quick.snr_db[0]"),
])
def test_nan_and_infinity_are_refused_wherever_a_number_goes(tmp_path, capsys, text, field):
    rc, err = validate(capsys, tmp_path, text)
    assert rc == 2 and f"field '{field}'" in err and "finite number" in err and "s.yaml:" in err


def test_an_snr_range_of_billions_of_points_is_refused_at_once(tmp_path, capsys):
    t = time.time()
    rc, err = validate(capsys, tmp_path, GOOD.replace("[0, 10]", "{start: 0, stop: 100, step: 1.0e-8}"))
    assert rc == 2 and "field 'snr_db'" in err and f"limit of {limits.MAX_SNR_POINTS:,}" in err
    assert time.time() - t < 5


def test_a_grid_of_snr_points_times_rates_times_schemes_beyond_the_limit_is_refused(tmp_path, capsys):
    text = GOOD.replace("[0, 10]", "{start: -150, stop: 162.46875, step: 0.03125}").replace(  # 10,000 points
        "channel_uses: 486", "channel_uses: [" + ", ".join(["486"] * 11) + "]")
    rc, err = validate(capsys, tmp_path, text)
    assert rc == 2 and "the grid has 110,000 points" in err and f"{limits.MAX_GRID_POINTS:,}" in err


def test_channel_uses_of_ten_to_the_twelve_are_refused(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path, GOOD.replace("channel_uses: 486", "channel_uses: 1000000000000"))
    assert rc == 2 and "field 'rate.channel_uses'" in err and "exceed the limit" in err


def test_a_bandwidth_ratio_no_machine_can_hold_is_refused(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path, GOOD.replace("channel_uses: 486", "bandwidth_ratio: 1.0e+9"))
    assert rc == 2 and "field 'rate.bandwidth_ratio'" in err and "channel uses per image exceed" in err


def test_channel_uses_beyond_the_available_memory_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 2**30)   # a 1 GiB machine
    rc, err = validate(capsys, tmp_path, GOOD.replace("channel_uses: 486", "channel_uses: [486, 5000000]"))
    assert rc == 2 and "field 'rate.channel_uses[1]'" in err and "GiB available" in err


@pytest.mark.parametrize("seed", ["-1", "4294967296", "1.0e+30", "1.5", "true"])
def test_seeds_outside_what_the_generators_take_are_refused(tmp_path, capsys, seed):
    rc, err = validate(capsys, tmp_path, GOOD.replace("seed: 7", f"seed: {seed}"))
    assert rc == 2 and "field 'seed'" in err and "s.yaml:2" in err


def test_a_training_seed_beyond_the_generators_range_is_refused(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path, JSCC.replace("{type: deepjscc}", "{type: deepjscc, train_seed: 99999999999}"))
    assert rc == 2 and "field 'schemes[0].train_seed'" in err and "4294967295" in err


def test_a_classifier_seed_beyond_the_generators_range_is_refused(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path, GOOD + "task: {classifier: {train_seed: -3}}\n")
    assert rc == 2 and "field 'task.classifier.train_seed'" in err


def test_a_test_size_no_machine_can_hold_is_refused(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path, GOOD.replace("test_size: 8", "test_size: 1000000000000"))
    assert rc == 2 and "field 'dataset.test_size'" in err and "<=" in err


def test_an_empty_quick_grid_is_refused(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path, GOOD + "quick: {snr_db: {start: 10, stop: 0, step: 1}}\n")
    assert rc == 2 and "field 'quick.snr_db.stop'" in err and "empty" in err


def test_a_quick_grid_with_a_zero_step_is_refused(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path, GOOD + "quick: {snr_db: {start: 0, stop: 10, step: 0}}\n")
    assert rc == 2 and "field 'quick.snr_db.step'" in err


def test_a_relay_chain_of_a_million_hops_is_refused(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path, MULTIHOP.replace("hops: 2", "hops: 1000000"))
    assert rc == 2 and "field 'channel.hops'" in err


@pytest.mark.parametrize("snr, field", [("[0, 10, 0]", "snr_db[2]"), ("[0, -0.0]", "snr_db[1]"),
                                        ("[[1, 2], [1.0, 2.0]]", "snr_db[1]")])
def test_an_snr_point_listed_twice_is_refused(tmp_path, capsys, snr, field):
    text = GOOD.replace("snr_db: [0, 10]", f"snr_db: {snr}")
    if snr.startswith("[["):
        text = text.replace("schemes:", "channel: {type: multihop, hops: 2, relay: df}\nschemes:")
    rc, err = validate(capsys, tmp_path, text)
    assert rc == 2 and f"field '{field}'" in err and "listed twice" in err, err


@pytest.mark.parametrize("snr, field", [("[0, 100000000000000000000000]", "snr_db[1]"), ("[-301, 0]", "snr_db[0]"),
                                        ("{start: 0, stop: 1.0e+300, step: 1.0e+299}", "snr_db.stop")])
def test_an_snr_no_float32_noise_variance_can_hold_is_refused(tmp_path, capsys, snr, field):
    rc, err = validate(capsys, tmp_path, GOOD.replace("snr_db: [0, 10]", f"snr_db: {snr}"))
    assert rc == 2 and f"field '{field}'" in err and "-300 .. 300 dB" in err, err


def test_the_largest_allowed_snr_is_accepted(tmp_path, capsys):
    assert validate(capsys, tmp_path, GOOD.replace("snr_db: [0, 10]", "snr_db: [-300, 300]"))[0] == 0


@pytest.mark.parametrize("snr, field, words", [("{start: 0, stop: 10}", "snr_db", "missing required field(s): step"),
                                               ("{start: 0, stop: 10, step: 5, num: 3}", "snr_db.num",
                                                "unknown field(s) num (allowed: start, step, stop)")])
def test_a_range_mapping_with_a_missing_or_unknown_key_is_explained_as_a_range(tmp_path, capsys, snr, field, words):
    rc, err = validate(capsys, tmp_path, GOOD.replace("snr_db: [0, 10]", f"snr_db: {snr}"))
    assert rc == 2 and f"field '{field}'" in err and words in err, err
