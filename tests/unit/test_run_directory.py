"""The run directory: resume keeps finished points, a different scenario is refused, meta, example images."""

import json

import numpy as np
import pandas as pd
import pytest

from linksim.run.directory import (REFERENCE, RESULTS, RunDirectory, RunError, example_path, finish_meta,
                                   new_meta, row_snr_key, snr_key)
from linksim.scenario import validate_scenario_dict

RAW = {"name": "rd", "seed": 4, "dataset": {"name": "embedded", "test_size": 4},
       "snr_db": [0, 10], "rate": {"channel_uses": 98},
       "schemes": [{"type": "separation", "codec": {"type": "webp"}, "channel_code": {"type": "ideal"}}],
       "plots": [], "evaluation": {"example_images": 2}}


def scenario(**changes):
    raw = json.loads(json.dumps(RAW))
    raw.update(changes)
    return validate_scenario_dict(raw, source="rd.yaml")


def open_dir(path, scen, overwrite=False):
    return RunDirectory(path).open(scen.data, scen.to_yaml(), overwrite)


def test_a_new_directory_holds_the_resolved_scenario_and_no_rows(tmp_path):
    scen = scenario()
    assert open_dir(tmp_path / "run", scen) == []
    assert (tmp_path / "run" / "scenario.yaml").read_text() == scen.to_yaml()


def test_reopening_with_the_same_scenario_returns_the_finished_rows_unchanged(tmp_path):
    scen = scenario()
    d = RunDirectory(tmp_path)
    d.open(scen.data, scen.to_yaml())
    rows = [{"scheme": "a", "snr_db": 0.0, "psnr_db": 20.5, "channel_uses": 98.0},
            {"scheme": "a", "snr_db": 10.0, "psnr_db": 31.25, "channel_uses": 98.0}]
    d.write_results(rows)
    before = (tmp_path / RESULTS).read_text()
    again = open_dir(tmp_path, scen)
    assert [(r["scheme"], r["snr_db"], r["psnr_db"]) for r in again] == [("a", 0.0, 20.5), ("a", 10.0, 31.25)]
    assert (tmp_path / RESULTS).read_text() == before  # opening wrote nothing


def test_a_directory_of_another_scenario_is_refused_and_left_unchanged(tmp_path):
    open_dir(tmp_path, scenario())
    RunDirectory(tmp_path).write_results([{"scheme": "a", "snr_db": 0.0}])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(RunError) as exc:
        open_dir(tmp_path, scenario(seed=5))
    msg = str(exc.value)
    assert str(tmp_path) in msg and "different scenario" in msg and "--overwrite" in msg
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_overwrite_replaces_another_scenarios_results(tmp_path):
    open_dir(tmp_path, scenario())
    RunDirectory(tmp_path).write_results([{"scheme": "a", "snr_db": 0.0}])
    other = scenario(seed=5)
    assert open_dir(tmp_path, other, overwrite=True) == []
    assert not (tmp_path / RESULTS).exists()
    assert (tmp_path / "scenario.yaml").read_text() == other.to_yaml()


def test_results_are_written_whole_without_a_temporary_file_left(tmp_path):
    d = RunDirectory(tmp_path)
    df = d.write_results([{"scheme": "a", "snr_db": 1.0}, {"scheme": "b", "snr_db": 2.0}])
    assert list(pd.read_csv(tmp_path / RESULTS).scheme) == ["a", "b"] == list(df.scheme)
    assert [p.name for p in tmp_path.iterdir()] == [RESULTS]


def test_meta_records_versions_seed_command_and_times(tmp_path):
    scen = scenario()
    meta = new_meta(scen, resumed_points=3)
    for key in ("scenario", "source", "seed", "quick", "versions", "git_commit", "command", "started",
                "resumed_points", "schemes"):
        assert key in meta, key
    assert meta["seed"] == 4 and meta["resumed_points"] == 3 and meta["source"] == "rd.yaml"
    for pkg in ("linksim", "sionna", "tensorflow", "keras", "numpy", "python"):
        assert meta["versions"][pkg], pkg
    finish_meta(meta, 12.345)
    assert meta["wall_time_s"] == 12.35 and "finished" in meta
    RunDirectory(tmp_path).write_meta(meta)
    assert json.loads((tmp_path / "meta.json").read_text())["seed"] == 4


