"""Wall time of whole scenario runs, as a user starts them, and of resuming them.

For each scenario: ``linksim run SCENARIO --out DIR --overwrite`` in a fresh process
(start-up, data loading, model loading or training, source coding, the SNR sweep
and the plots all count), then the same command again without ``--overwrite``,
which must resume (find every point done) rather than recompute.

Targets (issues 2 and 4): ``scenarios/awgn_sscc.yaml`` and, with the shipped
weights, ``scenarios/multihop_df.yaml`` each finish in under 3 minutes on a 2-core
machine. With ``--quick`` (``linksim run --quick``; issue 11): the quick runs of
``scenarios/dhd_multihop_df.yaml`` and ``scenarios/dhd_multihop_qf.yaml`` each
finish in under a minute; so do those of ``scenarios/mcr2_gated.yaml`` and
``scenarios/mcr2_beta.yaml`` (issue 12), and of the fading scenarios
``scenarios/ber_rayleigh_uncoded.yaml``, ``scenarios/rayleigh_jscc_vs_sscc.yaml`` and
``scenarios/multihop_rayleigh.yaml`` (issue 13).

Usage::

    python benchmarks/run_times.py [SCENARIO ...]
    python benchmarks/run_times.py --quick [SCENARIO ...]

Writes ``benchmarks/results/run_times.json`` (``run_times_quick.json`` with ``--quick``).
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
DEFAULT_QUICK = ["scenarios/dhd_multihop_df.yaml", "scenarios/dhd_multihop_qf.yaml", "scenarios/mcr2_gated.yaml",
                 "scenarios/mcr2_beta.yaml", "scenarios/ber_rayleigh_uncoded.yaml",
                 "scenarios/rayleigh_jscc_vs_sscc.yaml", "scenarios/multihop_rayleigh.yaml"]
TARGET_S = 180.0
TARGET_QUICK_S = 60.0


def timed_run(scenario: str, out: Path, *extra: str) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "linksim.cli", "run", scenario, "--out", str(out), "--no-progress",
                    *extra], check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*")
    ap.add_argument("--quick", action="store_true", help="time `linksim run --quick` (target 60 s)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    scenarios = args.scenarios or (DEFAULT_QUICK if args.quick else DEFAULT)
    target = TARGET_QUICK_S if args.quick else TARGET_S
    quick = ("--quick",) if args.quick else ()
    out_file = args.out or str(Path(__file__).parent / "results" / f"run_times{'_quick' if args.quick else ''}.json")
    results = {**machine_facts(), "quick": args.quick, "target_s": target, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for scen in scenarios:
            out = Path(tmp) / Path(scen).stem
            first = timed_run(scen, out, "--overwrite", *quick)
            meta = json.loads((out / "meta.json").read_text())
            again = timed_run(scen, out, *quick)
            meta2 = json.loads((out / "meta.json").read_text())
            results["runs"][scen] = {
                "wall_s": round(first, 1), "run_wall_time_s_in_meta": meta["wall_time_s"],
                "meets_target": first < target, "test_images": meta["test_images"],
                "result_rows": sum(1 for _ in open(out / "results.csv")) - 1,
                "resume_wall_s": round(again, 1), "resumed_points": meta2["resumed_points"]}
            print(scen, json.dumps(results["runs"][scen]), flush=True)
    write_results(out_file, results)
    return 0 if all(r["meets_target"] for r in results["runs"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
