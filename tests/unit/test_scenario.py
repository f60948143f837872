"""Scenario files: valid ones resolve, invalid ones get a clear error (file, line, field, allowed values)."""

import textwrap
from pathlib import Path

import pytest

from linksim.scenario import ScenarioError, load_scenario

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
name: t
seed: 3
dataset:
  name: embedded
  test_size: 8
snr_db: {start: 0, stop: 4, step: 2}
rate:
  channel_uses: 486
schemes:
  - type: separation
    codec: {type: webp}
"""


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_shipped_scenarios_validate():
    files = sorted((REPO / "scenarios").glob("*.yaml"))
    assert files, "no scenario files shipped"
    for f in files:
        scen = load_scenario(f)
        assert scen.schemes and scen.snr_db


def test_snr_range_expands_and_defaults_fill_in(tmp_path):
    scen = load_scenario(write(tmp_path, GOOD))
    assert scen.snr_db == [0.0, 2.0, 4.0]
    assert scen.data["channel"] == {"type": "awgn"}
    assert "psnr" in scen.data["metrics"]
    assert scen.schemes[0]["label"] == "separation+webp"


def test_quick_keeps_the_ends_of_the_snr_grid(tmp_path):
    scen = load_scenario(write(tmp_path, GOOD.replace("stop: 4", "stop: 20"))).quick()
    assert scen.snr_db == [0.0, 10.0, 20.0]
    assert scen.data["dataset"]["test_size"] <= 32


def _error(tmp_path, text) -> ScenarioError:
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write(tmp_path, text))
    return exc.value


def test_unknown_scheme_lists_valid_names(tmp_path):
    e = _error(tmp_path, GOOD.replace("type: separation", "type: seperation"))
    msg = str(e)
    assert "s.yaml:10" in msg and "schemes[0].type" in msg
    assert "separation" in msg and "registered schemes" in msg and "Did you mean 'separation'" in msg


def test_unknown_codec_lists_valid_codecs(tmp_path):
    msg = str(_error(tmp_path, GOOD.replace("type: webp", "type: webm")))
    assert "schemes[0].codec.type" in msg
    for name in ("jpeg", "webp", "bpg", "jpeg2000"):
        assert name in msg


def test_wrong_type_names_the_field_and_the_expected_type(tmp_path):
    msg = str(_error(tmp_path, GOOD.replace("channel_uses: 486", "channel_uses: many")))
    assert "rate.channel_uses" in msg and "integer" in msg and "s.yaml:8" in msg


def test_negative_snr_step_is_refused(tmp_path):
    msg = str(_error(tmp_path, GOOD.replace("step: 2", "step: -2")))
    assert "snr_db.step" in msg and "must be > 0" in msg and "s.yaml:6" in msg


def test_yaml_syntax_error_gives_the_line(tmp_path):
    msg = str(_error(tmp_path, GOOD.replace("  test_size: 8", "  test_size: [8")))
    assert "YAML syntax error" in msg and "s.yaml:" in msg


def test_missing_dataset_path_is_named(tmp_path):
    text = GOOD.replace("  name: embedded", "  name: image_folder\n  params: {path: /no/such/folder}")
    msg = str(_error(tmp_path, text))
    assert "dataset.params.path" in msg and "/no/such/folder" in msg


def test_unknown_top_level_field_lists_allowed_fields(tmp_path):
    msg = str(_error(tmp_path, GOOD + "snr: 3\n"))
    assert "unknown field(s) snr" in msg and "snr_db" in msg


def test_missing_rate_is_named(tmp_path):
    msg = str(_error(tmp_path, GOOD.replace("rate:\n  channel_uses: 486\n", "")))
    assert "missing required field(s): rate" in msg


def test_both_rate_fields_are_refused(tmp_path):
    msg = str(_error(tmp_path, GOOD.replace("channel_uses: 486", "channel_uses: 486\n  bandwidth_ratio: 0.5")))
    assert "exactly one of channel_uses, bandwidth_ratio" in msg


def test_bad_fallback_names_allowed_values(tmp_path):
    msg = str(_error(tmp_path, GOOD + "    fallback: white\n"))
    assert "mean, gray, black" in msg


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "nope.yaml")


MULTIHOP = GOOD + "channel: {type: multihop, hops: 3, relay_params: {qf: {bits: 4}}, relay: [af, qf]}\n"  # qf needs bits


def test_relay_names_come_from_the_relay_registry(tmp_path, monkeypatch):
    from linksim.registry import RELAYS

    msg = str(_error(tmp_path, MULTIHOP.replace("[af, qf]", "[af, xf]")))
    assert "channel.relay[1]" in msg and "s.yaml:12" in msg
    for name in RELAYS.names():
        assert name in msg
    # a relay a plug-in registers is accepted, with no schema edit
    monkeypatch.setitem(RELAYS._entries, "xf", object)
    assert load_scenario(write(tmp_path, MULTIHOP.replace("[af, qf]", "[af, xf]"))).data["channel"]["relay"] == \
        ["af", "xf"]


def test_hop_channel_names_come_from_the_channel_registry_for_one_mapping_or_a_list(tmp_path):
    from linksim.registry import CHANNELS

    one = MULTIHOP.replace("relay: [af, qf]}", "relay: [af, qf], hop: {type: fading}}")
    msg = str(_error(tmp_path, one))
    assert "channel.hop.type" in msg and "fading" in msg and all(n in msg for n in CHANNELS.names())
    listed = MULTIHOP.replace("relay: [af, qf]}", "relay: [af, qf], hop: [{type: awgn}, {type: awgn}, {type: fadng}]}")
    assert "channel.hop[2].type" in str(_error(tmp_path, listed))
    ok = MULTIHOP.replace("relay: [af, qf]}", "relay: [af, qf], hop: [{type: awgn}, {type: awgn}, {type: awgn}]}")
    assert load_scenario(write(tmp_path, ok)).data["channel"]["hop"][2] == {"type": "awgn"}


def test_the_schema_holds_no_component_names(tmp_path):
    # allowed names live in the registries only (linksim.registry.ALL)
    import json

    from linksim import registry

    schema = json.loads((REPO / "linksim" / "scenario_schema.json").read_text())
    enums = []

    def walk(node):
        if isinstance(node, dict):
            enums.extend(node.get("enum", []))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    for reg in registry.ALL.values():
        assert not set(enums) & set(reg.names()), (reg.kind, set(enums) & set(reg.names()))


def test_an_unknown_dataset_option_is_named_at_validation(tmp_path):
    msg = str(_error(tmp_path, GOOD.replace("  name: embedded", "  name: embedded\n  params: {colour: true}")))
    assert "dataset.params" in msg and "colour" in msg and "pad_to" in msg
