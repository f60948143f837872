"""Wall time of whole scenario runs, as a user starts them, before and after a change, in one sitting.

For each scenario: ``linksim run SCENARIO --out DIR --overwrite --no-progress`` in a
fresh process (start-up, data loading, model loading, source coding, the SNR sweep and
the plots all count), then the same command again without ``--overwrite``, which must
resume (find every point done) rather than recompute.  Every run starts cold: an empty
model store (``LINKSIM_MODEL_STORE``, so the shipped weights are used and nothing is
trained) and a fresh run directory (so the source-coding cache is empty).

``--before REV`` also times the code of git revision ``REV`` (checked out into a
temporary ``git worktree``, imported from there with the same Python), interleaved with
the current code: for each scenario, ``before`` then ``after``, so both see the same
machine load.

Targets (issue 14, on the 2-core machine):

- ``scenarios/multihop_df.yaml`` (the main job, ``make run``): at most 45 s of wall time;
- every scenario that runs from shipped weights: at most 2 minutes (the CIFAR-10
  scenarios need the CIFAR-10 data set, which is not shipped, and are left out);
- ``--workers 2`` at least 1.4x faster than ``--workers 1`` on ``scenarios/awgn_sscc.yaml``
  (``--workers-pair``, measured back to back, alternating, ``--rounds`` times; ``--unpinned``
  adds ``--workers 2`` with ``LINKSIM_PIN_WORKERS=0`` to the rotation).

Earlier targets: with ``--quick`` the quick runs of the DHD, MCR² and fading scenarios
each finish in under a minute (issues 11-13).

Usage::

    python benchmarks/run_times.py [--before 84f4e7d] [SCENARIO ...]
    python benchmarks/run_times.py --workers-pair [--rounds 2] [--unpinned]
    python benchmarks/run_times.py --quick [SCENARIO ...]

Writes ``benchmarks/results/run_times.json`` (``run_times_quick.json`` with ``--quick``,
``run_times_workers.json`` with ``--workers-pair``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recording import machine_facts, write_results

REPO = Path(__file__).resolve().parents[1]
MAIN_JOB = "scenarios/multihop_df.yaml"
NEEDS_DATA = {"scenarios/cifar10_deepjscc_paper_kn6.yaml", "scenarios/cifar10_deepjscc_paper_kn12.yaml"}
DEFAULT = [MAIN_JOB] + sorted(f"scenarios/{p.name}" for p in (REPO / "scenarios").glob("*.yaml")
                              if f"scenarios/{p.name}" not in NEEDS_DATA | {MAIN_JOB})
DEFAULT_QUICK = ["scenarios/dhd_multihop_df.yaml", "scenarios/dhd_multihop_qf.yaml", "scenarios/mcr2_gated.yaml",
                 "scenarios/mcr2_beta.yaml", "scenarios/ber_rayleigh_uncoded.yaml",
                 "scenarios/rayleigh_jscc_vs_sscc.yaml", "scenarios/multihop_rayleigh.yaml"]
TARGET_S = 120.0
TARGET_MAIN_S = 45.0
TARGET_QUICK_S = 60.0
TARGET_WORKERS_SPEEDUP = 1.4


def timed_run(scenario: str, out: Path, *extra: str, code: Path = REPO, store: Path, env: dict | None = None) -> float:
    """Seconds of ``linksim run`` of ``scenario`` with the linksim of folder ``code`` (``env``: more variables)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "LINKSIM_MODEL_STORE": str(store),
           "PYTHONPATH": str(code), **(env or {})}
    env.pop("LINKSIM_SOURCE_CACHE", None)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "linksim.cli", "run", str(code / scenario), "--out", str(out),
                    "--no-progress", *extra], check=True, cwd=code, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


@contextlib.contextmanager
def worktree(rev: str | None):
    """A temporary ``git worktree`` of ``rev`` (None: nothing)."""
    if rev is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(path), rev], check=True, cwd=REPO)
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], check=False, cwd=REPO)


def _facts(out: Path, store: Path) -> dict:
    meta = json.loads((out / "meta.json").read_text())
    return {"run_wall_time_s_in_meta": meta["wall_time_s"], "test_images": meta["test_images"],
            "result_rows": sum(1 for _ in open(out / "results.csv")) - 1,
            "workers": (meta.get("executor") or {}).get("workers", 0),
            "models_trained": sorted(p.parent.name for p in store.rglob("model.keras"))}


