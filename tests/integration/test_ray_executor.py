"""``--executor ray``: a run's points as Ray tasks on a Ray cluster, here a local one on 127.0.0.1.

The test starts a head node with ``ray start`` (2 CPUs, on a free port), runs the small
scenario of :mod:`test_parallel_run` through ``linksim run --executor ray --ray-address``,
and compares ``results.csv`` with a run in one local worker process: equal apart from
``wall_s``.  Ray is the optional extra ``linksim[ray]``, which the README's test command
installs.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scenario_runs import small_scenario, table

from linksim.cli import main
from linksim.run import run_scenario
from linksim.scenario import load_scenario

pytest.importorskip("ray")

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A one-node Ray cluster on 127.0.0.1 for the module; stopped afterwards.

    Token authentication is off (``RAY_AUTH_MODE=disabled``, for the cluster and this
    process): the test must not depend on, or write, a token in ``~/.ray``.
    """
    port = _free_port()
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    temp = tmp_path_factory.mktemp("ray")
    subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_a_ray_run_writes_the_results_of_a_local_run(tmp_path, ray_cluster):
    scen = small_scenario(tmp_path)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run_scenario(load_scenario(scen), local, progress=False, plots=False, train_missing=False, workers=1)
    assert main(["run", str(scen), "--out", str(on_ray), "--no-progress", "--executor", "ray",
                 "--ray-address", ray_cluster]) == 0
    pd.testing.assert_frame_equal(table(local), table(on_ray), check_exact=True)
    meta = pd.read_json(on_ray / "meta.json", typ="series")
    assert meta["executor"] == {"type": "ray", "workers": 2}  # the cluster's 2 CPUs, one per task


def test_an_unreachable_ray_cluster_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    scen = small_scenario(tmp_path)
    code = main(["run", str(scen), "--out", str(tmp_path / "r"), "--no-progress", "--executor", "ray",
                 "--ray-address", f"127.0.0.1:{_free_port()}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--executor ray: cannot reach a Ray cluster at 127.0.0.1:" in err