def test_snr_keys_of_rows_match_the_keys_of_their_grid_points():
    assert row_snr_key({"snr_db": 10.0, "hop_snr_db": "10/10", "snr_explicit_per_hop": False}) == snr_key(10)
    explicit = {"snr_db": 5.0, "hop_snr_db": "5/20", "snr_explicit_per_hop": True}
    assert row_snr_key(explicit) == snr_key([5, 20]) != snr_key(5)
    # read back from CSV with the reference row present, the flag column is text or NaN
    assert row_snr_key({**explicit, "snr_explicit_per_hop": "True"}) == snr_key([5, 20])
    assert row_snr_key({"snr_db": 5.0, "hop_snr_db": float("nan"), "snr_explicit_per_hop": float("nan")}) \
        == snr_key(5)


def test_example_images_of_swept_and_explicit_per_hop_points_have_distinct_names(tmp_path):
    swept = example_path(tmp_path, "DeepJSCC (AF)", {"snr_db": 10.0, "hop_snr_db": "10/10",
                                                      "snr_explicit_per_hop": False})
    assert swept.name == "deepjscc_af__snr10.npy"
    a = example_path(tmp_path, "x", {"snr_db": 5.0, "hop_snr_db": "5/20", "snr_explicit_per_hop": True})
    b = example_path(tmp_path, "x", {"snr_db": 5.0, "hop_snr_db": "5/30", "snr_explicit_per_hop": True})
    assert a.name == "x__snr5_20.npy" and b.name == "x__snr5_30.npy"
    d = RunDirectory(tmp_path)
    d.write_examples("x", {"snr_db": 5.0, "hop_snr_db": "5/20", "snr_explicit_per_hop": True}, np.zeros((2, 3, 3, 1)))
    assert a.exists()


def test_the_reference_row_has_one_name():
    import linksim.plotting as plotting
    import linksim.run as run
    from linksim.run import evaluation

    assert run.REFERENCE is evaluation.REFERENCE is plotting.REFERENCE == REFERENCE
    assert not hasattr(plotting, "REFERENCE_LABEL")


def test_the_example_grid_finds_the_images_of_explicit_per_hop_points(tmp_path, monkeypatch):
    # regression: written as x__snr5_20.npy, looked up as x__snr5.npy, so the grid was empty
    import linksim.plotting as plotting

    d = RunDirectory(tmp_path)
    d.write_original_examples(np.zeros((2, 4, 4, 1), np.float32))
    rows = [{"scheme": REFERENCE, "scheme_type": "Reference", "snr_db": float("nan"), "accuracy": 0.9}]
    for hops in ([5, 20], [10, 20], [20, 5], [20, 20]):
        for label in ("A", "B"):
            cols = {"snr_db": float(min(hops)), "hop_snr_db": "/".join(f"{v:g}" for v in hops),
                    "snr_explicit_per_hop": True}
            rows.append({"scheme": label, "scheme_type": "X", **cols, "psnr_db": 20.0})
            d.write_examples(label, cols, np.full((2, 4, 4, 1), 0.5, np.float32))
    d.write_results(rows)
    looked_up = []

    def spy(run_dir, label, point):
        path = example_path(run_dir, label, point)
        looked_up.append((path.name, path.exists()))
        return path

    monkeypatch.setattr(plotting, "example_path", spy)
    df = pd.read_csv(tmp_path / RESULTS)
    assert plotting.draw_examples(df, {"name": "t"}, tmp_path) == tmp_path / "examples.png"
    assert len(looked_up) == 2 * 3  # two schemes at low, middle and high
    assert all(found for _, found in looked_up), looked_up
    # points ordered by snr_db, then hop SNRs: 20/5, 5/20, 10/20, 20/20 -> first, middle, last
    assert {name for name, _ in looked_up if name.startswith("a_")} == \
        {"a__snr20_5.npy", "a__snr10_20.npy", "a__snr20_20.npy"}