def time_scenarios(scenarios, quick: bool, before: str | None, resume: bool = True) -> dict:
    extra = ("--quick",) if quick else ()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp, worktree(before) as old:
        tmp = Path(tmp)
        for n, scen in enumerate(scenarios):
            entry = {}
            for side, code in (("before", old), ("after", REPO)):
                if code is None:
                    continue
                out, store = tmp / f"{side}{n}", tmp / f"store_{side}{n}"
                store.mkdir()
                first = timed_run(scen, out, "--overwrite", *extra, code=code, store=store)
                facts = _facts(out, store)
                again = timed_run(scen, out, *extra, code=code, store=store) if resume else float("nan")
                resumed = json.loads((out / "meta.json").read_text())["resumed_points"] if resume else None
                target = TARGET_QUICK_S if quick else (TARGET_MAIN_S if scen == MAIN_JOB else TARGET_S)
                entry[side] = {"wall_s": round(first, 1), **facts, "resume_wall_s": round(again, 1),
                               "resumed_points": resumed, "target_s": target, "meets_target": first <= target}
            if "before" in entry:
                entry["speedup"] = round(entry["before"]["wall_s"] / entry["after"]["wall_s"], 2)
            runs[scen] = entry
            print(scen, json.dumps(entry), flush=True)
    return runs


def workers_pair(rounds: int, scenario: str = "scenarios/awgn_sscc.yaml", unpinned: bool = False) -> dict:
    """``--workers 1`` and ``--workers 2`` on ``scenario``, alternating (which goes first rotates); with
    ``unpinned``, also ``--workers 2`` with ``LINKSIM_PIN_WORKERS=0`` (workers not kept to their own cores)."""
    variants = {"1": ("1", {}), "2": ("2", {})}
    if unpinned:
        variants["2_unpinned"] = ("2", {"LINKSIM_PIN_WORKERS": "0"})
    names = list(variants)
    times: dict = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                workers, env = variants[name]
                store = tmp / f"store{r}_{name}"
                store.mkdir()
                times[name].append(timed_run(scenario, tmp / f"w{name}_{r}", "--overwrite", "--workers", workers,
                                             store=store, env=env))
                print(f"workers {name}: {times[name][-1]:.1f} s", flush=True)
    one, two = statistics.median(times["1"]), statistics.median(times["2"])
    out = {"scenario": scenario, "rounds": rounds, "workers_1_s": [round(t, 1) for t in times["1"]],
           "workers_2_s": [round(t, 1) for t in times["2"]], "median_workers_1_s": round(one, 1),
           "median_workers_2_s": round(two, 1), "speedup": round(one / two, 2),
           "target_speedup": TARGET_WORKERS_SPEEDUP, "meets_target": one / two >= TARGET_WORKERS_SPEEDUP}
    if unpinned:
        loose = statistics.median(times["2_unpinned"])
        out.update(workers_2_unpinned_s=[round(t, 1) for t in times["2_unpinned"]],
                   median_workers_2_unpinned_s=round(loose, 1), speedup_unpinned=round(one / loose, 2))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*")
    ap.add_argument("--quick", action="store_true", help="time `linksim run --quick` (target 60 s)")
    ap.add_argument("--before", metavar="REV", help="also time git revision REV, interleaved")
    ap.add_argument("--workers-pair", action="store_true",
                    help="time --workers 1 against --workers 2 on scenarios/awgn_sscc.yaml")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of --workers-pair (default 2)")
    ap.add_argument("--unpinned", action="store_true",
                    help="with --workers-pair: also --workers 2 with LINKSIM_PIN_WORKERS=0")
    ap.add_argument("--no-resume", action="store_true", help="skip the resume run of each scenario")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    suffix = "_workers" if args.workers_pair else ("_quick" if args.quick else "")
    out_file = args.out or str(Path(__file__).parent / "results" / f"run_times{suffix}.json")
    results = {**machine_facts(), "load_average_before": os.getloadavg()}
    if args.workers_pair:
        results.update(workers_pair(args.rounds, unpinned=args.unpinned))
        ok = results["meets_target"]
    else:
        scenarios = args.scenarios or (DEFAULT_QUICK if args.quick else DEFAULT)
        results.update(quick=args.quick, before=args.before, runs=time_scenarios(scenarios, args.quick, args.before,
                                                                                    not args.no_resume))
        ok = all(r["after"]["meets_target"] for r in results["runs"].values())
    results["load_average_after"] = os.getloadavg()
    write_results(out_file, results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
