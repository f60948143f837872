"""Parallel sweeps (``--workers N``): the same results with one worker or two, resume, errors from workers.

The scenario has three batches of test images, three SNR points, a learned scheme (shipped
PCA-DeepJSCC weights), an analog reference, a separation scheme over LDPC and a task metric
(accuracy), so every kind of per-point work crosses the process boundary.
"""

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scenario_runs import REPO, small_scenario, table

from linksim.cli import main
from linksim.run import run_scenario
from linksim.scenario import load_scenario


def _run(tmp_path_factory, name: str, workers: int) -> Path:
    tmp = tmp_path_factory.mktemp(name)
    out = tmp / "run"
    run_scenario(load_scenario(small_scenario(tmp)), out, progress=False, plots=False, train_missing=False,
                 workers=workers)
    return out


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    """One worker process: the serial run the parallel ones must equal."""
    return _run(tmp_path_factory, "serial", 1)


@pytest.fixture(scope="module")
def in_process_run(tmp_path_factory):
    return _run(tmp_path_factory, "in_process", 0)


@pytest.fixture(scope="module")
def parallel_run(tmp_path_factory):
    return _run(tmp_path_factory, "parallel", 2)


def test_two_workers_write_the_serial_results(serial_run, parallel_run):
    serial, parallel = table(serial_run), table(parallel_run)
    assert len(serial) == 1 + 3 * 3  # the reference row and 3 schemes x 3 SNR points
    pd.testing.assert_frame_equal(serial, parallel, check_exact=True)
    assert json.loads((parallel_run / "meta.json").read_text())["executor"] == {"type": "local", "workers": 2}
    assert json.loads((serial_run / "meta.json").read_text())["executor"] == {"type": "local", "workers": 1}
    for f in sorted((serial_run / "examples").glob("*.npy")):  # the example grid too
        np.testing.assert_array_equal(np.load(f), np.load(parallel_run / "examples" / f.name))


def test_in_process_evaluation_agrees_to_float32_rounding(serial_run, in_process_run):
    """In the run's own process TensorFlow sums with its default threads: the same results up to
    float32 rounding (relative 1e-5 allowed; measured: at most 3e-7 on this scenario's 10 rows)."""
    serial, here = table(serial_run), table(in_process_run)
    pd.testing.assert_frame_equal(serial, here, check_exact=False, rtol=1e-5)
    assert json.loads((in_process_run / "meta.json").read_text())["executor"] == {"type": "local", "workers": 0}


def test_every_batch_counts_once(serial_run):
    df = table(serial_run)
    assert (df.loc[df.scheme != "reference", "images"] == 60).all()


def test_a_parallel_run_resumes_what_is_missing(tmp_path, serial_run, parallel_run):
    out = tmp_path / "run"
    shutil.copytree(parallel_run, out)
    scen = load_scenario(small_scenario(tmp_path))
    full = pd.read_csv(out / "results.csv")
    keep = full[~((full.scheme == "JPEG + LDPC 3/4 + 16-QAM") & (full.snr_db >= 10)) & (full.snr_db != 0)]
    keep.to_csv(out / "results.csv", index=False)  # as if stopped with 5 of the 9 points missing
    run_scenario(scen, out, progress=False, plots=False, train_missing=False, workers=2)
    assert json.loads((out / "meta.json").read_text())["resumed_points"] == 4
    pd.testing.assert_frame_equal(table(out), table(serial_run), check_exact=True)


PLUGIN = textwrap.dedent('''
    from linksim.registry import SCHEMES
    from linksim.schemes.analog import UncodedScheme


    @SCHEMES.register("explodes")
    class Explodes(UncodedScheme):
        def evaluate(self, state, snr_db):
            if float(snr_db) > 5:
                raise RuntimeError(f"explodes at {float(snr_db):g} dB")
            return super().evaluate(state, snr_db)
''')


def test_an_error_in_a_worker_reaches_the_user_and_keeps_finished_rows(tmp_path, capsys):
    (tmp_path / "explodes.py").write_text(PLUGIN)
    scen = small_scenario(tmp_path, plugin="explodes.py")
    out = tmp_path / "run"
    code = main(["run", str(scen), "--out", str(out), "--no-progress", "--workers", "2"])
    assert code != 0
    assert "explodes at 10 dB" in capsys.readouterr().err
    done = pd.read_csv(out / "results.csv")  # what finished before the error is kept
    assert set(done.scheme) == {"Uncoded (LMMSE)"} and len(done) == 3


@pytest.mark.parametrize("bad", ["-1", "two", "1.5", ""])
def test_workers_must_be_a_whole_number_or_auto(bad, tmp_path, capsys):
    assert main(["run", str(REPO / "scenarios" / "awgn_sscc.yaml"), "--out", str(tmp_path / "r"),
                 "--workers", bad]) == 2
    err = capsys.readouterr().err
    assert "--workers" in err and "auto or a whole number >= 0" in err
    assert not (tmp_path / "r").exists()
