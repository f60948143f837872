"""``linksim validate`` on bad fading options: each error names the file, the field and the allowed values."""

from __future__ import annotations

import pytest

from linksim.cli import main
from linksim.scenario import ScenarioError, load_scenario

BASE = """
name: fading_check
dataset: {{name: embedded, test_size: 8}}
snr_db: [10]
rate: {{channel_uses: 486}}
channel: {channel}
schemes:
{schemes}
"""
SEPARATION = """  - type: separation
    label: BPG + LDPC
    codec: {type: bpg}
    channel_code: {type: ldpc_80211n, n: 1944, rate: "3/4"}
"""


def _error(tmp_path, channel, schemes=SEPARATION) -> str:
    path = tmp_path / "fading.yaml"
    path.write_text(BASE.format(channel=channel, schemes=schemes))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    text = str(exc.value)
    assert "fading.yaml" in text
    return text


@pytest.mark.parametrize("channel, expected", [
    ("{type: rayleigh, csi: genie}", ("channel.csi", "perfect, pilots, none", "genie")),                 # unknown mode
    ("{type: rayleigh, k_factor: -2}", ("channel.k_factor", ">= 0")),                                    # K < 0
    ("{type: rayleigh, coherence: 7}", ("channel.coherence", "does not divide the transmission of 486 symbols")),
    ("{type: rayleigh, coherence: slow}", ("channel.coherence", "image, symbol or a positive integer")),
    ("{type: rayleigh, csi: pilots, coherence: symbol}", ("channel.pilots", "longer than one symbol")),
    ("{type: rayleigh, csi: [perfect, oracle]}", ("channel.csi[1]", "perfect, pilots, none")),           # per chain
    ("{type: multihop, hops: 2, relay: af, hop: [{type: awgn}, {type: rayleigh, k_factor: -1}]}",
     ("channel.hop[1].k_factor",)),
    ("{type: multihop, hops: 2, relay: df, hop: {type: rayleigh, csi: none}}", ("channel.hop.csi", "perfect or pilots")),
    ("{type: multihop, hops: 2, relay: af, relay_params: {gain: measured}, hop: {type: rayleigh, coherence: symbol}}",
     ("channel.hop.coherence", "gain: fixed")),
])
def test_a_bad_fading_option_names_the_field_and_the_allowed_values(tmp_path, channel, expected):
    text = _error(tmp_path, channel)
    for part in expected:
        assert part in text, (part, text)


def test_coherence_is_checked_against_what_a_separation_scheme_transmits(tmp_path):
    # QPSK + 8-bit uncoded blocks at 486 channel uses send 121 blocks = 484 symbols: 6 divides 486, not 484
    schemes = """  - type: separation
    label: QPSK
    codec: {type: jpeg, headers: abbreviated}
    channel_code: {type: none}
    modulation: {type: qam, num_bits_per_symbol: 2}
"""
    text = _error(tmp_path, "{type: rayleigh, coherence: 6}", schemes)
    assert "484 symbols" in text


def test_the_ideal_code_over_fading_is_refused(tmp_path):
    schemes = """  - type: separation
    label: BPG + ideal
    codec: {type: bpg}
    channel_code: {type: ideal}
"""
    text = _error(tmp_path, "{type: rayleigh}", schemes)
    assert "schemes[0].channel_code" in text and "outage" in text


def test_analog_references_need_one_coefficient_per_image(tmp_path):
    text = _error(tmp_path, "{type: rayleigh, coherence: symbol}", "  - type: uncoded\n")
    assert "channel.coherence" in text and "coherence: image" in text


def test_a_bad_train_channel_coherence_names_the_scheme(tmp_path):
    schemes = """  - type: deepjscc
    train_channel: {type: rayleigh, coherence: 5}
"""
    text = _error(tmp_path, "{type: awgn}", schemes)
    assert "schemes[0].train_channel.coherence" in text


def test_validate_command_reports_the_fading_error_and_fails(tmp_path, capsys):
    path = tmp_path / "fading.yaml"
    path.write_text(BASE.format(channel="{type: rayleigh, csi: maybe}", schemes=SEPARATION))
    assert main(["validate", str(path)]) != 0
    err = capsys.readouterr()
    assert "channel.csi" in err.err + err.out


def test_good_fading_scenarios_validate(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(BASE.format(channel="{type: rayleigh, coherence: 6, k_factor: 3, csi: pilots, pilots: 2}",
                                schemes=SEPARATION))
    assert load_scenario(path).data["channel"]["csi"] == "pilots"


def test_the_quick_channel_is_checked_too(tmp_path):
    path = tmp_path / "fading.yaml"
    path.write_text(BASE.format(channel="{type: rayleigh, csi: [perfect, none]}", schemes=SEPARATION)
                    + "quick: {channel_params: {coherence: 7}}\n")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    assert "quick" in str(exc.value) and "coherence 7 does not divide" in str(exc.value)


def test_analog_references_take_a_coherence_as_long_as_the_transmission(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(BASE.format(channel="{type: rayleigh, coherence: 486}", schemes="  - type: uncoded\n"))
    assert load_scenario(path).data["channel"]["coherence"] == 486
