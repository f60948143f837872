"""A run over a channel sweep (hops and a QF relay option as lists): one row per chain, resume, plots."""

import pandas as pd
import yaml

from linksim.cli import main
from linksim.scenario import load_scenario
from linksim.run.evaluation import run_scenario

SCENARIO = {
    "name": "sweep_run", "seed": 3,
    "dataset": {"name": "embedded", "test_size": 12},
    "channel": {"type": "multihop", "hops": [1, 2, 3], "relay": "qf", "relay_params": {"bits": [2, 6]}},
    "snr_db": [0, 20], "rate": {"channel_uses": 392},
    "schemes": [{"type": "linear", "label": "Linear", "spread": True}, {"type": "uncoded", "label": "Uncoded"}],
    "metrics": ["psnr"],
    "plots": ["psnr_vs_snr", "psnr_vs_hops", "table"],
    "evaluation": {"example_images": 2},
}


def _scenario(tmp_path):
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(SCENARIO, sort_keys=False))
    return p


def test_a_sweep_run_has_one_row_per_chain_and_resumes(tmp_path):
    path = _scenario(tmp_path)
    out = tmp_path / "run"
    df = run_scenario(load_scenario(path), out, progress=False)
    # 1 + 2 x 2 chains, 2 schemes, 2 SNRs
    assert len(df) == 5 * 2 * 2
    chains = sorted({(int(h), None if pd.isna(b) else int(b)) for h, b in zip(df["hops"], df["relay_bits"])},
                    key=lambda t: (t[0], t[1] or 0))
    assert chains == [(1, None), (2, 2), (2, 6), (3, 2), (3, 6)]
    assert set(df.loc[df["hops"] == 3, "relay"]) == {"qf/qf"} and set(df.loc[df["hops"] == 1, "relay"]) == {"none"}
    lin = df[df["scheme"] == "Linear"].set_index(["hops", "relay_bits", "snr_db"])["psnr_db"]
    # the physics the sweep must show: more relay bits help, more QF hops hurt (at 20 dB per hop)
    assert lin[(2, 6, 20.0)] > lin[(2, 2, 20.0)] + 1.0
    one_hop = df[(df["scheme"] == "Linear") & (df["hops"] == 1) & (df["snr_db"] == 20)]["psnr_db"].iloc[0]
    assert one_hop > lin[(3, 2, 20.0)]
    for png in ("psnr_vs_snr.png", "psnr_vs_hops.png"):
        assert (out / png).stat().st_size > 10_000
    table = (out / "table.md").read_text()
    assert "| scheme | hops | relay_bits |" in table
    # resume: every point is there, nothing is recomputed (the rows, with their wall times, are unchanged)
    before = (out / "results.csv").read_text()
    df2 = run_scenario(load_scenario(path), out, progress=False, plots=False)
    assert len(df2) == len(df) and (out / "results.csv").read_text() == before


def test_a_lost_chain_is_recomputed_alone_and_equals_the_first_run(tmp_path):
    path = _scenario(tmp_path)
    out = tmp_path / "run"
    df = run_scenario(load_scenario(path), out, progress=False, plots=False)
    lines = (out / "results.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    col = header.split(",").index("relay_bits")
    kept = [r for r in rows if not (r.split(",")[header.split(",").index("hops")] == "3"
                                    and r.split(",")[col] not in ("", "nan") and float(r.split(",")[col]) == 6)]
    assert len(kept) == len(rows) - 4
    (out / "results.csv").write_text("\n".join([header] + kept) + "\n")
    df2 = run_scenario(load_scenario(path), out, progress=False, plots=False)
    key = ["scheme", "hops", "relay_bits", "snr_db"]
    a = df.sort_values(key).reset_index(drop=True)
    b = df2.sort_values(key).reset_index(drop=True)
    # a point's seed is its (scheme, chain, SNR): the recomputed chain gives the same numbers
    pd.testing.assert_series_equal(a["psnr_db"], b["psnr_db"])


def test_cli_summary_names_the_chain(tmp_path, capsys):
    path = _scenario(tmp_path)
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["scheme", "hops", "relay_bits", "snr_db"]


def test_a_sweep_of_a_named_relay_option_plots_each_chain(tmp_path):
    scen = {**SCENARIO, "name": "gain_sweep",
            "channel": {"type": "multihop", "hops": [1, 2], "relay": "af",
                        "relay_params": {"gain": ["fixed", "measured"]}},
            "schemes": [{"type": "uncoded", "label": "Uncoded"}], "snr_db": [0, 10]}
    p = tmp_path / "g.yaml"
    p.write_text(yaml.safe_dump(scen, sort_keys=False))
    out = tmp_path / "run"
    df = run_scenario(load_scenario(p), out, progress=False)
    assert sorted(map(str, df["relay_gain"].fillna("-"))) == ["-", "-", "fixed", "fixed", "measured", "measured"]
    from linksim.plotting import _chains

    chains = _chains(df, yaml.safe_load((out / "scenario.yaml").read_text()))
    assert [t for t, _ in chains] == ["1 hop", "2 hops, gain fixed", "2 hops, gain measured"]
    assert all(len(g) == 2 for _, g in chains)
    assert (out / "psnr_vs_hops.png").exists() and (out / "psnr_vs_snr.png").exists()
