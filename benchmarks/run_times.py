"""Wall time of whole scenario runs, as a user starts them, and of resuming them.

For each scenario: ``linksim run SCENARIO --out DIR --overwrite`` in a fresh process
(start-up, data loading, model loading or training, source coding, the SNR sweep
and the plots all count), then the same command again without ``--overwrite``,
which must resume (find every point done) rather than recompute.

Targets (issues 2 and 4): ``scenarios/awgn_sscc.yaml`` and, with the shipped
weights, ``scenarios/multihop_df.yaml`` each finish in under 3 minutes on a 2-core
machine.

Usage::

    python benchmarks/run_times.py [SCENARIO ...]

Writes ``benchmarks/results/run_times.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recording import machine_facts, write_results

REPO = Path(__file__).resolve().parents[1]
DEFAULT = ["scenarios/multihop_df.yaml", "scenarios/awgn_sscc.yaml", "scenarios/awgn_jscc_vs_sscc.yaml"]
TARGET_S = 180.0


def timed_run(scenario: str, out: Path, *extra: str) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "linksim.cli", "run", scenario, "--out", str(out), "--no-progress",
                    *extra], check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", default=DEFAULT)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "run_times.json"))
    args = ap.parse_args(argv)
    results = {**machine_facts(),
               "target_s": TARGET_S, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for scen in args.scenarios:
            out = Path(tmp) / Path(scen).stem
            first = timed_run(scen, out, "--overwrite")
            meta = json.loads((out / "meta.json").read_text())
            again = timed_run(scen, out)
            meta2 = json.loads((out / "meta.json").read_text())
            results["runs"][scen] = {
                "wall_s": round(first, 1), "run_wall_time_s_in_meta": meta["wall_time_s"],
                "meets_target": first < TARGET_S, "test_images": meta["test_images"],
                "result_rows": sum(1 for _ in open(out / "results.csv")) - 1,
                "resume_wall_s": round(again, 1), "resumed_points": meta2["resumed_points"]}
            print(scen, json.dumps(results["runs"][scen]), flush=True)
    write_results(args.out, results)
    return 0 if all(r["meets_target"] for r in results["runs"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
